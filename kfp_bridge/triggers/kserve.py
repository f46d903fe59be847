"""KServeRolloutTrigger: one rollout wait (a watch, not polling) in the triggerer.

It carries only JSON: the wait condition (see :func:`kfp_bridge.utils.kserve_status.evaluate`) and
the rollout state, which it hands back in the event so ``execute_complete`` continues the state
machine. Same event shape as the polling triggers: ``status`` success|failed|error|timeout and
``message``. Killing a deferred task does not call the operator's ``on_kill`` (apache/airflow#36090),
so :meth:`on_kill` rolls an unfinished rollout back itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kfp_bridge.utils import kserve_status as ks


class KServeRolloutTrigger(BaseTrigger):
    """:param name: InferenceService name. :param namespace: its namespace.
    :param kubernetes_conn_id: cncf.kubernetes connection.
    :param condition: the wait condition (JSON). :param deadline: Unix time to give up (None: no limit).
    :param rollout: the operator's rollout state (JSON), returned in the event.
    """

    def __init__(self, *, name: str, namespace: str, kubernetes_conn_id: str, condition: dict[str, Any],
                 deadline: float | None, rollout: dict[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.condition = condition
        self.deadline = deadline
        self.rollout = rollout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "name": self.name,
            "namespace": self.namespace,
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "condition": self.condition,
            "deadline": self.deadline,
            "rollout": self.rollout,
        }

    def _hook(self) -> Any:
        from kfp_bridge.hooks.kserve import KServeAsyncHook

        return KServeAsyncHook(self.kubernetes_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        verdict = ks.Verdict()
        last: list[Any] = [None]

        def done(obj: dict[str, Any]) -> bool:
            nonlocal verdict
            st = ks.IsvcStatus.from_object(obj)
            if st.progress_key() != last[0]:
                last[0] = st.progress_key()
                self.log.info(st.progress_line())
            verdict = ks.evaluate(self.condition, st)
            return verdict.final

        left = (self.deadline - time.time()) if self.deadline is not None else 10 * 365 * 86400.0
        try:
            obj = await self._hook().wait_isvc(self.name, self.namespace, done, max(left, 0.0))
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            yield TriggerEvent({"status": "timeout", "message": f"{exc.args[0]}; rolling back", "rollout": self.rollout})
            return
        except Exception as exc:
            self.log.exception("KServe trigger failed")
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}", "rollout": self.rollout})
            return
        if verdict.failure is not None:
            yield TriggerEvent({"status": "failed", "message": verdict.failure, "rollout": self.rollout})
            return
        yield TriggerEvent({"status": "success", "message": "condition reached", "rollout": self.rollout, "object": obj})

    async def on_kill(self) -> None:
        """The deferred task was killed: restore the previous spec if the rollout is unfinished."""
        r = self.rollout
        if r.get("phase") not in ("rollout", "promote"):
            return
        from kfp_bridge.operators.kserve import rollback_patch

        hook = self._hook()
        try:
            current = await hook.get_isvc(self.name, self.namespace)
            await hook.patch_isvc(self.name, self.namespace, rollback_patch(r, current))
            self.log.warning("Task killed: restored the previous spec of %s/%s", self.namespace, self.name)
        except Exception:
            self.log.exception("Could not roll back %s/%s on kill", self.namespace, self.name)
