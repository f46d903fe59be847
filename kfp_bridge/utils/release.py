"""The recorded canary and the decisions that finish it: promote or roll back, or refuse.

``KServeRolloutOperator(promote=False)`` leaves a verified canary and returns a :class:`CanaryRecord`
(JSON, in XCom). ``KServePromoteOperator`` / ``KServeRollbackOperator`` (``operators/kserve_release.py``)
read the InferenceService again, classify it against the record (:func:`release_view`), and take
the step :func:`promote_step` / :func:`rollback_step` decide; the steps themselves run on the rollout
state machine (:mod:`kfp_bridge.utils.rollout`), so waits, crash safety and the rollback path are
the rollout's own.

Pure: no I/O, no Airflow. The record carries no spec (a predictor can hold env values), only a
fingerprint of it, so a change anywhere else in the predictor is seen without storing it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kfp_bridge.utils.kserve_status import (
    KNATIVE,
    IsvcStatus,
    storage_field,
    storage_uri,
    validate_storage_uri,
)
from kfp_bridge.utils.rollout import PatchStep, Phase, Rollout

RECORD_VERSION = 1
RECORD_KIND = "kserve_canary"
# KServe names: a DNS-1035 label for the service, DNS-1123 for the namespace (as the rollout checks).
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def predictor_fingerprint(predictor: dict[str, Any]) -> str:
    """sha256 of the predictor without what a rollout changes (storageUri, canaryTrafficPercent)."""
    rest = copy.deepcopy(predictor)
    rest.pop("canaryTrafficPercent", None)
    field = storage_field(rest)
    if isinstance(rest.get(field), dict):
        rest[field].pop("storageUri", None)
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class CanaryRecord:
    """A verified canary (or, in Standard mode, a verified direct rollout) waiting for a decision.

    ``generation``/``resource_version`` are what the rollout saw when it finished; ``traffic`` the
    split it verified; ``smoke`` ``passed`` or ``skipped`` (a failed smoke test never leaves a canary).
    """

    inference_service: str
    namespace: str
    mode: str
    previous_uri: str
    target_uri: str
    previous_revision: str
    new_revision: str
    canary: bool
    percent: int | None
    previous_canary_percent: int | None
    traffic: tuple[tuple[str, int], ...]
    smoke: str
    smoke_url: str
    generation: int
    resource_version: str
    fingerprint: str
    url: str = ""

    @property
    def knative(self) -> bool:
        return self.mode == KNATIVE

    @property
    def unchanged(self) -> bool:
        """The rollout found the target already serving: there is nothing to promote or roll back."""
        return self.previous_uri == self.target_uri

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": RECORD_KIND,
            "version": RECORD_VERSION,
            "inference_service": self.inference_service,
            "namespace": self.namespace,
            "mode": self.mode,
            "previous_uri": self.previous_uri,
            "target_uri": self.target_uri,
            "previous_revision": self.previous_revision,
            "new_revision": self.new_revision,
            "canary": self.canary,
            "percent": self.percent,
            "previous_canary_percent": self.previous_canary_percent,
            "traffic": [{"revision": r, "percent": p} for r, p in self.traffic],
            "smoke": self.smoke,
            "smoke_url": self.smoke_url,
            "generation": self.generation,
            "resource_version": self.resource_version,
            "fingerprint": self.fingerprint,
            "url": self.url,
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "rollout") -> CanaryRecord:
        """Read a record: the rollout task's whole return value (its ``recorded`` key) or the record
        itself. ValueError names what is wrong and where it came from (``source``)."""
        if isinstance(data, dict) and "recorded" in data:
            if data.get("recorded") is None:
                raise ValueError(
                    f"{source} has no recorded canary (outcome {data.get('outcome')!r}): only "
                    "KServeRolloutOperator(promote=False) records one; set promote=False on the rollout task"
                )
            data = data["recorded"]
        if not isinstance(data, dict) or data.get("kind") != RECORD_KIND:
            raise ValueError(
                f"{source} must be the return value of KServeRolloutOperator(promote=False) (a dict with a "
                f"'recorded' {RECORD_KIND!r} record), got {_short(data)}"
            )
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"{source}: record version {data.get('version')!r} is not {RECORD_VERSION}")
        try:
            record = cls(
                inference_service=_str(data, "inference_service"),
                namespace=_str(data, "namespace"),
                mode=_str(data, "mode"),
                previous_uri=_str(data, "previous_uri"),
                target_uri=_str(data, "target_uri"),
                previous_revision=_str(data, "previous_revision", empty=True),
                new_revision=_str(data, "new_revision", empty=True),
                canary=_bool(data, "canary"),
                percent=_percent(data, "percent"),
                previous_canary_percent=_percent(data, "previous_canary_percent"),
                traffic=tuple((str(t["revision"]), int(t["percent"])) for t in data.get("traffic") or []),
                smoke=_str(data, "smoke"),
                smoke_url=_str(data, "smoke_url", empty=True),
                generation=_int(data, "generation"),
                resource_version=_str(data, "resource_version", empty=True),
                fingerprint=_str(data, "fingerprint"),
                url=_str(data, "url", empty=True),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source}: the recorded canary is incomplete ({exc!r})") from None
        if not _ISVC_NAME.match(record.inference_service) or len(record.inference_service) > 63:
            raise ValueError(f"{source}: inference_service {record.inference_service!r} is not an InferenceService name")
        if not _DNS1123.match(record.namespace) or len(record.namespace) > 63:
            raise ValueError(f"{source}: namespace {record.namespace!r} is not a Kubernetes namespace")
        for key in ("previous_uri", "target_uri"):
            try:
                validate_storage_uri(getattr(record, key))
            except ValueError as exc:
                raise ValueError(f"{source}: {key}: {exc}") from None
        if record.canary and (record.percent is None or not record.knative):
            raise ValueError(f"{source}: a canary record needs a percent and Knative mode")
        return record


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:120]}{'...' if len(text) > 120 else ''}"


def _str(data: dict[str, Any], key: str, *, empty: bool = False) -> str:
    value = data[key]
    if not isinstance(value, str) or (not empty and not value):
        raise TypeError(f"{key} must be a{'' if empty else ' non-empty'} string, got {value!r}")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    if not isinstance(data[key], bool):
        raise TypeError(f"{key} must be true or false, got {data[key]!r}")
    return data[key]


def _int(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    return value


def _percent(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise TypeError(f"{key} must be 0..100 or null, got {value!r}")
    return value


def record_canary(rollout: Rollout, obj: dict[str, Any]) -> CanaryRecord:
    """The record of ``rollout`` (verified, not promoted) as the InferenceService ``obj`` now stands."""
    st = IsvcStatus.from_object(obj)
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    return CanaryRecord(
        inference_service=rollout.name,
        namespace=rollout.namespace,
        mode=rollout.mode,
        previous_uri=rollout.previous_uri,
        target_uri=rollout.target_uri,
        previous_revision=rollout.previous_revision,
        new_revision=rollout.new_revision,
        canary=rollout.canary,
        percent=rollout.percent,
        previous_canary_percent=rollout.previous_predictor.get("canaryTrafficPercent"),
        traffic=tuple((t.revision, t.percent) for t in st.traffic),
        smoke=rollout.smoke or "skipped",
        smoke_url=rollout.smoke_url,
        generation=st.generation,
        resource_version=st.resource_version,
        fingerprint=predictor_fingerprint(predictor),
        url=st.url,
    )


def unchanged_record(obj: dict[str, Any], namespace: str) -> CanaryRecord:
    """The record of a rollout that found its target already serving alone (nothing to decide)."""
    st = IsvcStatus.from_object(obj)
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    uri = storage_uri(predictor)
    serving = st.sole_revision() or "" if st.mode == KNATIVE else ""
    return CanaryRecord(
        inference_service=st.name,
        namespace=namespace,
        mode=st.mode,
        previous_uri=uri,
        target_uri=uri,
        previous_revision=serving,
        new_revision=serving,
        canary=False,
        percent=None,
        previous_canary_percent=None,
        traffic=tuple((t.revision, t.percent) for t in st.traffic),
        smoke="skipped",
        smoke_url="",
        generation=st.generation,
        resource_version=st.resource_version,
        fingerprint=predictor_fingerprint(predictor),
        url=st.url,
    )


# ---- where the InferenceService stands against the record ------------------------------------------
class ReleaseState(StrEnum):
    AS_RECORDED = "as_recorded"  # the canary (or direct rollout) stands as it was recorded
    PROMOTED = "promoted"  # the new model's spec without a canary
    ROLLED_BACK = "rolled_back"  # the previous spec is back and serves alone
    ROLLING_BACK = "rolling_back"  # the previous spec is back, pinned or not settled (e.g. a kill mid-rollback)
    CHANGED = "changed"  # anything else: someone or something changed the service since


@dataclass(frozen=True)
class ReleaseView:
    state: ReleaseState
    detail: str  # what was seen, for the log and the refusal
    settled: bool = True  # traffic as the state's spec says (Knative: one revision serves 100%)


def release_view(record: CanaryRecord, obj: dict[str, Any]) -> ReleaseView:
    """Classify the InferenceService ``obj`` against ``record``. Generation equal to the recorded one
    proves an untouched spec; otherwise the spec's content decides (a change of generation alone, e.g.
    a canary set back to the same percent, is not a change)."""
    st = IsvcStatus.from_object(obj)
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    uri = storage_uri(predictor)
    canary = predictor.get("canaryTrafficPercent")
    where = f"{record.namespace}/{record.inference_service} (generation {st.generation}, recorded {record.generation})"
    seen = f"storageUri {uri}, canaryTrafficPercent {canary}, traffic: {st.traffic_summary()}"
    if st.mode != record.mode:
        return ReleaseView(ReleaseState.CHANGED, f"{where} now runs in {st.mode} mode (recorded {record.mode})")
    if predictor_fingerprint(predictor) != record.fingerprint:
        return ReleaseView(
            ReleaseState.CHANGED,
            f"{where}: the predictor spec changed beyond storageUri/canaryTrafficPercent since the canary was "
            f"recorded ({seen})",
        )
    knative = record.knative
    sole = st.sole_revision() if knative else None
    if uri == record.target_uri:
        latest = st.latest_created
        if knative and latest and record.new_revision and latest != record.new_revision:
            return ReleaseView(
                ReleaseState.CHANGED,
                f"{where}: revision {latest} was created after the recorded canary {record.new_revision} ({seen})",
            )
        if canary == record.percent:
            return ReleaseView(ReleaseState.AS_RECORDED, f"{where}: as recorded ({seen})")
        if canary == 0 and knative:  # the first step of a rollback (pin the previous revision), not finished
            return ReleaseView(
                ReleaseState.ROLLING_BACK, f"{where}: the previous revision is pinned, rollback unfinished ({seen})", False
            )
        if canary is None:
            settled = not knative or (sole == record.new_revision and st.latest_ready == latest)
            return ReleaseView(ReleaseState.PROMOTED, f"{where}: the new model's spec has no canary ({seen})", settled)
        return ReleaseView(
            ReleaseState.CHANGED,
            f"{where}: canaryTrafficPercent is {canary}, the recorded canary had {record.percent} ({seen})",
        )
    if uri == record.previous_uri:
        if canary == record.previous_canary_percent:
            settled = not knative or (
                sole is not None and sole != record.new_revision and st.latest_ready == st.latest_created
            )
            state = ReleaseState.ROLLED_BACK if settled else ReleaseState.ROLLING_BACK
            return ReleaseView(state, f"{where}: the previous model's spec is back ({seen})", settled)
        if canary == 0:  # the pin of an unfinished rollback (the rollout's on_kill leaves it so)
            return ReleaseView(
                ReleaseState.ROLLING_BACK, f"{where}: the previous model's spec is back, pinned ({seen})", False
            )
    return ReleaseView(
        ReleaseState.CHANGED,
        f"{where}: storageUri is {uri}; the recorded canary rolled out {record.target_uri} "
        f"over {record.previous_uri} ({seen})",
    )


# ---- the decisions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refuse:
    reason: str


@dataclass(frozen=True)
class AlreadyDone:
    outcome: str  # "promoted" / "rolled_back" / "unchanged"
    note: str


ReleaseStep = PatchStep | Refuse | AlreadyDone
PROMOTE_PATCH: dict[str, Any] = {"spec": {"predictor": {"canaryTrafficPercent": None}}}


def promote_step(record: CanaryRecord, view: ReleaseView) -> ReleaseStep:
    """What promoting ``record`` means given ``view``."""
    if record.unchanged:
        return AlreadyDone("unchanged", f"the rollout changed nothing ({record.target_uri} already served)")
    if view.state is ReleaseState.AS_RECORDED:
        if not record.canary:
            return AlreadyDone("promoted", f"the direct rollout of {record.target_uri} already serves alone")
        return PatchStep(Phase.PROMOTE, copy.deepcopy(PROMOTE_PATCH))
    if view.state is ReleaseState.PROMOTED:
        if view.settled:
            return AlreadyDone("promoted", f"already promoted: {view.detail}")
        # Promotion under way (e.g. a killed attempt's patch went out): the same patch, then verify.
        return PatchStep(Phase.PROMOTE, copy.deepcopy(PROMOTE_PATCH))
    if view.state in (ReleaseState.ROLLED_BACK, ReleaseState.ROLLING_BACK):
        return Refuse(
            f"Refusing to promote {record.target_uri}: the canary is gone, {view.detail}. "
            "Roll the model out again (KServeRolloutOperator) to promote it"
        )
    return Refuse(f"Refusing to promote {record.target_uri}: the InferenceService changed since the canary "
                  f"was recorded: {view.detail}. Nothing was changed; check it by hand")


def rollback_step(record: CanaryRecord, view: ReleaseView) -> ReleaseStep:
    """What rolling ``record`` back means given ``view`` (a PatchStep: start the rollout's rollback there)."""
    if record.unchanged:
        return AlreadyDone("unchanged", f"the rollout changed nothing ({record.target_uri} already served)")
    if view.state is ReleaseState.AS_RECORDED:
        if record.knative:
            # The rollout's own first rollback step: pin the previous revision, then restore.
            return PatchStep(Phase.ROLLBACK_PIN, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
        return PatchStep(Phase.ROLLBACK_RESTORE, None)
    if view.state is ReleaseState.ROLLED_BACK:
        return AlreadyDone("rolled_back", f"already rolled back: {view.detail}")
    if view.state is ReleaseState.ROLLING_BACK:
        return PatchStep(Phase.ROLLBACK_RESTORE, None)  # finish it: restore (idempotent), then release the pin
    if view.state is ReleaseState.PROMOTED:
        return Refuse(
            f"Refusing to roll back: the canary of {record.target_uri} was already promoted ({view.detail}). "
            f"To go back, roll {record.previous_uri} out again (KServeRolloutOperator)"
        )
    return Refuse(f"Refusing to roll back: the InferenceService changed since the canary was recorded: "
                  f"{view.detail}. Nothing was changed; check it by hand")


def rollout_from_record(record: CanaryRecord, obj: dict[str, Any], deadline: float) -> Rollout:
    """The rollout state machine's view of ``record``, its previous predictor rebuilt from ``obj``.

    Only valid when ``obj``'s predictor matches the record's fingerprint (:func:`release_view` said
    so): then the previous predictor is the current one with the previous storageUri and canary."""
    predictor = copy.deepcopy((obj.get("spec") or {}).get("predictor") or {})
    field = storage_field(predictor)
    predictor.setdefault(field, {})["storageUri"] = record.previous_uri
    predictor.pop("canaryTrafficPercent", None)
    if record.previous_canary_percent is not None:
        predictor["canaryTrafficPercent"] = record.previous_canary_percent
    return Rollout(
        name=record.inference_service,
        namespace=record.namespace,
        mode=record.mode,
        target_uri=record.target_uri,
        previous_uri=record.previous_uri,
        previous_predictor=predictor,
        previous_revision=record.previous_revision,
        canary=record.canary,
        percent=record.percent,
        new_revision=record.new_revision,
        deadline=deadline,
        phase=Phase.ROLLOUT,
        patched=True,
        smoke=record.smoke,
        smoke_url=record.smoke_url,
    )


# ---- what the approver sees -----------------------------------------------------------------------
def _md(text: Any) -> str:
    """Inline code in a Markdown table cell: no backticks or pipes from the value."""
    return "`" + str(text).replace("`", "'").replace("|", "\\|") + "`"


def approval_body(record: CanaryRecord, kfp_run: dict[str, Any] | None = None) -> str:
    """Markdown for the approval form: the canary's model, traffic, smoke result and the KFP run."""
    traffic = ", ".join(f"{_md(r)} {p} %" for r, p in record.traffic) or "no traffic targets"
    new = _md(record.target_uri) + (f" (revision {_md(record.new_revision)})" if record.new_revision else "")
    old = _md(record.previous_uri) + (f" (revision {_md(record.previous_revision)})" if record.previous_revision else "")
    smoke = {"passed": "passed", "skipped": "skipped (no smoke test configured)"}.get(record.smoke, record.smoke)
    if record.smoke_url:
        smoke += f" against {_md(record.smoke_url)}"
    rows = [
        ("New model", new),
        ("Previous model", old),
        ("Traffic", traffic),
        ("Smoke test", smoke),
    ]
    if kfp_run and kfp_run.get("run_id"):
        run_id = str(kfp_run["run_id"])
        url = str(kfp_run.get("url") or "")
        rows.append(("KFP run", f"[{run_id}]({url})" if url.startswith(("http://", "https://")) else _md(run_id)))
    if record.canary:
        what = (f"**Approve** gives {_md(record.new_revision or record.target_uri)} 100 % of the traffic; "
                "**Reject** (also the answer when nobody responds in time) restores the previous model.")
    else:
        what = (f"{record.mode} mode: the new model already serves alone (no canary). **Approve** keeps it; "
                "**Reject** (also the answer when nobody responds in time) restores the previous model.")
    lines = [
        f"### Canary of {_md(record.inference_service)} in {_md(record.namespace)} ({record.mode})",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        what,
    ]
    return "\n".join(lines)
