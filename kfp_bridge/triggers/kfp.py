"""KfpRunTrigger: waits for a KFP run in the triggerer without holding a worker slot."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

from kfp_bridge.triggers.base import PollingTrigger, keep_cancellation, outlast_cancel_requests
from kfp_bridge.utils.retry import TRANSIENT_HTTP_STATUSES
from kfp_bridge.utils.states import RunStatus

# How long on_kill waits for the run to be final after asking KFP to terminate it, and its whole
# budget: both under the triggerer's [triggerer] on_kill_timeout (30 s), which would cut it silently.
CANCEL_WAIT_SECONDS = 20.0
ON_KILL_BUDGET_SECONDS = 25.0


class KfpRunTrigger(PollingTrigger):
    """Follows one KFP run until it is final and fires one event.

    Its kwargs hold only JSON primitives and never a token: the connection is read in the
    triggerer with Airflow's async connection API. The run is looked at by the triggerer's shared
    poller for the connection (:mod:`kfp_bridge.triggers.kfp_poller`), which lists all deferred
    runs of one KFP host and namespace together instead of one request per run.

    :param run_id: the KFP run to follow.
    :param kfp_conn_id: the ``kfp`` connection.
    :param poll_interval: seconds between polls.
    :param deadline: Unix time after which the run is terminated and a ``timeout`` event fires.
    :param deferred_at: Unix time of the deferral (see :data:`~kfp_bridge.triggers.base.RESUME_SETTLE_S`).
    """

    def __init__(
        self,
        *,
        run_id: str,
        kfp_conn_id: str = "kfp_default",
        poll_interval: float = 10.0,
        deadline: float | None = None,
        deferred_at: float | None = None,
    ) -> None:
        super().__init__(poll_interval=poll_interval, deadline=deadline, deferred_at=deferred_at)
        self.run_id = run_id
        self.kfp_conn_id = kfp_conn_id
        self._last_progress: tuple | None = None
        self._subscription: Any = None
        self._api_down_since: float | None = None  # monotonic time the current outage was first seen
        self._spec: dict[str, Any] | None = None  # the run's pipeline spec, for step paths
        self._spec_read = False
        self._last_run: dict[str, Any] | None = None  # the snapshot last read, and what it read as
        self._last_status: RunStatus | None = None

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "kfp_conn_id": self.kfp_conn_id, **super().serialize_kwargs()}

    @cached_property
    def hook(self) -> Any:
        from kfp_bridge.hooks.kfp import KfpHook

        return KfpHook(kfp_conn_id=self.kfp_conn_id)

    async def poll_once(self) -> dict[str, Any] | None:
        from kfp_bridge.hooks.kfp import KfpApiError
        from kfp_bridge.triggers.kfp_poller import ApiDelayed

        try:
            run = await self._next_snapshot()
            if not self._spec_read:
                self._spec_read = True
                self._spec = await self.hook.apipeline_spec_of(run)
            if run != self._last_run:
                # Most polls see the run unchanged: reading it again (naming its steps from the Argo
                # node ids) was most of a triggerer's CPU with 1000 deferred runs.
                self._last_run, self._last_status = run, RunStatus.from_api(run, self._spec)
            status = self._last_status
        except ApiDelayed as delayed:
            self._note_api_down(str(delayed))
            return None
        except KfpApiError as err:
            if err.status in TRANSIENT_HTTP_STATUSES or err.status == 0:
                # The hook's retry budget ran out during an outage; keep waiting rather than fail the task.
                self._note_api_down(str(err))
                return None
            raise
        if self._api_down_since is not None:
            self.log.info(
                "KFP API answering again after %.0f s; run %s is %s",
                time.monotonic() - self._api_down_since, self.run_id, status.state.value,
            )
            self._api_down_since = None
        if status.progress_key() != self._last_progress:
            self._last_progress = status.progress_key()
            self.log.info(status.progress_line())
        if not status.is_terminal:
            return None
        return {
            "status": "success" if status.is_success else "failed",
            "run_id": self.run_id,
            "state": status.state.value,
            "message": status.progress_line() if status.is_success else status.failure_message(),
        }

    def _note_api_down(self, reason: str) -> None:
        """Once per outage in this task's log, however many retries the outage takes."""
        if self._api_down_since is None:
            self._api_down_since = time.monotonic()
            self.log.warning("KFP API unavailable (%s); still waiting for run %s", reason, self.run_id)

    async def _next_snapshot(self) -> dict[str, Any]:
        if self._subscription is None:
            from kfp_bridge.hooks.kfp import KfpHook
            from kfp_bridge.triggers import kfp_poller

            settings = await keep_cancellation(self.hook.asettings())
            conn_id = self.kfp_conn_id  # the poller outlives this trigger: do not capture self
            key = (conn_id, settings.host, settings.namespace or "")
            self._subscription = kfp_poller.subscribe(
                key, lambda: KfpHook(kfp_conn_id=conn_id), self.run_id, self.poll_interval
            )
        return await self._subscription.next()

    async def wait_between_polls(self) -> None:
        """Nothing to wait for: ``poll_once`` already waits for the poller's next look."""

    async def on_timeout(self) -> dict[str, Any]:
        await self._terminate_and_wait("the task's timeout passed")
        return {
            "status": "timeout",
            "run_id": self.run_id,
            "message": f"KFP run {self.run_id} did not finish before the task's timeout; it was terminated by Airflow.",
        }

    async def on_kill(self) -> None:
        """The task was killed while deferred: the KFP run must not keep running (apache/airflow#36090)."""
        await outlast_cancel_requests(self._terminate_and_wait("the task was killed"), ON_KILL_BUDGET_SECONDS)

    async def _terminate_and_wait(self, reason: str) -> None:
        """Terminate the run; say so in the task log the moment KFP has accepted it.

        The line comes before the wait for the final state: a killed task's trigger may be ended by
        the triggerer any moment after (see :func:`outlast_cancel_requests`), and lines logged once it
        has ended no longer reach the task log.
        """
        from kfp_bridge.hooks.kfp import KfpApiError

        status = RunStatus.from_api(await self.hook.aget_run(self.run_id))
        if status.is_terminal:
            return
        self.log.info("Terminating KFP run %s: %s (terminated by Airflow)", self.run_id, reason)
        try:
            await self.hook.aterminate_run(self.run_id)
        except KfpApiError as err:
            if err.status != 400:  # 400: already finished, or already being terminated
                raise
        failed = ", ".join(step.name for step in status.failed_steps)
        blame = f"step(s) {failed} had failed before" if failed else "no step failed"
        self.log.info("KFP run %s: terminated by Airflow (%s); %s", self.run_id, reason, blame)
        run = await self.hook.aterminate_and_wait(self.run_id, wait_seconds=CANCEL_WAIT_SECONDS)
        state = run.get("state")
        if state in ("FAILED", "CANCELED", "SUCCEEDED", "SKIPPED"):
            self.log.info("KFP run %s is %s after the terminate", self.run_id, state)
        else:
            self.log.warning("KFP run %s still %s %.0f s after the terminate", self.run_id, state, CANCEL_WAIT_SECONDS)

    async def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if "hook" in self.__dict__:
            await self.hook.aclose()

