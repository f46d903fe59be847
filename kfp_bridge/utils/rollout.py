"""The KServe rollout as a typed state machine: phases, the saved rollout, wait conditions, decisions.

Pure: no I/O, no Airflow. The operator (``operators/kserve.py``) and the trigger
(``triggers/kserve.py``) both use this module and never import each other.

Phases (``Phase``)::

    ROLLOUT ──ok──> smoke test ──pass──> PROMOTE (canary + promote) ──ok──> DONE
       │                 │                  │
       └─fail/error──────┴─fail─────────────┴─fail──> ROLLBACK_PIN (Knative) ─> ROLLBACK_RESTORE
                                                       ROLLBACK_RESTORE (Standard) ─────────┐
    ROLLBACK_RESTORE ──ok──> ROLLBACK_RELEASE (Knative) ──> ROLLED_BACK <───────────────────┘

What "my change is live" means never depends on ``status.observedGeneration`` (a child object's
counter, fidelity S1): Knative waits for ``latestCreatedRevision`` to move past the one read just
before the patch (:class:`NewRevision`), Standard mode for the predictor Deployment's rollout
(:class:`DeploymentRollout`, S2).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

from kfp_bridge.utils.kserve_status import (
    KNATIVE,
    DeploymentStatus,
    IsvcStatus,
    failing_pod,
    merge_patch_to,
    pod_key,
    predictor_deployment,
    storage_field,
    storage_uri,
)

ROLLBACK_TIMEOUT_S = 300.0


class Phase(StrEnum):
    ROLLOUT = "rollout"
    PROMOTE = "promote"
    ROLLBACK_PIN = "rollback_pin"
    ROLLBACK_RESTORE = "rollback_restore"
    ROLLBACK_RELEASE = "rollback_release"
    DONE = "done"
    ROLLED_BACK = "rolled_back"

    @property
    def terminal(self) -> bool:
        return self in (Phase.DONE, Phase.ROLLED_BACK)

    @property
    def unfinished(self) -> bool:
        """The new model may still take traffic: a kill rolls these back."""
        return self in (Phase.ROLLOUT, Phase.PROMOTE, Phase.ROLLBACK_PIN)

    @property
    def rolling_back(self) -> bool:
        return self in (Phase.ROLLBACK_PIN, Phase.ROLLBACK_RESTORE, Phase.ROLLBACK_RELEASE)


class RolloutRefused(RuntimeError):
    """The InferenceService is in no state to start a rollout; nothing was changed."""


# ---- wait conditions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    done: bool = False
    failure: str | None = None

    @property
    def final(self) -> bool:
        return self.done or self.failure is not None


@dataclass(frozen=True)
class Snapshot:
    """One look at what a wait needs: the InferenceService, and in Standard mode its Deployment and pods."""

    isvc: IsvcStatus
    deployment: DeploymentStatus | None = None
    pods: tuple[dict[str, Any], ...] = ()
    isvc_object: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class NewRevision:
    """Knative: a revision other than ``created_before`` is the latest created, ready, and holds
    ``percent`` (``previous`` the rest). ``percent`` 100 is a direct rollout, 0 a pinned restore."""

    created_before: str
    previous: str
    percent: int
    spec_failure_before: str = ""
    kind: ClassVar[str] = "new_revision"


@dataclass(frozen=True)
class Serving:
    """Knative: ``revision`` holds 100% (``""``: the latest created revision, once ready)."""

    revision: str
    spec_failure_before: str = ""
    kind: ClassVar[str] = "serving"


@dataclass(frozen=True)
class DeploymentRollout:
    """Standard: the Deployment moved past ``generation_before`` (None: no change expected) and
    rolled out as ``kubectl rollout status`` decides; a failing pod not in ``old_pods`` fails it."""

    deployment: str
    generation_before: int | None
    old_pods: tuple[str, ...] = ()
    spec_failure_before: str = ""
    kind: ClassVar[str] = "deployment_rollout"


Condition = NewRevision | Serving | DeploymentRollout
_CONDITIONS: dict[str, type[NewRevision] | type[Serving] | type[DeploymentRollout]] = {
    c.kind: c for c in (NewRevision, Serving, DeploymentRollout)
}


def condition_to_json(condition: Condition) -> dict[str, Any]:
    data = {k: v for k, v in condition.__dict__.items()}
    if isinstance(condition, DeploymentRollout):
        data["old_pods"] = list(condition.old_pods)
    return {"kind": condition.kind, **data}


def condition_from_json(data: dict[str, Any], name: str = "") -> Condition:
    """The condition of a saved rollout; also reads the pre-typed form (``canary``/``sole``/``pinned``/``standard``)."""
    kind = data.get("kind")
    fields = {k: v for k, v in data.items() if k != "kind"}
    if kind in _CONDITIONS:
        if kind == DeploymentRollout.kind:
            fields["old_pods"] = tuple(fields.get("old_pods") or ())
        return _CONDITIONS[kind](**fields)
    previous = str(data.get("previous") or "")
    if kind == "canary":
        return NewRevision(created_before=previous, previous=previous, percent=int(data["percent"]))
    if kind == "sole":
        return Serving(revision="")
    if kind == "pinned":
        return Serving(revision=previous)
    if kind == "standard":
        return DeploymentRollout(deployment=predictor_deployment(name), generation_before=None)
    raise ValueError(f"unknown wait condition {data!r} in the saved rollout; clear task_state_store")


def evaluate(condition: Condition, snap: Snapshot) -> Verdict:
    """Decide one wait ``condition`` against one ``snap``."""
    st = snap.isvc
    spec_failure = st.spec_failure()
    # A refusal already shown before the patch is the old spec's; only a new one is ours.
    if spec_failure is not None and spec_failure != condition.spec_failure_before:
        return Verdict(failure=spec_failure)
    if isinstance(condition, NewRevision):
        new = st.latest_created
        if not new or new == condition.created_before:
            return Verdict()  # KServe/Knative has not created the revision for this patch yet
        if st.latest_ready != new:
            failure = st.failure_reason(new)
            return Verdict(failure=failure) if failure is not None else Verdict()
        share_ok = st.share(new) == condition.percent
        rest_ok = condition.percent == 100 or st.share(condition.previous) == 100 - condition.percent
        return Verdict(done=share_ok and rest_ok)
    if isinstance(condition, Serving):
        if condition.revision:
            return Verdict(done=st.share(condition.revision) == 100)
        latest = st.latest_created
        return Verdict(done=bool(latest) and st.latest_ready == latest and st.share(latest) == 100)
    dep = snap.deployment
    if dep is None:
        return Verdict()
    if condition.generation_before is not None and dep.generation <= condition.generation_before:
        return Verdict()  # KServe has not written this change into the Deployment yet
    done, failure, _ = dep.rollout_state()
    if failure is None:
        failure = failing_pod(list(snap.pods), set(condition.old_pods))
    if failure is not None:
        return Verdict(failure=failure)
    return Verdict(done=done)


def progress_line(snap: Snapshot) -> str:
    line = snap.isvc.progress_line()
    if snap.deployment is not None:
        line += f"; deployment: {snap.deployment.rollout_state()[2] or snap.deployment.progressing_reason}"
    return line


# ---- the saved rollout ----------------------------------------------------------------------------
@dataclass
class Rollout:
    """Everything a later attempt (or the trigger) needs to finish or undo the rollout; saved as JSON
    in ``task_state_store`` before every side effect.

    ``patched`` says the current phase's patch went out: a resumed attempt whose phase is not
    patched sends the patch again (a merge patch is idempotent)."""

    name: str
    namespace: str
    mode: str
    target_uri: str
    previous_uri: str
    previous_predictor: dict[str, Any]
    previous_revision: str = ""
    canary: bool = False
    percent: int | None = None
    new_revision: str = ""
    deadline: float = 0.0
    phase: Phase = Phase.ROLLOUT
    patch: dict[str, Any] | None = None
    condition: Condition | None = None
    patched: bool = False
    reason: str = ""
    smoke: str = ""  # "passed" / "skipped" once the smoke test ran; what the recorded canary shows
    smoke_url: str = ""
    # Set by KServePromoteOperator: a person approved the promotion, so a kill mid-promotion leaves
    # it for the retry instead of rolling the approved model back.
    approved: bool = False

    @property
    def knative(self) -> bool:
        return self.mode == KNATIVE

    def kill_rolls_back(self) -> bool:
        """Whether a kill (the operator's or the trigger's on_kill) must take the new model out of traffic."""
        return self.phase.unfinished and not (self.approved and self.phase is Phase.PROMOTE)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 2,
            "name": self.name,
            "namespace": self.namespace,
            "mode": self.mode,
            "target_uri": self.target_uri,
            "previous_uri": self.previous_uri,
            "previous_predictor": copy.deepcopy(self.previous_predictor),
            "previous_revision": self.previous_revision,
            "canary": self.canary,
            "percent": self.percent,
            "new_revision": self.new_revision,
            "deadline": self.deadline,
            "phase": self.phase.value,
            "patch": copy.deepcopy(self.patch),
            "condition": condition_to_json(self.condition) if self.condition is not None else None,
            "patched": self.patched,
            "reason": self.reason,
            "smoke": self.smoke,
            "smoke_url": self.smoke_url,
            "approved": self.approved,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rollout:
        """Read a saved rollout, the version-1 dict form (``wait``/``condition`` kinds) included."""
        condition = data.get("condition")
        patched = data["patched"] if "patched" in data else data.get("wait") is not None
        return cls(
            name=data["name"],
            namespace=data["namespace"],
            mode=data["mode"],
            target_uri=data["target_uri"],
            previous_uri=data.get("previous_uri") or "",
            previous_predictor=dict(data.get("previous_predictor") or {}),
            previous_revision=data.get("previous_revision") or "",
            canary=bool(data.get("canary")),
            percent=data.get("percent"),
            new_revision=data.get("new_revision") or "",
            deadline=float(data.get("deadline") or 0.0),
            phase=Phase(data["phase"]),
            patch=data.get("patch"),
            condition=condition_from_json(condition, data["name"]) if condition else None,
            patched=bool(patched),
            reason=data.get("reason") or "",
            smoke=data.get("smoke") or "",
            smoke_url=data.get("smoke_url") or "",
            approved=bool(data.get("approved")),
        )


# ---- planning and decisions -----------------------------------------------------------------------
def plan(
    obj: dict[str, Any], namespace: str, target_uri: str, percent: int | None, deadline: float
) -> tuple[Rollout, dict[str, Any]] | None:
    """The rollout and its first merge patch, or None when ``target_uri`` already serves alone.

    Raises :class:`RolloutRefused` when a Knative service has no single serving revision.
    Standard mode ignores ``percent`` (KServe only reads canaryTrafficPercent in Knative mode).
    """
    st = IsvcStatus.from_object(obj)
    predictor = copy.deepcopy((obj.get("spec") or {}).get("predictor") or {})
    current_uri = storage_uri(predictor)
    knative = st.mode == KNATIVE
    previous_revision = ""
    if knative:
        sole = st.sole_revision()
        if not st.latest_rolledout or sole is None:
            raise RolloutRefused(
                f"InferenceService {namespace}/{st.name} has no single serving revision "
                f"(traffic: {st.traffic_summary()}); finish or roll back the rollout in progress first"
            )
        previous_revision = sole
    if current_uri == target_uri and predictor.get("canaryTrafficPercent") is None and st.is_ready:
        return None
    canary = knative and percent is not None and percent < 100
    patch: dict[str, Any] = {"spec": {"predictor": {storage_field(predictor): {"storageUri": target_uri}}}}
    if knative:
        patch["spec"]["predictor"]["canaryTrafficPercent"] = percent if canary else None
        # Tag routing gives the new revision its own host name for the smoke test (S3/S4).
        patch["metadata"] = {"annotations": {"serving.kserve.io/enable-tag-routing": "true"}}
    rollout = Rollout(
        name=st.name,
        namespace=namespace,
        mode=st.mode,
        target_uri=target_uri,
        previous_uri=current_uri,
        previous_predictor=predictor,
        previous_revision=previous_revision,
        canary=canary,
        percent=percent if canary else None,
        deadline=deadline,
    )
    return rollout, patch


def rollback_patch(rollout: Rollout, current: dict[str, Any]) -> dict[str, Any]:
    """Merge patch restoring the previous predictor; Knative keeps it pinned (canary 0) until released."""
    target = copy.deepcopy(rollout.previous_predictor)
    if rollout.knative:
        target["canaryTrafficPercent"] = 0
    predictor = (current.get("spec") or {}).get("predictor") or {}
    return {"spec": {"predictor": merge_patch_to(predictor, target)}}


def condition_for(rollout: Rollout, phase: Phase, before: Snapshot, patch: dict[str, Any]) -> Condition:
    """What the patch of ``phase`` must lead to, given ``before``: the state read just before it."""
    st = before.isvc
    failure_before = st.spec_failure() or ""
    if not rollout.knative:
        dep = before.deployment
        changes_spec = _changes(patch)
        return DeploymentRollout(
            deployment=predictor_deployment(rollout.name),
            generation_before=dep.generation if dep is not None and changes_spec else None,
            old_pods=tuple(sorted({pod_key(p) for p in before.pods})),
            spec_failure_before=failure_before,
        )
    if phase is Phase.ROLLOUT:
        percent = rollout.percent if rollout.canary and rollout.percent is not None else 100
        return NewRevision(st.latest_created, rollout.previous_revision, percent, failure_before)
    if phase is Phase.PROMOTE:
        return Serving(rollout.new_revision or "", failure_before)
    if phase is Phase.ROLLBACK_PIN:
        return Serving(rollout.previous_revision, failure_before)
    if phase is Phase.ROLLBACK_RESTORE:
        if _changes(patch, ignore=("canaryTrafficPercent",)):
            return NewRevision(st.latest_created, rollout.previous_revision, 0, failure_before)
        # The rollout never reached Knative (e.g. an invalid spec): no new revision will come.
        return Serving(rollout.previous_revision, failure_before)
    if phase is Phase.ROLLBACK_RELEASE:
        canary = rollout.previous_predictor.get("canaryTrafficPercent")
        return Serving("" if canary is None else rollout.previous_revision, failure_before)
    raise ValueError(f"phase {phase.value} has no wait")


def _changes(patch: dict[str, Any], ignore: tuple[str, ...] = ()) -> bool:
    """Whether ``patch`` touches the predictor beyond ``ignore`` (a no-op patch leaves the children alone)."""
    predictor = ((patch.get("spec") or {}).get("predictor")) or {}
    return any(key not in ignore for key in predictor)


@dataclass(frozen=True)
class PatchStep:
    """Patch the InferenceService for ``phase``; ``patch`` None: :func:`rollback_patch` of the current object."""

    phase: Phase
    patch: dict[str, Any] | None


@dataclass(frozen=True)
class SmokeTest:
    """The new model is live: run the smoke test, then call :func:`after_smoke`."""


@dataclass(frozen=True)
class Finish:
    outcome: str  # "promoted", "canary" or "rolled_out"


@dataclass(frozen=True)
class RolledBack:
    note: str  # empty when the previous model verifiably serves alone again


Action = PatchStep | SmokeTest | Finish | RolledBack


def start_rollback(rollout: Rollout, reason: str) -> tuple[Rollout, PatchStep]:
    """Knative first pins the previous revision (one patch takes the new one out of traffic)."""
    rollout = replace(rollout, reason=reason)
    if rollout.knative:
        return rollout, PatchStep(Phase.ROLLBACK_PIN, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    return rollout, PatchStep(Phase.ROLLBACK_RESTORE, None)


def after_wait(rollout: Rollout, ok: bool, detail: str) -> tuple[Rollout, Action]:
    """The next action once the wait of ``rollout.phase`` ended (``ok``, else failed with ``detail``)."""
    phase = rollout.phase
    if phase is Phase.ROLLOUT:
        if ok:
            return rollout, SmokeTest()
        return start_rollback(rollout, f"the new model did not become live: {detail}")
    if phase is Phase.PROMOTE:
        if ok:
            return rollout, Finish("promoted")
        return start_rollback(rollout, f"promotion failed: {detail}")
    if phase is Phase.ROLLBACK_PIN:
        # Even when the pin could not be verified, restoring the spec (pinned) is the way back.
        return rollout, PatchStep(Phase.ROLLBACK_RESTORE, None)
    if phase is Phase.ROLLBACK_RESTORE:
        if not ok:
            serving = rollout.previous_revision or "the previous deployment"
            return rollout, RolledBack(f"(the restored spec was not verified: {detail}; {serving} keeps serving)")
        if not rollout.knative:
            return rollout, RolledBack("")
        canary = rollout.previous_predictor.get("canaryTrafficPercent")
        return rollout, PatchStep(Phase.ROLLBACK_RELEASE, {"spec": {"predictor": {"canaryTrafficPercent": canary}}})
    if phase is Phase.ROLLBACK_RELEASE:
        return rollout, RolledBack("" if ok else f"(releasing the pin was not verified: {detail})")
    raise ValueError(f"no wait ends in phase {phase.value}")


def after_smoke(rollout: Rollout, problems: list[str], url: str, promote: bool) -> tuple[Rollout, Action]:
    if problems:
        return start_rollback(rollout, f"smoke test failed against {url}: {'; '.join(problems)}")
    if rollout.canary and promote:
        return rollout, PatchStep(Phase.PROMOTE, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    return rollout, Finish("canary" if rollout.canary else "rolled_out")


def undone_while_away(rollout: Rollout, current: dict[str, Any]) -> bool:
    """A resumed ROLLOUT/PROMOTE whose spec no longer serves the target: someone (the trigger's
    on_kill, a person) restored it while no attempt ran; the rollback must be finished, not waited on."""
    if rollout.phase not in (Phase.ROLLOUT, Phase.PROMOTE) or not rollout.patched:
        return False
    return storage_uri((current.get("spec") or {}).get("predictor") or {}) != rollout.target_uri


def describe(rollout: Rollout, phase: Phase) -> str:
    return {
        Phase.ROLLOUT: f"rolling out {rollout.target_uri}"
        + (f" as a {rollout.percent}% canary" if rollout.canary else " directly"),
        Phase.PROMOTE: f"promoting {rollout.new_revision} to 100%",
        Phase.ROLLBACK_PIN: f"pinning {rollout.previous_revision} to 100% (canaryTrafficPercent: 0)",
        Phase.ROLLBACK_RESTORE: f"restoring the previous spec ({rollout.previous_uri})",
        Phase.ROLLBACK_RELEASE: "releasing the pin on the restored spec",
    }.get(phase, phase.value)


def api_error(exc: BaseException) -> str:
    """A short text for an API error (status, reason, the Status message), never its headers."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        message = ""
        try:
            message = json.loads(getattr(exc, "body", "") or "{}").get("message", "")
        except (ValueError, AttributeError, TypeError):
            pass
        text = f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
        return f"{text}: {message}" if message else text
    return f"{type(exc).__name__}: {exc}"
