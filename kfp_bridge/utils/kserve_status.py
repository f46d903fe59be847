"""InferenceService status as a small typed model with pure predicates (contracts C.3–C.5).

KServe can report ``Ready`` while the new revision is broken or not serving, so the rollout never
trusts ``Ready`` alone: it checks ``observedGeneration``, ``latestReadyRevision`` and the traffic
list. :func:`evaluate` decides one wait condition (a JSON dict, so a trigger can carry it) against
one status; the operator and the trigger share it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

KNATIVE = "Knative"
STANDARD = "Standard"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
_MODE_NAMES = {"serverless": KNATIVE, "knative": KNATIVE, "rawdeployment": STANDARD, "standard": STANDARD}
STORAGE_SCHEMES = ("file", "s3", "gs", "pvc", "https")


@dataclass(frozen=True)
class TrafficTarget:
    revision: str
    percent: int
    latest: bool
    tag: str = ""
    url: str = ""


@dataclass(frozen=True)
class IsvcStatus:
    """What the rollout needs from one InferenceService object."""

    name: str
    namespace: str
    generation: int
    observed_generation: int
    resource_version: str
    mode: str
    url: str
    latest_created: str
    latest_ready: str
    latest_rolledout: str
    previous_rolledout: str
    traffic: tuple[TrafficTarget, ...]
    conditions: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # type -> (status, reason, message)
    transition_status: str = ""
    failure: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> IsvcStatus:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        model = status.get("modelStatus") or {}
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            resource_version=str(meta.get("resourceVersion", "")),
            mode=deployment_mode(obj),
            url=str(status.get("url") or ""),
            latest_created=str(predictor.get("latestCreatedRevision") or ""),
            latest_ready=str(predictor.get("latestReadyRevision") or ""),
            latest_rolledout=str(predictor.get("latestRolledoutRevision") or ""),
            previous_rolledout=str(predictor.get("previousRolledoutRevision") or ""),
            traffic=tuple(
                TrafficTarget(
                    str(t.get("revisionName") or ""),
                    int(t.get("percent") or 0),
                    bool(t.get("latestRevision")),
                    str(t.get("tag") or ""),
                    str(t.get("url") or ""),
                )
                for t in predictor.get("traffic") or []
            ),
            conditions={
                str(c.get("type")): (str(c.get("status", "")), str(c.get("reason") or ""), str(c.get("message") or ""))
                for c in status.get("conditions") or []
            },
            transition_status=str(model.get("transitionStatus") or ""),
            failure=dict(model.get("lastFailureInfo") or {}),
        )

    # ---- predicates -----------------------------------------------------------------------
    @property
    def generation_observed(self) -> bool:
        return self.generation > 0 and self.observed_generation >= self.generation

    def condition(self, type_: str) -> str:
        return self.conditions.get(type_, ("", "", ""))[0]

    @property
    def is_ready(self) -> bool:
        return self.condition("Ready") == "True"

    def revision_ready(self, revision: str) -> bool:
        """Knative: ``revision`` is the latest created one and became ready."""
        return bool(revision) and self.latest_ready == revision and self.latest_created == revision

    def share(self, revision: str) -> int:
        """Percent of traffic routed to ``revision`` (a revision can appear in two targets)."""
        return sum(t.percent for t in self.traffic if t.revision == revision)

    def sole_revision(self) -> str | None:
        """The revision taking 100% of traffic, or None when traffic is split (or unknown)."""
        serving = {t.revision for t in self.traffic if t.percent > 0}
        if len(serving) == 1:
            (revision,) = serving
            return revision if self.share(revision) == 100 else None
        return None

    def tag_url(self, tag: str) -> str:
        for target in self.traffic:
            if target.tag == tag and target.url:
                return target.url
        return ""

    def traffic_summary(self) -> str:
        if not self.traffic:
            return "no traffic targets"
        return ", ".join(
            f"{t.revision or '?'}={t.percent}%" + (f" [{t.tag}]" if t.tag else "") for t in self.traffic
        )

    def failure_reason(self, revision: str = "") -> str | None:
        """Why the newest revision (``revision`` when given) cannot serve; None if nothing failed.

        Prefers the model-load error text KServe puts in ``modelStatus.lastFailureInfo``.
        """
        if self.transition_status == "BlockedByFailedLoad" and self.failure:
            failed_rev = str(self.failure.get("modelRevisionName") or "")
            if not revision or not failed_rev or failed_rev == revision:
                reason = self.failure.get("reason") or "ModelLoadFailed"
                return f"{reason}: {self.failure.get('message') or 'the model failed to load'}"
        for type_ in ("PredictorConfigurationReady", "PredictorReady"):
            status, reason, message = self.conditions.get(type_, ("", "", ""))
            if status == "False" and reason not in ("", "MinimumReplicasUnavailable"):
                return f"{type_} is False ({reason}): {message}"
        return None

    def progress_key(self) -> tuple[Any, ...]:
        return (self.observed_generation, self.generation, self.latest_created, self.latest_ready,
                self.traffic, self.transition_status, self.condition("Ready"))

    def progress_line(self) -> str:
        return (
            f"{self.namespace}/{self.name}: generation {self.observed_generation}/{self.generation} observed, "
            f"Ready={self.condition('Ready') or 'Unknown'}, latestCreated={self.latest_created or '-'}, "
            f"latestReady={self.latest_ready or '-'}, model={self.transition_status or '-'}, "
            f"traffic: {self.traffic_summary()}"
        )


def deployment_mode(obj: dict[str, Any]) -> str:
    """Annotation first, then ``status.deploymentMode``; a status with revisions is Knative.

    Without any signal assume Standard (KServe's default since v0.16), which never claims a canary.
    """
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(MODE_ANNOTATION) or (obj.get("status") or {}).get("deploymentMode")
    if value:
        return _MODE_NAMES.get(str(value).lower(), str(value))
    predictor = (((obj.get("status") or {}).get("components")) or {}).get("predictor") or {}
    if predictor.get("traffic") or predictor.get("latestCreatedRevision"):
        return KNATIVE
    return STANDARD


# ---- spec helpers ---------------------------------------------------------------------------
def storage_field(predictor: dict[str, Any]) -> str:
    """Which predictor key holds ``storageUri``: ``model`` (current) or the older ``sklearn``."""
    if isinstance(predictor.get("model"), dict):
        return "model"
    for key, value in predictor.items():
        if isinstance(value, dict) and "storageUri" in value:
            return key
    return "model"


def storage_uri(predictor: dict[str, Any]) -> str:
    return str((predictor.get(storage_field(predictor)) or {}).get("storageUri") or "")


def validate_storage_uri(uri: Any) -> str:
    """Return ``uri`` if it is a storage URI KServe can load; raise ValueError naming the fix."""
    hint = (
        "use file:///abs/path, /abs/path, s3://bucket/path, gs://bucket/path, pvc://claim/path "
        "or https://host/path"
    )
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"storage_uri must be a non-empty string, got {uri!r}; {hint}")
    if uri != uri.strip() or any(c in uri for c in "\n\r\t "):
        raise ValueError(f"storage_uri {uri!r} contains whitespace; {hint}")
    if uri.startswith("/"):
        return uri
    parsed = urlparse(uri)
    if parsed.scheme not in STORAGE_SCHEMES:
        raise ValueError(f"storage_uri {uri!r} has an unsupported scheme {parsed.scheme!r}; {hint}")
    if parsed.scheme == "file":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise ValueError(f"storage_uri {uri!r} must name an absolute path (file:///abs/path)")
    elif not parsed.netloc:
        raise ValueError(f"storage_uri {uri!r} names no bucket/claim/host; {hint}")
    return uri


def merge_patch_to(current: Any, target: Any) -> Any:
    """The RFC 7386 merge patch turning ``current`` into ``target`` (explicit None removes keys)."""
    if not isinstance(current, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, Any] = {}
    for key in current.keys() - target.keys():
        patch[key] = None
    for key, value in target.items():
        if key not in current:
            patch[key] = copy.deepcopy(value)
        elif current[key] != value:
            patch[key] = merge_patch_to(current[key], value)
    return patch


# ---- wait conditions --------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    done: bool = False
    failure: str | None = None

    @property
    def final(self) -> bool:
        return self.done or self.failure is not None


def evaluate(condition: dict[str, Any], st: IsvcStatus) -> Verdict:
    """Decide one wait ``condition`` against ``st``.

    Kinds (all carry ``generation``: the spec generation the patch produced):
      ``canary``   new revision (not ``previous``) ready and holding exactly ``percent``
      ``sole``     the newest ready revision holds 100% (``previous`` must not be it unless ``allow_previous``)
      ``pinned``   ``previous`` holds 100% (rollback step 1)
      ``standard`` Standard mode: generation observed, model UpToDate, Ready
    """
    kind = condition["kind"]
    generation = int(condition.get("generation") or 0)
    previous = str(condition.get("previous") or "")
    if st.observed_generation < generation:
        return Verdict()
    if kind == "standard":
        if st.transition_status == "BlockedByFailedLoad":
            return Verdict(failure=st.failure_reason() or "the model failed to load")
        return Verdict(done=st.transition_status in ("UpToDate", "") and st.is_ready)
    if kind == "pinned":
        return Verdict(done=st.share(previous) == 100)
    new = st.latest_created
    if new and new != previous and st.latest_ready != new:
        failure = st.failure_reason(new)
        if failure is not None:
            return Verdict(failure=failure)
        return Verdict()
    if kind == "canary":
        percent = int(condition["percent"])
        ok = (
            new != previous
            and st.revision_ready(new)
            and st.share(new) == percent
            and (percent == 100 or st.share(previous) == 100 - percent)
        )
        return Verdict(done=ok)
    if kind == "sole":
        if new == previous and not condition.get("allow_previous"):
            return Verdict()
        return Verdict(done=st.revision_ready(new) and st.sole_revision() == new)
    raise ValueError(f"unknown wait condition kind {kind!r}")
