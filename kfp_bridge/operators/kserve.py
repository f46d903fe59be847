"""KServeRolloutOperator: canary → wait until live → smoke test → promote, or roll back and say why.

The rollout is the typed state machine of :mod:`kfp_bridge.utils.rollout`; its state goes to
``task_state_store`` before every side effect, so a retry after a crash finishes or rolls back
instead of leaving split traffic. Once the first patch may have reached the cluster, every failure
(a wait that fails or times out, an API error such as a 403/404/5xx, a smoke test that raises)
leads to the rollback path. The deferrable path runs the same waits in
:class:`~kfp_bridge.triggers.kserve.KServeRolloutTrigger`.

Import cost matters: DAG files import this module, so kubernetes and httpx load inside methods.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from kfp_bridge.lineage.mixins import KServeRolloutLineage
from kfp_bridge.links import INFERENCE_SERVICE_LINK, LazyLinks, persist_url
from kfp_bridge.utils import kserve_status as ks
from kfp_bridge.utils import rollout as ro

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kfp_bridge.hooks.kserve import KServeHook

STATE_KEY = "kserve_rollout"
DEFAULT_TIMEOUT_S = 900.0
ROLLBACK_TIMEOUT_S = ro.ROLLBACK_TIMEOUT_S
INLINE_WAIT_S = 10.0  # deferrable: watch this long in the worker before handing the wait to a trigger
# KServe names: a DNS-1035 label (starts with a letter; kserve IsvcNameFmt); namespaces DNS-1123.
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 63
Outcome = tuple[bool, str, "ro.Snapshot | None"]  # (condition reached, why not, what was seen)


class KServeRolloutError(RuntimeError):
    """The rollout failed (and was rolled back, unless the message says otherwise)."""


class _Killed(KServeRolloutError):
    """on_kill ran: the interrupted code path stops here."""


class KServeRolloutMachine(BaseOperator):
    """The rollout state machine (:mod:`kfp_bridge.utils.rollout`) as operator steps: patch with the
    state saved first, wait (inline or deferred), smoke test, promote or roll back, kill handling.

    Shared by :class:`KServeRolloutOperator` and the release operators
    (:mod:`kfp_bridge.operators.kserve_release`), which enter the machine at another phase.
    Subclasses give ``_result`` and, if they reach one, ``_smoke_then_decide``.
    """

    state_key: ClassVar[str] = STATE_KEY
    # The clock of deadlines and deferral times (injected: tests replace it).
    clock = staticmethod(time.time)

    def __init__(
        self,
        *,
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        timeout: float | timedelta | None = DEFAULT_TIMEOUT_S,
        ingress_address: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deferrable = deferrable
        self.timeout = timeout
        self.ingress_address = ingress_address
        self._rollout: ro.Rollout | None = None
        self._hook: KServeHook | None = None
        self._store: Any = None
        self._context: Any = None
        self._ingress: str | None = None
        # Set by on_kill: from then on this process makes no further change to the InferenceService.
        self._killed = False
        self._last_seen: ro.Snapshot | None = None

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        self._context = context
        self._store = context.get("task_state_store")
        if not event or "status" not in event or "rollout" not in event:
            raise KServeRolloutError(f"The KServe trigger returned no usable event ({event!r}).")
        self._rollout = ro.Rollout.from_json(event["rollout"])
        hook = self._get_hook()
        self._ingress = self._ingress_address(hook)
        message = event.get("message") or f"waiting failed ({event['status']})"
        if event["status"] == "success":
            outcome: Outcome = (True, "", None)
        elif event["status"] == "error" and self._rollout.phase.rolling_back:
            outcome = self._poll(hook, message)
        else:
            outcome = (False, message, None)
        return self._run(hook, outcome)

    def on_kill(self) -> None:
        """Killed mid-rollout: put the previous spec back, pinned to the previous revision.

        Airflow calls this from the SIGTERM handler and SIGKILLs the process 5 s later, so it makes
        one patch (previous predictor + ``canaryTrafficPercent: 0``) that takes the new revision out
        of traffic at once; the pin stays in the spec (the previous revision keeps 100%) and the
        next rollout replaces it. The interrupted code path then stops at its next step
        (``_killed``) instead of racing the rollback.
        """
        self._killed = True
        r = self._rollout
        if r is None or not r.kill_rolls_back():
            if r is not None and not r.phase.terminal:
                self.log.warning("Task killed in phase %s of %s: the retry resumes it", r.phase.value, r.name)
            return
        try:
            hook = self._get_hook()
            self.log.warning("Task killed during the rollout of %s (phase %s): rolling back", r.name, r.phase.value)
            r.reason = "the task was killed during the rollout"
            self._apply(hook, ro.PatchStep(ro.Phase.ROLLBACK_RESTORE, None), killed_ok=True)
            self.log.warning(
                "Rolled back %s on kill: restored %s, pinned to %s",
                r.name,
                r.previous_uri,
                r.previous_revision or "the previous deployment",
            )
        except Exception:
            self.log.exception("Could not roll back %s after the kill; the next attempt will", r.name)

    # ----- validation shared with the release operators (no side effects) -------------------------
    def _validate_common_arguments(self) -> None:
        """deferrable, timeout, ingress_address and the connection, rendered, before any cluster call."""
        from kfp_bridge.utils.smoke_client import validate_ingress_address

        if not isinstance(self.deferrable, bool):
            raise ValueError(
                f"deferrable must be True or False, got {self.deferrable!r} ({type(self.deferrable).__name__})"
            )
        timeout = self.timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float | timedelta)
        ):
            raise ValueError(
                f"timeout must be seconds (int/float) or a timedelta, got {timeout!r} ({type(timeout).__name__})"
            )
        seconds = self._timeout_seconds()
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        validate_ingress_address(self.ingress_address)
        if not isinstance(self.kubernetes_conn_id, str) or not self.kubernetes_conn_id:
            raise ValueError(f"kubernetes_conn_id must be a connection id, got {self.kubernetes_conn_id!r}")
        from airflow.exceptions import AirflowNotFoundException

        from kfp_bridge.hooks.kserve import KServeHook

        try:
            KServeHook.get_connection(self.kubernetes_conn_id)
        except AirflowNotFoundException as exc:
            raise ValueError(
                f"Kubernetes connection {self.kubernetes_conn_id!r} does not exist; create it (conn type "
                "'kubernetes', extra kube_config_path or in_cluster) or set kubernetes_conn_id"
            ) from exc

    def _check_not_killed(self) -> None:
        if self._killed:
            raise _Killed("The task was killed; on_kill rolled the rollout back, stopping here.")

    def _ingress_address(self, hook: KServeHook) -> str | None:
        from kfp_bridge.utils.smoke_client import validate_ingress_address

        if self.ingress_address is not None:
            return validate_ingress_address(self.ingress_address)
        try:
            return validate_ingress_address(hook.ingress_address())
        except ValueError as exc:
            raise ValueError(f"connection {self.kubernetes_conn_id!r} extra: {exc}") from None

    # ----- the state machine ----------------------------------------------------------------------
    def _apply(self, hook: KServeHook, step: ro.PatchStep, *, killed_ok: bool = False) -> None:
        """Read the state the wait starts from, save (phase, patch, condition), then patch."""
        if not killed_ok:
            self._check_not_killed()
        r = self._rollout
        assert r is not None
        before, _ = hook.read_snapshot(r.name, r.namespace, not r.knative)
        patch = step.patch if step.patch is not None else ro.rollback_patch(r, before.isvc_object)
        r.phase, r.patch, r.patched = step.phase, patch, False
        r.condition = ro.condition_for(r, step.phase, before, patch)
        self._save()
        self._send(hook)

    def _send(self, hook: KServeHook) -> None:
        r = self._rollout
        assert r is not None and r.patch is not None
        obj = hook.patch_isvc(r.name, r.namespace, r.patch)
        r.patched = True
        self._save()
        self.log.info(
            "%s: %s (generation %s)", r.name, ro.describe(r, r.phase), (obj.get("metadata") or {}).get("generation")
        )

    def _begin(self, hook: KServeHook, step: ro.PatchStep) -> Outcome | None:
        """Enter ``step``'s phase. A failed patch of the rollout or the promotion is a failed step
        (it leads to the rollback); a failed rollback patch stops the task with the state saved, so
        the next attempt resumes it."""
        r = self._rollout
        assert r is not None
        if step.phase.rolling_back and not r.phase.rolling_back:
            self.log.error("Rolling back %s: %s", r.name, r.reason)
            r.deadline = self.clock() + ROLLBACK_TIMEOUT_S
        try:
            self._apply(hook, step)
        except _Killed:
            raise
        except Exception as exc:
            if step.phase.rolling_back:
                raise KServeRolloutError(
                    f"{r.reason}. The rollback patch ({ro.describe(r, step.phase)}) failed: {ro.api_error(exc)}; "
                    "traffic may still reach the new model: the next attempt resumes the rollback"
                ) from exc
            if self._rollout is not None and self._rollout.phase is not step.phase:
                self._rollout.phase = step.phase  # failed before the phase was saved: still that step's failure
            return False, f"the {step.phase.value} patch failed: {ro.api_error(exc)}", None
        return None

    def _run(self, hook: KServeHook, outcome: Outcome | None) -> dict[str, Any]:
        while True:
            r = self._rollout
            assert r is not None
            if outcome is None:
                if not r.patched:  # crashed between saving the phase and patching: patch again
                    outcome = self._resend(hook)
                if outcome is None:
                    outcome = self._wait(hook)  # defers in deferrable mode
            ok, detail, snap = outcome
            if r.phase is ro.Phase.ROLLOUT and snap is not None and isinstance(r.condition, ro.NewRevision):
                if snap.isvc.latest_created != r.condition.created_before:
                    r.new_revision = snap.isvc.latest_created  # also the one a failure names
            self._rollout, action = ro.after_wait(r, ok, detail)
            if isinstance(action, ro.SmokeTest):
                action = self._smoke_then_decide(hook, snap)
            if isinstance(action, ro.Finish):
                return self._finish(hook, action.outcome)
            if isinstance(action, ro.RolledBack):
                return self._on_rolled_back(hook, action.note)
            outcome = self._begin(hook, action)

    def _resend(self, hook: KServeHook) -> Outcome | None:
        self._check_not_killed()
        try:
            self._send(hook)
        except _Killed:
            raise
        except Exception as exc:
            r = self._rollout
            assert r is not None
            if r.phase.rolling_back:
                raise KServeRolloutError(
                    f"{r.reason}. The rollback patch failed: {ro.api_error(exc)}; the next attempt resumes it"
                ) from exc
            return False, f"the {r.phase.value} patch failed: {ro.api_error(exc)}", None
        return None

    def _wait(self, hook: KServeHook) -> Outcome:
        r = self._rollout
        assert r is not None
        left = r.deadline - self.clock()
        if self.deferrable and left > INLINE_WAIT_S:
            # Waits that end within seconds (promotion, pinning, an already-restored spec) finish
            # here: a trigger round trip costs more, and a trigger that fires right after the
            # deferral races the scheduler's handling of the deferring process's exit (seen under
            # load: the resumed task was marked failed as "finished with state success").
            outcome = self._wait_here(hook, INLINE_WAIT_S) or self._final_now(hook)
            if outcome is not None:
                return outcome
            from kfp_bridge.triggers.kserve import KServeRolloutTrigger

            assert r.condition is not None
            self.defer(
                trigger=KServeRolloutTrigger(
                    name=r.name,
                    namespace=r.namespace,
                    kubernetes_conn_id=self.kubernetes_conn_id,
                    condition=ro.condition_to_json(r.condition),
                    deadline=r.deadline,
                    rollout=r.to_json(),
                    deferred_at=self.clock(),
                ),
                method_name="execute_complete",
            )
        outcome = self._wait_here(hook, max(left, 0.0))
        return outcome or (False, self._timeout_message(), self._last_seen)

    def _final_now(self, hook: KServeHook) -> Outcome | None:
        """One last read before deferring: a wait that ended as the inline watch closed is not deferred."""
        r = self._rollout
        assert r is not None and r.condition is not None
        try:
            snap, _ = hook.read_snapshot(r.name, r.namespace, not r.knative)
        except Exception as exc:
            return self._wait_error(hook, exc, INLINE_WAIT_S)
        return _outcome(ro.evaluate(r.condition, snap), snap)

    def _wait_here(self, hook: KServeHook, seconds: float) -> Outcome | None:
        """Watch in this process for up to ``seconds``; None when the condition is still open."""
        r = self._rollout
        assert r is not None and r.condition is not None
        condition = r.condition
        last: list[Any] = [None]
        verdict: list[ro.Verdict] = [ro.Verdict()]

        def done(snap: ro.Snapshot) -> bool:
            self._check_not_killed()
            line = ro.progress_line(snap)
            if line != last[0]:
                last[0] = line
                self.log.info(line)
            verdict[0] = ro.evaluate(condition, snap)
            return verdict[0].final

        try:
            snap = hook.wait_rollout(r.name, r.namespace, not r.knative, done, seconds)
        except TimeoutError as exc:
            self._last_seen = exc.args[1] if len(exc.args) > 1 else None
            return None
        except _Killed:
            raise
        except Exception as exc:
            return self._wait_error(hook, exc, seconds)
        return _outcome(verdict[0], snap)

    def _wait_error(self, hook: KServeHook, exc: BaseException, seconds: float) -> Outcome:
        """An API error during a wait: the rollout rolls back; a rollback falls back to reads only."""
        r = self._rollout
        assert r is not None
        self.log.warning("Waiting on %s/%s failed: %s", r.namespace, r.name, ro.api_error(exc))
        if r.phase.rolling_back:
            return self._poll(hook, ro.api_error(exc), max(seconds, r.deadline - self.clock()))
        return False, f"the wait failed: {ro.api_error(exc)}", None

    def _poll(self, hook: KServeHook, why: str, seconds: float | None = None) -> Outcome:
        """Verify a rollback step by reading (GET/list) when its watch was refused."""
        r = self._rollout
        assert r is not None and r.condition is not None
        condition = r.condition
        seconds = max(seconds if seconds is not None else r.deadline - self.clock(), 1.0)
        self.log.warning("Verifying %s by polling (the watch failed: %s)", ro.describe(r, r.phase), why)
        verdict: list[ro.Verdict] = [ro.Verdict()]

        def done(snap: ro.Snapshot) -> bool:
            verdict[0] = ro.evaluate(condition, snap)
            return verdict[0].final

        try:
            snap = hook.poll_rollout(r.name, r.namespace, not r.knative, done, seconds)
        except TimeoutError as exc:
            self._last_seen = exc.args[1] if len(exc.args) > 1 else None
            return False, self._timeout_message(), self._last_seen
        except Exception as exc:
            return False, f"{why}; polling failed too: {ro.api_error(exc)}", None
        return _outcome(verdict[0], snap) or (False, why, snap)

    def _timeout_message(self) -> str:
        r = self._rollout
        phase = r.phase.value if r else "?"
        last = ro.progress_line(self._last_seen) if self._last_seen is not None else "nothing read"
        return f"timed out after {self._timeout_seconds():.0f}s in phase {phase}; last state: {last}"

    def _on_rolled_back(self, hook: KServeHook, note: str) -> dict[str, Any]:
        """The machine ended rolled back: for a rollout that is a failure (the release operator's
        rollback overrides this)."""
        raise self._rolled_back(hook, note)

    def _rolled_back(self, hook: KServeHook, note: str) -> KServeRolloutError:
        r = self._rollout
        assert r is not None
        traffic = "unknown"
        serving: str | None = "the previous deployment"
        st: ks.IsvcStatus | None = None
        try:
            st = ks.IsvcStatus.from_object(hook.get_isvc(r.name, r.namespace))
            traffic = st.traffic_summary()
            if r.knative:
                serving = st.sole_revision()
        except Exception as exc:
            note = f"{note} (could not read the final state: {ro.api_error(exc)})".strip()
        r.phase = ro.Phase.ROLLED_BACK
        self._save()
        if st is not None:
            self._push(st, "rolled_back")
        return KServeRolloutError(
            f"Rollout of {r.target_uri} to {r.namespace}/{r.name} failed: {r.reason}. "
            f"Rolled back to {r.previous_uri} ({serving} serves it; traffic: {traffic}) {note}".rstrip()
        )

    def _finish(self, hook: KServeHook, outcome: str) -> dict[str, Any]:
        self._check_not_killed()
        r = self._rollout
        assert r is not None
        obj = hook.get_isvc(r.name, r.namespace)
        r.phase = ro.Phase.DONE
        self._save()
        return self._result(ks.IsvcStatus.from_object(obj), outcome, obj)

    def _result(self, st: ks.IsvcStatus, outcome: str, obj: dict[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _smoke_then_decide(self, hook: KServeHook, snap: ro.Snapshot | None) -> ro.Action:
        raise NotImplementedError(f"{type(self).__name__} never reaches a smoke test")

    def _push(self, st: ks.IsvcStatus, outcome: str) -> None:
        if self._context is not None and "ti" in self._context:
            self._context["ti"].xcom_push(key="rollout", value=self._result(st, outcome))

    def _saved(self, name: str) -> ro.Rollout | None:
        saved = self._store.get(self.state_key) if self._store is not None else None
        if not isinstance(saved, dict) or saved.get("name") != name:
            return None
        try:
            return ro.Rollout.from_json(saved)
        except (KeyError, TypeError, ValueError) as exc:
            raise KServeRolloutError(
                f"the saved rollout state in task_state_store[{self.state_key!r}] cannot be read ({exc}); "
                "check the InferenceService by hand, then clear the task's state"
            ) from None

    def _save(self) -> None:
        if self._store is not None and self._rollout is not None:
            self._store.set(self.state_key, self._rollout.to_json())

    def _get_hook(self) -> KServeHook:
        if self._hook is None:
            from kfp_bridge.hooks.kserve import KServeHook

            self._hook = KServeHook(self.kubernetes_conn_id)
        return self._hook

    def _namespace(self, hook: KServeHook) -> str:
        return self.namespace or hook.get_namespace() or "default"

    def _timeout_seconds(self) -> float:
        if self.timeout is None:
            return DEFAULT_TIMEOUT_S
        return self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else float(self.timeout)


class KServeRolloutOperator(KServeRolloutLineage, KServeRolloutMachine):
    """Roll a new model out to a KServe InferenceService, canary first, and roll back on any failure.

    :param inference_service: name of an existing InferenceService.
    :param namespace: its namespace (default: the connection's namespace, then ``default``).
    :param storage_uri: the new model (templated): ``file:///abs``, ``/abs``, ``s3://``, ``gs://``,
        ``pvc://``, ``https://``.
    :param canary_traffic_percent: share for the new revision while it is tested (0–100); None rolls
        out directly. Ignored (with a warning, never claimed) in Standard mode, where KServe ignores it.
    :param smoke_test: dict spec (see :mod:`kfp_bridge.utils.smoke`) or callable ``f(url)``; None skips it.
    :param promote: give the new revision 100% after a passing smoke test (default True).
    :param ingress_address: send the smoke test to this ingress address with the service's host name
        in the ``Host`` header (when KServe's host names do not resolve from the worker); default
        the connection's extra ``ingress_address``.
    :param kubernetes_conn_id: cncf.kubernetes connection (default ``kubernetes_default``).
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param timeout: seconds (or timedelta) for the rollout waits; a timeout rolls back.
    """

    # smoke_test is not templated: Airflow 3 would call a callable smoke test while rendering.
    template_fields: Sequence[str] = ("storage_uri", "inference_service", "namespace", "ingress_address")
    operator_extra_links = LazyLinks(INFERENCE_SERVICE_LINK)
    ui_color = "#cfe8fc"

    def __init__(
        self,
        *,
        inference_service: str,
        storage_uri: str,
        namespace: str | None = None,
        canary_traffic_percent: int | None = None,
        smoke_test: dict[str, Any] | Any | None = None,
        promote: bool = True,
        ingress_address: str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        timeout: float | timedelta | None = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            kubernetes_conn_id=kubernetes_conn_id,
            deferrable=deferrable,
            timeout=timeout,
            ingress_address=ingress_address,
            **kwargs,
        )
        self.inference_service = inference_service
        self.storage_uri = storage_uri
        self.namespace = namespace
        self.canary_traffic_percent = canary_traffic_percent
        self.smoke_test = smoke_test
        self.promote = promote

    # ----- entry points -----------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        self._context = context
        self._store = context.get("task_state_store")
        self._validate_arguments()  # before any connection or cluster call
        hook = self._get_hook()
        self._ingress = self._ingress_address(hook)
        namespace = self._namespace(hook)
        obj = hook.get_isvc(self.inference_service, namespace)
        st = ks.IsvcStatus.from_object(obj)
        if st.url:
            persist_url(context, INFERENCE_SERVICE_LINK, st.url)

        saved = self._saved(self.inference_service)
        if saved is not None and not saved.phase.terminal and saved.name == self.inference_service:
            self.log.warning(
                "Resuming an unfinished rollout of %s (phase %s) left by an earlier attempt",
                saved.name,
                saved.phase.value,
            )
            self._rollout = saved
            if ro.undone_while_away(saved, obj):
                # The trigger's on_kill (or a person) restored the spec while no task ran: finish
                # that rollback (release the pin) instead of waiting for a canary that is gone.
                current = ks.storage_uri((obj.get("spec") or {}).get("predictor") or {})
                self._rollout, step = ro.start_rollback(
                    saved,
                    f"the rollout was undone while no attempt was running (the spec serves {current} "
                    "again, e.g. after a kill)",
                )
                return self._run(hook, self._begin(hook, step))
            return self._run(hook, None)

        try:
            planned = ro.plan(
                obj, namespace, self.storage_uri, self.canary_traffic_percent, self.clock() + self._timeout_seconds()
            )
        except ro.RolloutRefused as exc:
            raise KServeRolloutError(str(exc)) from None
        if planned is None:
            self.log.info("%s already serves %s; nothing to roll out", st.name, self.storage_uri)
            return self._result(st, "unchanged", obj)
        rollout, patch = planned
        if not rollout.knative:
            if self.canary_traffic_percent is not None:
                self.log.warning(
                    "InferenceService %s runs in Standard mode, where KServe ignores canaryTrafficPercent: "
                    "doing a direct rollout (no canary)",
                    st.name,
                )
            self._require_deployment(hook, rollout)
        self._rollout = rollout
        try:
            self._apply(hook, ro.PatchStep(ro.Phase.ROLLOUT, patch))
        except _Killed:
            raise
        except Exception as exc:
            status = getattr(exc, "status", None)
            if self._rollout.patch is None or (
                isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)
            ):
                # Refused (or failed before sending): the spec did not change, nothing to roll back.
                self._rollout.phase = ro.Phase.ROLLED_BACK
                self._save()
                raise KServeRolloutError(
                    f"The rollout patch of {namespace}/{rollout.name} was not applied ({ro.api_error(exc)}); "
                    "nothing changed"
                ) from exc
            # The patch may have gone through (5xx, broken connection): undo whatever it did.
            return self._run(hook, (False, f"the rollout patch failed: {ro.api_error(exc)}", None))
        return self._run(hook, None)

    # ----- validation (no side effects) -----------------------------------------------------------
    def _validate_arguments(self) -> None:
        """Every input, rendered, before any cluster call: the error names the argument, what it
        must be and the value."""
        from kfp_bridge.utils import smoke

        name = self.inference_service
        if not isinstance(name, str) or not _ISVC_NAME.match(name) or len(name) > _MAX_NAME:
            raise ValueError(
                f"inference_service must be an InferenceService name (lowercase letters, digits and '-', "
                f"starting with a letter, at most {_MAX_NAME} characters; a DNS-1035 label), got {name!r}"
            )
        ns = self.namespace
        if ns is not None and (not isinstance(ns, str) or not _DNS1123.match(ns) or len(ns) > _MAX_NAME):
            raise ValueError(
                f"namespace must be a Kubernetes namespace (a DNS-1123 label) or None for the connection's, "
                f"got {ns!r} (did the template render empty?)"
            )
        percent = self.canary_traffic_percent
        if percent is not None and (
            isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100
        ):
            raise ValueError(
                f"canary_traffic_percent must be an int from 0 to 100 (or None for a direct rollout), "
                f"got {percent!r} ({type(percent).__name__})"
            )
        ks.validate_storage_uri(self.storage_uri)
        smoke.validate_spec(self.smoke_test)
        if not isinstance(self.promote, bool):
            raise ValueError(f"promote must be True or False, got {self.promote!r} ({type(self.promote).__name__})")
        self._validate_common_arguments()

    def _require_deployment(self, hook: KServeHook, rollout: ro.Rollout) -> None:
        """Standard mode is judged from the predictor Deployment: it must be readable before any patch."""
        name = ks.predictor_deployment(rollout.name)
        deployment, _ = hook.list_deployment(name, rollout.namespace)
        if deployment is None:
            raise KServeRolloutError(
                f"InferenceService {rollout.namespace}/{rollout.name} runs in Standard mode but its predictor "
                f"Deployment {name} does not exist; nothing was changed"
            )

    def _smoke_then_decide(self, hook: KServeHook, snap: ro.Snapshot | None) -> ro.Action:
        r = self._rollout
        assert r is not None
        try:
            if snap is None or not snap.isvc_object:
                snap, _ = hook.read_snapshot(r.name, r.namespace, not r.knative)
            st = snap.isvc
            if r.knative:
                r.new_revision = st.latest_created
            url = (st.tag_url("latest") if r.knative else "") or st.url
            problems = self._smoke(url) if url else ["InferenceService status has no URL to test"]
        except _Killed:
            raise
        except Exception as exc:  # an API error or a bug in the smoke path: never leave the canary
            url, problems = "", [f"the smoke test could not run: {ro.api_error(exc)}"]
        r.smoke = "failed" if problems else ("skipped" if self.smoke_test is None else "passed")
        r.smoke_url = url
        self._rollout, action = ro.after_smoke(r, problems, url, self.promote)
        return action

    def _result(self, st: ks.IsvcStatus, outcome: str, obj: dict[str, Any] | None = None) -> dict[str, Any]:
        """The XCom return value. With ``promote=False`` it carries the verified canary as
        ``recorded`` (:class:`~kfp_bridge.utils.release.CanaryRecord`: URIs, revisions, traffic, smoke
        result, generation; no spec, no secrets) for KServePromoteOperator / KServeRollbackOperator."""
        from kfp_bridge.utils import release

        r = self._rollout
        recorded = None
        if not self.promote and obj is not None:
            if outcome == "unchanged":
                recorded = release.unchanged_record(obj, st.namespace).to_json()
            elif r is not None and outcome in ("canary", "rolled_out"):
                recorded = release.record_canary(r, obj).to_json()
        result = {
            "outcome": outcome,
            "inference_service": st.name,
            "namespace": st.namespace,
            "mode": st.mode,
            "canary": bool(r and r.canary),
            "previous_revision": (r.previous_revision if r else "") or "",
            "new_revision": r.new_revision if r else (st.latest_ready if st.mode == ks.KNATIVE else ""),
            "storage_uri": self.storage_uri,
            "traffic": [{"revision": t.revision, "percent": t.percent, "tag": t.tag} for t in st.traffic],
            "url": st.url,
            "smoke": (r.smoke if r else "") or "",
            "recorded": recorded,
        }
        self.log.info("Rollout %s: %s", outcome, result)
        return result

    # ----- helpers ---------------------------------------------------------------------------------
    def _smoke(self, url: str) -> list[str]:
        spec = self.smoke_test
        if spec is None:
            return []
        if callable(spec):
            try:
                return [] if spec(url) is not False else [f"the smoke test callable returned False for {url}"]
            except Exception as exc:
                return [f"{type(exc).__name__}: {exc}"]
        from kfp_bridge.utils.smoke_client import SmokeClient

        r = self._rollout
        assert r is not None
        return SmokeClient(ingress_address=self._ingress, log=self.log).run(spec, url, r.name, r.namespace)


def _outcome(verdict: ro.Verdict, snap: ro.Snapshot) -> Outcome | None:
    """A wait's outcome from its verdict, or None while the condition is open."""
    if verdict.failure is not None:
        return False, verdict.failure, snap
    return (True, "", snap) if verdict.done else None



_RELEASE_NAMES = ("KServePromoteOperator", "KServeRollbackOperator", "CanaryApprovalOperator")


def __getattr__(name: str) -> Any:
    # The release operators live in kserve_release (it imports this module and the standard
    # provider's HITL operators); loaded only when asked for, so a rollout-only DAG does not pay.
    if name in _RELEASE_NAMES:
        from kfp_bridge.operators import kserve_release

        return getattr(kserve_release, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
