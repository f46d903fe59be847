"""KServeRolloutOperator: canary → wait (watch) → smoke test → promote, or roll back and say why.

The rollout is a small state machine whose state (phase, previous spec, pending patch, wait
condition) goes to ``task_state_store`` before every side effect, so a retry after a crash finishes
or rolls back instead of leaving split traffic. Every wait is a watch on the InferenceService,
decided by :func:`kfp_bridge.utils.kserve_status.evaluate`; the deferrable path runs the same
waits in :class:`~kfp_bridge.triggers.kserve.KServeRolloutTrigger`.

Import cost matters: DAG files import this module, so kubernetes and httpx load inside methods.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from kfp_bridge.links.kserve import InferenceServiceLink
from kfp_bridge.utils import kserve_status as ks

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kfp_bridge.hooks.kserve import KServeHook

STATE_KEY = "kserve_rollout"
DEFAULT_TIMEOUT_S = 900.0
ROLLBACK_TIMEOUT_S = 300.0
INLINE_WAIT_S = 10.0  # deferrable: watch this long in the worker before handing the wait to a trigger
_TERMINAL = ("done", "rolled_back")
# Phases in which the new revision may still hold traffic: a kill rolls these back.
_UNFINISHED = ("rollout", "promote", "rollback_pin")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class KServeRolloutError(RuntimeError):
    """The rollout failed (and was rolled back, unless the message says otherwise)."""


class KServeRolloutOperator(BaseOperator):
    """Roll a new model out to a KServe InferenceService, canary first, and roll back on any failure.

    :param inference_service: name of an existing InferenceService.
    :param namespace: its namespace (default: the connection's namespace, then ``default``).
    :param storage_uri: the new model (templated): ``file:///abs``, ``/abs``, ``s3://``, ``gs://``,
        ``pvc://``, ``https://``.
    :param canary_traffic_percent: share for the new revision while it is tested (0–100); None rolls
        out directly. Ignored (with a warning, never claimed) in Standard mode, where KServe ignores it.
    :param smoke_test: dict spec (see :mod:`kfp_bridge.utils.smoke`) or callable ``f(url)``; None skips it.
    :param promote: give the new revision 100% after a passing smoke test (default True).
    :param kubernetes_conn_id: cncf.kubernetes connection (default ``kubernetes_default``).
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param timeout: seconds (or timedelta) for the rollout waits; a timeout rolls back.
    """

    # smoke_test is not templated: Airflow 3 would call a callable smoke test while rendering.
    template_fields: Sequence[str] = ("storage_uri", "inference_service", "namespace")
    operator_extra_links = (InferenceServiceLink(),)
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
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        timeout: float | timedelta | None = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inference_service = inference_service
        self.storage_uri = storage_uri
        self.namespace = namespace
        self.canary_traffic_percent = canary_traffic_percent
        self.smoke_test = smoke_test
        self.promote = promote
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deferrable = deferrable
        self.timeout = timeout
        self._rollout: dict[str, Any] | None = None
        self._hook: KServeHook | None = None
        self._store: Any = None
        self._context: Any = None
        # Set by on_kill: from then on this process makes no further change to the InferenceService.
        self._killed = False
        self._last_seen: dict[str, Any] | None = None

    # ----- entry points -----------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        self._context = context
        self._store = context.get("task_state_store")
        self._validate_arguments()  # before any connection or cluster call
        hook = self._get_hook()
        namespace = self._namespace(hook)
        obj = hook.get_isvc(self.inference_service, namespace)
        st = ks.IsvcStatus.from_object(obj)
        if st.url:
            InferenceServiceLink.persist(context, st.url)

        saved = self._store.get(STATE_KEY) if self._store is not None else None
        if (
            isinstance(saved, dict)
            and saved.get("phase") not in _TERMINAL
            and saved.get("name") == self.inference_service
        ):
            self.log.warning(
                "Resuming an unfinished rollout of %s (phase %s) left by an earlier attempt",
                self.inference_service,
                saved["phase"],
            )
            self._rollout = saved
            current = ks.storage_uri((obj.get("spec") or {}).get("predictor") or {})
            patched = saved.get("wait") is not None  # else the crash came before the patch went out
            if saved["phase"] in ("rollout", "promote") and patched and current != saved["target_uri"]:
                # The trigger's on_kill (or a person) restored the spec while no task ran: finish
                # that rollback (release the pin) instead of waiting for a canary that is gone.
                self._start_rollback(
                    hook,
                    f"the rollout was undone while no attempt was running "
                    f"(the spec serves {current} again, e.g. after a kill)",
                )
            return self._run(hook, None)

        rollout = self._plan(obj, namespace)
        if rollout is None:
            return self._result(st, "unchanged")
        self._rollout = rollout
        self._apply(hook, "rollout", rollout.pop("first_patch"), self._rollout_condition())
        return self._run(hook, None)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        self._context = context
        self._store = context.get("task_state_store")
        if not event or "status" not in event or "rollout" not in event:
            raise KServeRolloutError(f"The KServe trigger returned no usable event ({event!r}).")
        self._rollout = event["rollout"]
        hook = self._get_hook()
        if event["status"] == "success":
            outcome: tuple[str, Any] = ("done", event.get("object"))
        else:
            outcome = ("failed", event.get("message") or f"waiting failed ({event['status']})")
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
        rollout = self._rollout
        if not rollout or rollout.get("phase") not in _UNFINISHED:
            return
        try:
            hook = self._get_hook()
            self.log.warning(
                "Task killed during the rollout of %s (phase %s): rolling back",
                rollout["name"],
                rollout["phase"],
            )
            rollout["reason"] = "the task was killed during the rollout"
            patch = rollback_patch(rollout, hook.get_isvc(rollout["name"], rollout["namespace"]))
            rollout.update(
                phase="rollback_restore", patch=patch, wait=None, condition=restore_condition(rollout)
            )
            self._save()
            obj = hook.patch_isvc(rollout["name"], rollout["namespace"], patch)
            rollout["wait"] = {**rollout["condition"], "generation": obj["metadata"]["generation"]}
            self._save()
            self.log.warning(
                "Rolled back %s on kill: restored %s, pinned to %s",
                rollout["name"],
                rollout["previous_uri"],
                rollout["previous_revision"] or "the previous deployment",
            )
        except Exception:
            self.log.exception(
                "Could not roll back %s after the kill; the next attempt will", rollout.get("name")
            )

    def _check_not_killed(self) -> None:
        if self._killed:
            raise KServeRolloutError("The task was killed; on_kill rolled the rollout back, stopping here.")

    # ----- validation and planning (no side effects) -------------------------------------------------
    def _validate_arguments(self) -> None:
        from kfp_bridge.utils import smoke

        name = self.inference_service
        if not isinstance(name, str) or not _DNS1123.match(name):
            raise ValueError(
                f"inference_service {name!r} is not a valid InferenceService name (lowercase DNS-1123 label)"
            )
        percent = self.canary_traffic_percent
        if percent is not None and (
            isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100
        ):
            raise ValueError(
                f"canary_traffic_percent must be an int from 0 to 100 (or None for a direct rollout), got {percent!r}"
            )
        ks.validate_storage_uri(self.storage_uri)
        smoke.validate_spec(self.smoke_test)
        if self._timeout_seconds() <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        from airflow.exceptions import AirflowNotFoundException

        from kfp_bridge.hooks.kserve import KServeHook

        try:
            KServeHook.get_connection(self.kubernetes_conn_id)
        except AirflowNotFoundException as exc:
            raise ValueError(
                f"Kubernetes connection {self.kubernetes_conn_id!r} does not exist; create it (conn type "
                "'kubernetes', extra kube_config_path or in_cluster) or set kubernetes_conn_id"
            ) from exc

    def _plan(self, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
        st = ks.IsvcStatus.from_object(obj)
        predictor = copy.deepcopy((obj.get("spec") or {}).get("predictor") or {})
        field = ks.storage_field(predictor)
        current_uri = ks.storage_uri(predictor)
        mode = st.mode
        percent = self.canary_traffic_percent
        if mode == ks.KNATIVE:
            if not st.latest_rolledout or st.sole_revision() is None:
                raise KServeRolloutError(
                    f"InferenceService {namespace}/{st.name} has no single serving revision "
                    f"(traffic: {st.traffic_summary()}); finish or roll back the rollout in progress first"
                )
            previous_revision = st.sole_revision()
        else:
            if percent is not None:
                self.log.warning(
                    "InferenceService %s runs in Standard mode, where KServe ignores canaryTrafficPercent: "
                    "doing a direct rollout (no canary)",
                    st.name,
                )
            previous_revision = ""
        if current_uri == self.storage_uri and predictor.get("canaryTrafficPercent") is None and st.is_ready:
            self.log.info("%s already serves %s; nothing to roll out", st.name, self.storage_uri)
            return None
        patch: dict[str, Any] = {"spec": {"predictor": {field: {"storageUri": self.storage_uri}}}}
        canary = mode == ks.KNATIVE and percent is not None and percent < 100
        if mode == ks.KNATIVE:
            patch["spec"]["predictor"]["canaryTrafficPercent"] = percent if canary else None
            patch["metadata"] = {"annotations": {ks.TAG_ROUTING_ANNOTATION: "true"}}
        return {
            "name": st.name,
            "namespace": namespace,
            "mode": mode,
            "canary": canary,
            "percent": percent if canary else None,
            "target_uri": self.storage_uri,
            "previous_uri": current_uri,
            "previous_predictor": predictor,
            "previous_revision": previous_revision,
            "new_revision": "",
            "deadline": time.time() + self._timeout_seconds(),
            "first_patch": patch,
        }

    def _rollout_condition(self) -> dict[str, Any]:
        r = self._rollout
        assert r is not None
        if r["mode"] != ks.KNATIVE:
            return {"kind": "standard"}
        if r["canary"]:
            return {"kind": "canary", "percent": r["percent"], "previous": r["previous_revision"]}
        return {"kind": "sole", "previous": r["previous_revision"]}

    # ----- the state machine ----------------------------------------------------------------------
    def _apply(self, hook: KServeHook, phase: str, patch: dict[str, Any], condition: dict[str, Any]) -> None:
        """Save (phase, patch) first, then patch, then save the wait condition with the new generation."""
        self._check_not_killed()
        r = self._rollout
        assert r is not None
        r.update(phase=phase, patch=patch, wait=None, condition=condition)
        self._save()
        obj = hook.patch_isvc(r["name"], r["namespace"], patch)
        r["wait"] = {**condition, "generation": obj["metadata"]["generation"]}
        self._save()
        self.log.info("%s: %s (generation %s)", r["name"], _describe(phase, r), obj["metadata"]["generation"])

    def _run(self, hook: KServeHook, outcome: tuple[str, Any] | None) -> dict[str, Any]:
        r = self._rollout
        assert r is not None
        while True:
            if outcome is None:
                if r.get("wait") is None:  # crashed between saving the phase and patching: patch again
                    self._apply(hook, r["phase"], r["patch"], r["condition"])
                outcome = self._wait(hook)  # defers in deferrable mode
            result = self._step(hook, outcome)
            if result is not None:
                return result
            outcome = None

    def _wait(self, hook: KServeHook) -> tuple[str, Any]:
        r = self._rollout
        assert r is not None
        left = r["deadline"] - time.time()
        if self.deferrable and left > INLINE_WAIT_S:
            # Waits that end within seconds (promotion, pinning, an already-restored spec) finish
            # here: a trigger round trip costs more, and a trigger that fires right after the
            # deferral races the scheduler's handling of the deferring process's exit (seen under
            # load: the resumed task was marked failed as "finished with state success").
            outcome = self._wait_here(hook, INLINE_WAIT_S) or self._final_now(hook)
            if outcome is not None:
                return outcome
            from kfp_bridge.triggers.kserve import KServeRolloutTrigger

            self.defer(
                trigger=KServeRolloutTrigger(
                    name=r["name"],
                    namespace=r["namespace"],
                    kubernetes_conn_id=self.kubernetes_conn_id,
                    condition=r["wait"],
                    deadline=r["deadline"],
                    rollout=r,
                    deferred_at=time.time(),
                ),
                method_name="execute_complete",
            )
        outcome = self._wait_here(hook, max(left, 0.0))
        return outcome or ("failed", self._timeout_message(self._last_seen))

    def _final_now(self, hook: KServeHook) -> tuple[str, Any] | None:
        """One last read before deferring: a wait that ended as the inline watch closed is not deferred."""
        r = self._rollout
        assert r is not None
        obj = hook.get_isvc(r["name"], r["namespace"])
        return _outcome(ks.evaluate(r["wait"], ks.IsvcStatus.from_object(obj)), obj)

    def _wait_here(self, hook: KServeHook, seconds: float) -> tuple[str, Any] | None:
        """Watch in this process for up to ``seconds``; None when the condition is still open."""
        r = self._rollout
        assert r is not None
        last: list[Any] = [None]
        verdict: list[ks.Verdict] = [ks.Verdict()]

        def done(obj: dict[str, Any]) -> bool:
            self._check_not_killed()
            st = ks.IsvcStatus.from_object(obj)
            if st.progress_key() != last[0]:
                last[0] = st.progress_key()
                self.log.info(st.progress_line())
            verdict[0] = ks.evaluate(r["wait"], st)
            return verdict[0].final

        try:
            obj = hook.wait_isvc(r["name"], r["namespace"], done, seconds)
        except TimeoutError as exc:
            self._last_seen = exc.args[1] if len(exc.args) > 1 else {}
            return None
        return _outcome(verdict[0], obj)

    def _timeout_message(self, last_obj: dict[str, Any] | None) -> str:
        r = self._rollout or {}
        return (
            f"timed out after {self._timeout_seconds():.0f}s in phase {r.get('phase')}; last state: "
            f"{ks.IsvcStatus.from_object(last_obj or {}).progress_line()}"
        )

    def _step(self, hook: KServeHook, outcome: tuple[str, Any]) -> dict[str, Any] | None:
        """Act on one wait outcome; returns the task result when finished, raises when rolled back."""
        self._check_not_killed()
        r = self._rollout
        assert r is not None
        kind, value = outcome
        phase = r["phase"]
        if phase == "rollout":
            if kind == "failed":
                return self._start_rollback(hook, f"the new model did not become ready: {value}")
            st = ks.IsvcStatus.from_object(value or hook.get_isvc(r["name"], r["namespace"]))
            r["new_revision"] = st.latest_created
            url = st.tag_url("latest") if r["mode"] == ks.KNATIVE else st.url
            url = url or st.url
            problems = self._smoke(url)
            if problems:
                return self._start_rollback(hook, f"smoke test failed against {url}: {'; '.join(problems)}")
            if r["canary"] and self.promote:
                self._apply(
                    hook,
                    "promote",
                    {"spec": {"predictor": {"canaryTrafficPercent": None}}},
                    {"kind": "sole", "previous": r["previous_revision"]},
                )
                return None
            return self._finish(hook, "canary" if r["canary"] else "rolled_out")
        if phase == "promote":
            if kind == "failed":
                return self._start_rollback(hook, f"promotion failed: {value}")
            return self._finish(hook, "promoted")
        if phase == "rollback_pin":
            if kind == "failed":
                raise KServeRolloutError(
                    f"{r['reason']}. Rollback could not pin {r['previous_revision']}: {value}"
                )
            obj = hook.get_isvc(r["name"], r["namespace"])
            self._apply(hook, "rollback_restore", rollback_patch(r, obj), restore_condition(r))
            return None
        if phase == "rollback_restore":
            if kind == "failed":
                raise self._rolled_back(
                    hook,
                    f"(the restored spec did not become ready: {value}; "
                    f"{r['previous_revision'] or 'the previous deployment'} keeps serving)",
                )
            if r["mode"] != ks.KNATIVE:
                raise self._rolled_back(hook, "")
            canary = r["previous_predictor"].get("canaryTrafficPercent")
            self._apply(
                hook,
                "rollback_release",
                {"spec": {"predictor": {"canaryTrafficPercent": canary}}},
                {"kind": "sole", "previous": "", "allow_previous": True}
                if canary is None
                else {"kind": "pinned", "previous": r["previous_revision"]},
            )
            return None
        if phase == "rollback_release":
            if kind == "failed":
                raise self._rolled_back(hook, f"(releasing the pin failed: {value})")
            raise self._rolled_back(hook, "")
        raise KServeRolloutError(
            f"unknown rollout phase {phase!r} in the saved state; clear task_state_store"
        )

    def _start_rollback(self, hook: KServeHook, reason: str) -> None:
        r = self._rollout
        assert r is not None
        self.log.error("Rolling back %s: %s", r["name"], reason)
        r["reason"] = reason
        r["deadline"] = time.time() + ROLLBACK_TIMEOUT_S
        if r["mode"] == ks.KNATIVE:
            self._apply(
                hook,
                "rollback_pin",
                {"spec": {"predictor": {"canaryTrafficPercent": 0}}},
                {"kind": "pinned", "previous": r["previous_revision"]},
            )
        else:
            obj = hook.get_isvc(r["name"], r["namespace"])
            self._apply(hook, "rollback_restore", rollback_patch(r, obj), restore_condition(r))
        return None

    def _rolled_back(self, hook: KServeHook, note: str) -> KServeRolloutError:
        r = self._rollout
        assert r is not None
        st = ks.IsvcStatus.from_object(hook.get_isvc(r["name"], r["namespace"]))
        r["phase"] = "rolled_back"
        self._save()
        serving = st.sole_revision() if r["mode"] == ks.KNATIVE else "the previous deployment"
        self._push(st, "rolled_back")
        return KServeRolloutError(
            f"Rollout of {r['target_uri']} to {r['namespace']}/{r['name']} failed: {r['reason']}. "
            f"Rolled back to {r['previous_uri']} ({serving} serves it; traffic: {st.traffic_summary()}) {note}".rstrip()
        )

    def _finish(self, hook: KServeHook, outcome: str) -> dict[str, Any]:
        self._check_not_killed()
        r = self._rollout
        assert r is not None
        st = ks.IsvcStatus.from_object(hook.get_isvc(r["name"], r["namespace"]))
        r["phase"] = "done"
        self._save()
        return self._result(st, outcome)

    def _result(self, st: ks.IsvcStatus, outcome: str) -> dict[str, Any]:
        r = self._rollout or {}
        result = {
            "outcome": outcome,
            "inference_service": st.name,
            "namespace": st.namespace,
            "mode": st.mode,
            "canary": bool(r.get("canary")),
            "previous_revision": r.get("previous_revision") or "",
            "new_revision": r.get("new_revision") or (st.latest_ready if st.mode == ks.KNATIVE else ""),
            "storage_uri": self.storage_uri,
            "traffic": [{"revision": t.revision, "percent": t.percent, "tag": t.tag} for t in st.traffic],
            "url": st.url,
        }
        self.log.info("Rollout %s: %s", outcome, result)
        return result

    def _push(self, st: ks.IsvcStatus, outcome: str) -> None:
        if self._context is not None and "ti" in self._context:
            self._context["ti"].xcom_push(key="rollout", value=self._result(st, outcome))

    # ----- helpers ---------------------------------------------------------------------------------
    def _smoke(self, url: str) -> list[str]:
        from kfp_bridge.utils import smoke

        spec = self.smoke_test
        if spec is None:
            return []
        if callable(spec):
            try:
                return [] if spec(url) is not False else [f"the smoke test callable returned False for {url}"]
            except Exception as exc:
                return [f"{type(exc).__name__}: {exc}"]
        import httpx

        target = f"{url.rstrip('/')}/{smoke.request_path(spec, self.inference_service)}"
        problems: list[str] = ["no attempt made"]
        for attempt in range(5):
            try:
                resp = httpx.post(target, json=spec["payload"], timeout=float(spec.get("timeout", 10)))
            except httpx.HTTPError as exc:
                problems = [f"request to {target} failed: {type(exc).__name__}: {exc}"]
            else:
                try:
                    body: Any = resp.json()
                except ValueError:
                    body = resp.text
                problems = smoke.check_response(spec, resp.status_code, body)
                if resp.status_code not in (502, 503):
                    break
            if attempt < 4:
                time.sleep(1.0)
        self.log.info("Smoke test against %s: %s", target, "passed" if not problems else problems)
        return problems

    def _save(self) -> None:
        if self._store is not None and self._rollout is not None:
            self._store.set(STATE_KEY, {k: v for k, v in self._rollout.items() if k != "first_patch"})

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


def rollback_patch(rollout: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Merge patch restoring the previous predictor; Knative keeps it pinned (canary 0) until released."""
    target = copy.deepcopy(rollout["previous_predictor"])
    if rollout["mode"] == ks.KNATIVE:
        target["canaryTrafficPercent"] = 0
    predictor = (current.get("spec") or {}).get("predictor") or {}
    return {"spec": {"predictor": ks.merge_patch_to(predictor, target)}}


def restore_condition(rollout: dict[str, Any]) -> dict[str, Any]:
    """What "the previous spec is back" means: Knative, the restored revision ready at 0% (pinned)."""
    if rollout["mode"] == ks.KNATIVE:
        return {"kind": "canary", "percent": 0, "previous": rollout["previous_revision"]}
    return {"kind": "standard"}


def _outcome(verdict: ks.Verdict, obj: dict[str, Any]) -> tuple[str, Any] | None:
    """A wait's outcome from its verdict: ("failed", reason), ("done", object), or None while open."""
    if verdict.failure is not None:
        return "failed", verdict.failure
    return ("done", obj) if verdict.done else None


def _describe(phase: str, r: dict[str, Any]) -> str:
    return {
        "rollout": f"rolling out {r['target_uri']}"
        + (f" as a {r['percent']}% canary" if r.get("canary") else " directly"),
        "promote": f"promoting {r.get('new_revision')} to 100%",
        "rollback_pin": f"pinning {r['previous_revision']} to 100% (canaryTrafficPercent: 0)",
        "rollback_restore": f"restoring the previous spec ({r['previous_uri']})",
        "rollback_release": "releasing the pin on the restored spec",
    }.get(phase, phase)
