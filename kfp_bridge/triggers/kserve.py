"""KServeRolloutTrigger: one rollout wait (a watch, not polling) in the triggerer.

It carries only JSON: the wait condition and the rollout (see :mod:`kfp_bridge.utils.rollout`), which
it hands back in the event so ``execute_complete`` continues the state machine. Same event shape as the polling triggers: ``status`` success|failed|error|timeout and
``message``. Killing a deferred task does not call the operator's ``on_kill`` (apache/airflow#36090),
so :meth:`on_kill` rolls an unfinished rollout back itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kfp_bridge.triggers.base import keep_cancellation, outlast_cancel_requests, settle_after_deferral
from kfp_bridge.utils import rollout as ro

ON_KILL_WAIT_S = 20.0  # of the triggerer's 30 s on_kill budget
ON_KILL_BUDGET_S = 25.0  # patch + wait, under [triggerer] on_kill_timeout


class KServeRolloutTrigger(BaseTrigger):
    """:param name: InferenceService name. :param namespace: its namespace.
    :param kubernetes_conn_id: cncf.kubernetes connection.
    :param condition: the wait condition (JSON). :param deadline: Unix time to give up (None: no limit).
    :param rollout: the operator's rollout state (JSON), returned in the event.
    :param deferred_at: Unix time of the deferral; a condition met sooner than
        :data:`~kfp_bridge.triggers.base.RESUME_SETTLE_S` after it fires its event only then.
    """

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        kubernetes_conn_id: str,
        condition: dict[str, Any],
        deadline: float | None,
        rollout: dict[str, Any],
        deferred_at: float | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.condition = condition
        self.deadline = deadline
        self.rollout = rollout
        self.deferred_at = deferred_at
        self._kserve_hook: Any = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "name": self.name,
            "namespace": self.namespace,
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "condition": self.condition,
            "deadline": self.deadline,
            "rollout": self.rollout,
            "deferred_at": self.deferred_at,
        }

    def _hook(self) -> Any:
        # One hook per trigger: it caches the connection's extras, so on_kill (which runs while the
        # task is being cancelled) makes no connection lookup; seen to stall the triggerer's loop.
        if self._kserve_hook is None:
            from kfp_bridge.hooks.kserve import KServeAsyncHook

            self._kserve_hook = KServeAsyncHook(self.kubernetes_conn_id)
        return self._kserve_hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        payload = await self._outcome()
        # Every event, as PollingTrigger does: a wait that ends soon after the deferral races Airflow's resume.
        await settle_after_deferral(self.deferred_at, self.log)
        yield TriggerEvent(payload)

    async def _outcome(self) -> dict[str, Any]:
        """The event's payload: success, failed, timeout or error, with the rollout it continues."""
        try:
            rollout = ro.Rollout.from_json(self.rollout)
            condition = ro.condition_from_json(self.condition, self.name)
        except (KeyError, TypeError, ValueError) as exc:
            return {"status": "error", "message": f"unreadable rollout state: {exc!r}", "rollout": self.rollout}
        verdict = ro.Verdict()
        last: list[Any] = [None]

        def done(snap: ro.Snapshot) -> bool:
            nonlocal verdict
            line = ro.progress_line(snap)
            if last[0] is None:
                # Logged once the connection is read and the object fetched.
                self.log.info(
                    "Trigger watching %s/%s (phase %s) until %s",
                    self.namespace,
                    self.name,
                    rollout.phase.value,
                    self.condition,
                )
            if line != last[0]:
                last[0] = line
                self.log.info(line)
            verdict = ro.evaluate(condition, snap)
            return verdict.final

        left = (self.deadline - time.time()) if self.deadline is not None else 10 * 365 * 86400.0
        try:
            # Read the connection where a kill is not swallowed (see keep_cancellation); the hook
            # keeps the extras, so the watch and on_kill do not read it again.
            await keep_cancellation(self._hook().get_conn_extras())
            snap = await self._hook().wait_rollout(
                self.name, self.namespace, not rollout.knative, done, max(left, 0.0)
            )
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            return {"status": "timeout", "message": f"{exc.args[0]}; rolling back", "rollout": self.rollout}
        except Exception as exc:
            self.log.exception("KServe trigger failed")
            return {"status": "error", "message": ro.api_error(exc), "rollout": self.rollout}
        if verdict.failure is not None:
            return {"status": "failed", "message": verdict.failure, "rollout": self.rollout}
        return {"status": "success", "message": "condition reached", "rollout": self.rollout, "object": snap.isvc_object}

    async def on_kill(self) -> None:
        """The deferred task was killed: restore the previous spec, pinned to the previous revision.

        Airflow does not call the operator's ``on_kill`` for a deferred task (apache/airflow#36090);
        the triggerer calls this instead and allows it ``[triggerer] on_kill_timeout`` (30 s), so
        after the one rollback patch it waits briefly to log that the previous revision holds 100%.
        The triggerer cancels the trigger again about once a second meanwhile: the rollback runs in
        its own task so a patch in flight is never cut off (:func:`outlast_cancel_requests`).
        """
        await outlast_cancel_requests(self._roll_back_on_kill(), ON_KILL_BUDGET_S)

    async def _roll_back_on_kill(self) -> None:
        try:
            r = ro.Rollout.from_json(self.rollout)
        except (KeyError, TypeError, ValueError):
            self.log.exception("Cannot roll %s/%s back on kill: unreadable rollout state", self.namespace, self.name)
            return
        if not r.kill_rolls_back():  # an approved promotion is left for the retry
            return
        hook = self._hook()
        try:
            current = await hook.get_isvc(self.name, self.namespace)
            await hook.patch_isvc(self.name, self.namespace, ro.rollback_patch(r, current))
            self.log.warning(
                "Task killed during the rollout of %s/%s (phase %s): restored %s",
                self.namespace,
                self.name,
                r.phase.value,
                r.previous_uri,
            )
        except Exception:
            self.log.exception("Could not roll back %s/%s on kill", self.namespace, self.name)
            return
        if not r.knative:
            return
        pinned = ro.Serving(r.previous_revision)
        try:
            snap = await hook.wait_rollout(
                self.name,
                self.namespace,
                False,
                lambda s: ro.evaluate(pinned, s).final,
                ON_KILL_WAIT_S,
            )
            self.log.warning("Rolled back on kill: %s", ro.progress_line(snap))
        except Exception:
            self.log.exception(
                "The rollback patch of %s/%s went out, but %s did not get 100%% within %ss",
                self.namespace,
                self.name,
                r.previous_revision,
                ON_KILL_WAIT_S,
            )

