"""InferenceService and predictor Deployment status as small typed models with pure predicates.

KServe can report ``Ready`` while the new revision is broken or not serving, and its
``observedGeneration`` is the Knative Service's or the Deployment's counter, not the
InferenceService's (fidelity S1; kserve ``pkg/apis/serving/v1beta1/inference_service_status.go``,
``PropagateStatus`` / ``PropagateRawStatus``). So the rollout never trusts ``Ready`` or
``observedGeneration``: Knative mode reads the revision fields and the traffic list, Standard mode
the predictor Deployment as ``kubectl rollout status`` does (S2). The wait conditions that use these
live in :mod:`kfp_bridge.utils.rollout`.
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
# Reasons KServe gives when it rejects the spec before creating a revision or touching the Deployment.
SPEC_FAILURE_REASONS = frozenset(
    {"InvalidSpec", "InvalidPredictorSpec", "NoSupportingRuntime", "RuntimeNotRecognized", "RuntimeDisabled"}
)
# A new pod's container waiting for one of these will not become ready without a new spec.
POD_FAILURE_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


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

    def spec_failure(self) -> str | None:
        """Why KServe refuses the spec itself (no revision/Deployment change will come), else None.

        KServe stops reconciling before creating anything and says so in ``modelStatus``
        (``transitionStatus: InvalidSpec``, ``components/predictor.go``) or in ``PredictorReady``.
        """
        if self.transition_status == "InvalidSpec":
            reason = self.failure.get("reason") or "InvalidSpec"
            return f"{reason}: {self.failure.get('message') or 'KServe rejected the predictor spec'}"
        status, reason, message = self.conditions.get("PredictorReady", ("", "", ""))
        if status == "False" and reason in SPEC_FAILURE_REASONS:
            return f"PredictorReady is False ({reason}): {message}"
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


# ---- Standard mode: the predictor Deployment and its pods ---------------------------------------
def predictor_deployment(isvc_name: str) -> str:
    """The predictor Deployment's name (kserve ``constants.PredictorServiceName``)."""
    return f"{isvc_name}-predictor"


@dataclass(frozen=True)
class DeploymentStatus:
    """What ``kubectl rollout status`` reads from an apps/v1 Deployment."""

    name: str
    generation: int
    observed_generation: int
    spec_replicas: int
    replicas: int
    updated_replicas: int
    available_replicas: int
    progressing_reason: str
    progressing_message: str
    selector: dict[str, str]

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> DeploymentStatus:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        progressing = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
        )
        replicas = spec.get("replicas")
        return cls(
            name=str(meta.get("name", "")),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            spec_replicas=1 if replicas is None else int(replicas),  # apps/v1 defaults to 1
            replicas=int(status.get("replicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            progressing_reason=str(progressing.get("reason") or ""),
            progressing_message=str(progressing.get("message") or ""),
            selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
        )

    def rollout_state(self) -> tuple[bool, str | None, str]:
        """(done, failure, message) exactly as ``kubectl rollout status`` decides a Deployment
        (kubectl ``pkg/polymorphichelpers/rollout_status.go``, ``DeploymentStatusViewer``)."""
        if self.generation > self.observed_generation:
            return False, None, "waiting for the deployment spec update to be observed"
        if self.progressing_reason == PROGRESS_DEADLINE_EXCEEDED:
            return False, f"deployment {self.name!r} exceeded its progress deadline: {self.progressing_message}", ""
        if self.updated_replicas < self.spec_replicas:
            return False, None, f"{self.updated_replicas} of {self.spec_replicas} new replicas updated"
        if self.replicas > self.updated_replicas:
            return False, None, f"{self.replicas - self.updated_replicas} old replicas pending termination"
        if self.available_replicas < self.updated_replicas:
            return False, None, f"{self.available_replicas} of {self.updated_replicas} updated replicas available"
        return True, None, f"deployment {self.name!r} successfully rolled out"

    def label_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))


def pod_key(pod: dict[str, Any]) -> str:
    """What tells one ReplicaSet's pods from another's: ``pod-template-hash`` (set by the Deployment
    controller), else the pod's name."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return str(labels.get("pod-template-hash") or meta.get("name") or "")


def failing_pod(pods: list[dict[str, Any]], old_keys: frozenset[str] | set[str]) -> str | None:
    """Why a pod not among ``old_keys`` (see :func:`pod_key`) cannot start, e.g. a crash loop; else None."""
    for pod in pods:
        if pod_key(pod) in old_keys:
            continue
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in POD_FAILURE_REASONS:
                name = (pod.get("metadata") or {}).get("name", "?")
                last = ((cs.get("lastState") or {}).get("terminated") or {})
                detail = last.get("message") or last.get("reason") or waiting.get("message") or ""
                restarts = cs.get("restartCount", 0)
                return (
                    f"new pod {name} container {cs.get('name')!r} is in {waiting['reason']} "
                    f"({restarts} restarts){': ' + str(detail)[:300] if detail else ''}"
                )
    return None
