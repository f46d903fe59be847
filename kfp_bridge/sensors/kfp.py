"""KfpRunSensor: wait for an existing KFP run (started elsewhere) to finish."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator

from kfp_bridge.links import KFP_RUN_LINK, LazyLinks, persist_url
from kfp_bridge.utils.states import RunStatus

if TYPE_CHECKING:
    from airflow.sdk import Context

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class KfpRunSensor(BaseSensorOperator):
    """Succeeds when the run SUCCEEDED or was SKIPPED; fails at once on FAILED or CANCELED.

    :param run_id: the KFP run id (templated), e.g. from an upstream task's XCom.
    :param kfp_conn_id: ``kfp`` connection.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("run_id",)
    operator_extra_links = LazyLinks(KFP_RUN_LINK)

    # The clock of the deadline and the deferral time (injected: tests replace it).
    clock = staticmethod(time.time)

    def __init__(
        self,
        *,
        run_id: str,
        kfp_conn_id: str = "kfp_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.kfp_conn_id = kfp_conn_id
        self.deferrable = deferrable
        self._link_pushed = False

    def _hook(self) -> Any:
        if self.__dict__.get("_kfp_hook") is None:
            from kfp_bridge.hooks.kfp import KfpHook

            self.__dict__["_kfp_hook"] = KfpHook(kfp_conn_id=self.kfp_conn_id)
        return self.__dict__["_kfp_hook"]

    def _check_run_id(self) -> None:
        """Every argument, after rendering, before the first request."""
        from kfp_bridge.operators.kfp import (
            KfpArgumentError,
            check_boolean,
            check_conn_id,
            check_positive_seconds,
        )

        owner = "KfpRunSensor"
        if not isinstance(self.run_id, str) or not self.run_id.strip():
            raise KfpArgumentError(f"KfpRunSensor needs a KFP run id; got {self.run_id!r} after templating.")
        # KFP run ids are UUIDs; anything with a path separator or a query would change the request's URL.
        if len(self.run_id) > 64 or not _RUN_ID.fullmatch(self.run_id):
            raise KfpArgumentError(
                f"KfpRunSensor argument 'run_id' must be a KFP run id (letters, digits, '-', '_', at most 64), "
                f"got {self.run_id[:80]!r}."
            )
        check_conn_id(owner, "kfp_conn_id", self.kfp_conn_id)
        check_boolean(owner, "deferrable", self.deferrable)
        check_positive_seconds(owner, "poke_interval", self.poke_interval, optional=False)
        check_positive_seconds(owner, "timeout", self.timeout, optional=True)

    def execute(self, context: Context) -> Any:
        self._check_run_id()
        hook = self._hook()
        persist_url(context, KFP_RUN_LINK, hook.settings.run_url(self.run_id))
        if not self.deferrable:
            return super().execute(context)
        status = self._status()
        if status.is_terminal:
            return self._decide(status)
        from kfp_bridge.triggers.kfp import KfpRunTrigger

        deadline = None
        if self.timeout is not None:
            deadline = self.clock() + float(self.timeout)
        self.defer(
            trigger=KfpRunTrigger(
                run_id=self.run_id, kfp_conn_id=self.kfp_conn_id, poll_interval=self.poke_interval, deadline=deadline,
                deferred_at=self.clock(),
            ),
            method_name="execute_complete",
        )

    def poke(self, context: Context) -> bool:
        status = self._status()
        self.log.info(status.progress_line())
        return bool(status.is_terminal and self._decide(status))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") in ("error", "timeout", None):
            raise RuntimeError((event or {}).get("message") or f"Waiting for KFP run {self.run_id} failed.")
        return self._decide(self._status())

    def _status(self) -> RunStatus:
        hook = self._hook()
        run = hook.get_run(self.run_id)
        return RunStatus.from_api(run, hook.pipeline_spec_of(run))

    def _decide(self, status: RunStatus) -> dict[str, Any]:
        if not status.is_success:
            hook = self._hook()
            raise RuntimeError(
                status.failure_message(
                    run_url=hook.settings.run_url(status.run_id), log_hint=hook.log_location_hint(status.run_id)
                )
            )
        return {"run_id": status.run_id, "state": status.state.value, "steps": status.step_states()}
