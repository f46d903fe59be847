"""KServe status rules, as pure functions (contracts C.3–C.5).

Knative mode: :func:`desired_traffic` is what ``ksvc_reconciler.go`` asks Knative for,
:func:`resolve_traffic` is what Knative's route then reports, and :func:`bookkeeping` is
``InferenceServiceStatus.PropagateStatus``'s rolled-out-revision tracking, rule for rule.
:func:`knative_status` and :func:`standard_status` assemble a whole ``status`` from those pieces.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

KNATIVE = "Knative"
STANDARD = "Standard"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
_MODE_NAMES = {"serverless": KNATIVE, "knative": KNATIVE, "rawdeployment": STANDARD, "standard": STANDARD}

# knative.dev/pkg conditions: the living set (PredictorReady, IngressReady, Ready) has severity "",
# every other condition KServe manages is informational.
_HAPPY_SET = ("PredictorReady", "IngressReady", "Ready")


def deployment_mode(obj: dict[str, Any]) -> str:
    """Knative unless annotated Standard/RawDeployment: the stand-in plays a Serverless install."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(MODE_ANNOTATION, KNATIVE))
    return _MODE_NAMES.get(value.lower(), value)


def tag_routing(obj: dict[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(TAG_ROUTING_ANNOTATION, "")).lower() == "true"


@dataclass(frozen=True)
class Revision:
    """What the status rules need to know about one Knative revision."""

    name: str
    state: str  # "Loading" | "Ready" | "Failed"
    message: str = ""


# ---- traffic ---------------------------------------------------------------------------------
def desired_traffic(canary: int | None, latest_rolledout: str, tag: bool) -> list[dict[str, Any]]:
    """ksvc_reconciler.go: a canary split only once something has been rolled out; with tag routing
    the latest target carries the ``latest`` tag even when it is the single 100 % target."""
    if canary is not None and latest_rolledout:
        latest: dict[str, Any] = {"latestRevision": True, "percent": canary}
        if tag:
            latest["tag"] = "latest"
        targets = [latest]
        if canary < 100:
            targets.append(
                {
                    "tag": "prev",
                    "revisionName": latest_rolledout,
                    "latestRevision": False,
                    "percent": 100 - canary,
                }
            )
        return targets
    single: dict[str, Any] = {"latestRevision": True, "percent": 100}
    if tag:
        single["tag"] = "latest"
    return [single]


def resolve_traffic(
    desired: list[dict[str, Any]], latest_ready: str, tag_url: dict[str, str]
) -> list[dict[str, Any]]:
    """Knative route status: ``latestRevision`` targets name the latest *ready* revision; tags get a URL."""
    resolved = []
    for target in desired:
        entry = dict(target)
        if entry["latestRevision"]:
            entry["revisionName"] = latest_ready
        if entry.get("tag"):
            entry["url"] = tag_url[entry["tag"]]
        resolved.append(entry)
    return resolved


def bookkeeping(
    predictor: dict[str, Any], traffic: list[dict[str, Any]], latest_ready: str, latest_created: str
) -> tuple[str, str]:
    """PropagateStatus: returns (latestRolledoutRevision, previousRolledoutRevision)."""
    latest_rolledout = predictor.get("latestRolledoutRevision", "")
    previous_rolledout = predictor.get("previousRolledoutRevision", "")
    per_revision: dict[str, int] = {}
    for target in traffic:
        per_revision[target["revisionName"]] = per_revision.get(target["revisionName"], 0) + target["percent"]
    for target in traffic:
        if target["revisionName"] != latest_ready or not target["latestRevision"]:
            continue
        if latest_rolledout != latest_ready:
            if target["percent"] == 100:
                previous_rolledout, latest_rolledout = latest_rolledout, latest_ready
        elif latest_ready == latest_created and target["percent"] < 100:
            # Rolled out at 100% and then pinned back: traffic split over the same revision.
            if per_revision.get(target["revisionName"]) == 100 and previous_rolledout:
                latest_rolledout = previous_rolledout
    return latest_rolledout, previous_rolledout


# ---- conditions ------------------------------------------------------------------------------
def _condition(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    cond: dict[str, Any] = {"type": type_, "status": status}
    if type_ not in _HAPPY_SET:
        cond["severity"] = "Info"
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _aggregate(type_: str, parts: list[dict[str, Any]], reason_suffix: bool = False) -> dict[str, Any]:
    """Living-condition-set aggregation: False beats Unknown beats True."""
    for wanted in ("False", "Unknown"):
        for part in parts:
            if part["status"] == wanted:
                if reason_suffix:
                    return _condition(type_, wanted, f"{part['type']} not ready")
                return _condition(type_, wanted, part.get("reason", ""), part.get("message", ""))
    return _condition(type_, "True")


def stamp_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """Keep lastTransitionTime when a condition did not change; Knative sorts conditions by type."""
    previous = {c["type"]: c for c in old or []}
    stamped = []
    for cond in new:
        before = previous.get(cond["type"])
        same = before is not None and all(
            before.get(k) == cond.get(k) for k in ("status", "reason", "message")
        )
        stamped.append({**cond, "lastTransitionTime": before["lastTransitionTime"] if same else now})
    return sorted(stamped, key=lambda c: c["type"])


def _model_status(
    previous: dict[str, Any], target: str, failure: dict[str, Any] | None, serving: bool
) -> dict[str, Any]:
    """UpdateModelRevisionStates: target state drives transitionStatus; Loaded sets the active state."""
    status = copy.deepcopy(previous) if previous else {}
    states = status.setdefault("states", {})
    states["targetModelState"] = target
    status["transitionStatus"] = {
        "Pending": "InProgress",
        "Loading": "InProgress",
        "Loaded": "UpToDate",
        "FailedToLoad": "BlockedByFailedLoad",
    }[target]
    if target == "Loaded":
        states["activeModelState"] = "Loaded"
    states.setdefault("activeModelState", "")
    if failure is not None:
        status["lastFailureInfo"] = failure
    status["copies"] = {"failedCopies": 0, "totalCopies": 1 if serving else 0}
    return status


def _failure(message: str, revision: str = "") -> dict[str, Any]:
    info: dict[str, Any] = {"reason": "ModelLoadFailed", "message": message, "exitCode": 1}
    if revision:
        info["modelRevisionName"] = revision
    return info


# ---- whole status ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Urls:
    """Host names as KServe and Knative write them (``<isvc>.<ns>.<domain>``); the stand-in's
    ingress routes them by Host header, as the Istio/Kourier gateway does."""

    name: str
    namespace: str
    domain: str = "example.com"

    @property
    def base(self) -> str:
        return f"http://{self.name}.{self.namespace}.{self.domain}"

    @property
    def predictor(self) -> str:
        return f"http://{self.name}-predictor.{self.namespace}.{self.domain}"

    @property
    def address(self) -> str:
        return f"http://{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def predictor_address(self) -> str:
        return f"http://{self.name}-predictor.{self.namespace}.svc.cluster.local"

    def tag(self, tag: str) -> str:
        return f"http://{tag}-{self.name}-predictor.{self.namespace}.{self.domain}"

    @property
    def raw(self) -> str:
        """Standard mode: the ingress domainTemplate ``{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}``."""
        return f"http://{self.name}-{self.namespace}.{self.domain}"

    @property
    def raw_predictor(self) -> str:
        return f"http://{self.name}-predictor-{self.namespace}.{self.domain}"

    def hosts(self) -> dict[str, str | None]:
        """Every host name the ingress routes for this service -> its tag (None: the traffic split)."""
        names: dict[str, str | None] = {
            self.base: None, self.predictor: None, self.raw: None, self.raw_predictor: None,
            self.tag("latest"): "latest", self.tag("prev"): "prev",
        }
        return {url.removeprefix("http://"): tag for url, tag in names.items()}


@dataclass(frozen=True)
class InvalidSpec:
    """A spec the predictor reconciler rejects before touching the Knative Service / Deployment
    (``components/predictor.go``: NoSupportingRuntime, InvalidPredictorSpec, ...)."""

    reason: str
    message: str


def _invalid_model_status(previous: dict[str, Any], invalid: InvalidSpec) -> dict[str, Any]:
    """UpdateModelTransitionStatus(InvalidSpec, info): targetModelState FailedToLoad, failure info set."""
    status = copy.deepcopy(previous) if previous else {}
    status["transitionStatus"] = "InvalidSpec"
    status.setdefault("states", {})["targetModelState"] = "FailedToLoad"
    status["lastFailureInfo"] = {"reason": invalid.reason, "message": invalid.message}
    return status


def invalid_status(previous: dict[str, Any], invalid: InvalidSpec, now: str) -> dict[str, Any]:
    """The controller returns before the component writes anything: only modelStatus changes (and a
    brand-new service gets the initial Unknown conditions); observedGeneration, revisions, traffic
    and Ready stay as they were, which is why a client must read ``modelStatus`` to fail fast."""
    status = copy.deepcopy(previous) if previous else {}
    if not status.get("conditions"):
        status["conditions"] = stamp_conditions(
            [], [_condition(t, "Unknown") for t in ("IngressReady", "PredictorReady", "Ready")], now
        )
    status["modelStatus"] = _invalid_model_status(previous.get("modelStatus") or {}, invalid)
    return status


def knative_status(
    previous: dict[str, Any],
    *,
    generation: int,
    revisions: list[Revision],
    canary: int | None,
    tag: bool,
    urls: Urls,
    now: str,
) -> dict[str, Any]:
    """One reconcile of a Knative-mode InferenceService; call again until the result stops changing.

    ``generation`` is the Knative Service's ``status.observedGeneration`` (PropagateStatus copies it),
    not the InferenceService's own generation.
    """
    old_predictor = ((previous.get("components") or {}).get("predictor")) or {}
    predictor: dict[str, Any] = copy.deepcopy(old_predictor)
    latest_created = revisions[-1] if revisions else None
    ready = [r for r in revisions if r.state == "Ready"]
    latest_ready = ready[-1].name if ready else ""

    traffic: list[dict[str, Any]] = []
    if latest_ready:
        wanted = desired_traffic(canary, old_predictor.get("latestRolledoutRevision", ""), tag)
        traffic = resolve_traffic(
            wanted, latest_ready, {"latest": urls.tag("latest"), "prev": urls.tag("prev")}
        )
        rolled, prev = bookkeeping(
            old_predictor, traffic, latest_ready, latest_created.name if latest_created else ""
        )
        predictor["latestRolledoutRevision"], predictor["previousRolledoutRevision"] = rolled, prev
    predictor["latestCreatedRevision"] = latest_created.name if latest_created else ""
    predictor["latestReadyRevision"] = latest_ready
    if traffic:
        predictor["traffic"] = traffic
    predictor.setdefault("latestRolledoutRevision", "")
    predictor.setdefault("previousRolledoutRevision", "")

    # Knative Configuration / Route / Service readiness.
    if latest_created is None:
        config = _condition("PredictorConfigurationReady", "Unknown")
    elif latest_created.state == "Failed":
        config = _condition(
            "PredictorConfigurationReady",
            "False",
            "RevisionFailed",
            f'Revision "{latest_created.name}" failed with message: {latest_created.message}.',
        )
    elif latest_created.state == "Loading":
        config = _condition("PredictorConfigurationReady", "Unknown")
    else:
        config = _condition("PredictorConfigurationReady", "True")
    if latest_ready:
        route = _condition("PredictorRouteReady", "True")
    elif latest_created is not None and latest_created.state == "Failed":
        route = _condition(
            "PredictorRouteReady",
            "False",
            "RevisionMissing",
            f'Configuration "{latest_created.name.rsplit("-", 1)[0]}" does not have any ready Revision.',
        )
    else:
        name = latest_created.name.rsplit("-", 1)[0] if latest_created else ""
        route = _condition(
            "PredictorRouteReady",
            "Unknown",
            "RevisionMissing",
            f'Configuration "{name}" is waiting for a Revision to become ready.',
        )
    ksvc_ready = _aggregate("PredictorReady", [config, route])
    if ksvc_ready["status"] == "True":
        predictor["url"] = urls.predictor
        predictor["address"] = {"url": urls.predictor_address}
    ingress = (
        _condition("IngressReady", "True")
        if latest_ready
        else _condition(
            "IngressReady", "False", "PredictorIngressNotCreated", "Ingress has not been created yet"
        )
    )
    conditions = [
        config,
        route,
        ksvc_ready,
        _aggregate("RoutesReady", [route], reason_suffix=True),
        _aggregate("LatestDeploymentReady", [config], reason_suffix=True),
        ingress,
        _aggregate("Ready", [ksvc_ready, ingress]),
        _condition("Stopped", "False"),
    ]

    if latest_created is None:
        model = _model_status(previous.get("modelStatus") or {}, "Pending", None, False)
    elif latest_created.state == "Failed":
        model = _model_status(
            previous.get("modelStatus") or {},
            "FailedToLoad",
            _failure(latest_created.message, latest_created.name),
            bool(latest_ready),
        )
    elif latest_created.state == "Loading":
        model = _model_status(previous.get("modelStatus") or {}, "Loading", None, bool(latest_ready))
    else:
        model = _model_status(previous.get("modelStatus") or {}, "Loaded", None, True)

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": stamp_conditions(previous.get("conditions") or [], conditions, now),
        "components": {"predictor": predictor},
        "modelStatus": model,
        "deploymentMode": KNATIVE,
    }
    if latest_ready or previous.get("url"):
        status["url"] = urls.base
        status["address"] = {"url": urls.address}
    return status


def _raw_predictor_ready(deployment: dict[str, Any]) -> dict[str, Any]:
    """PropagateRawStatus, rule for rule, for one Deployment."""
    conds = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}
    available, progressing = conds.get("Available"), conds.get("Progressing")

    def of(c: dict[str, Any], status: str | None = None) -> dict[str, Any]:
        return _condition("PredictorReady", status or c["status"], c.get("reason", ""), c.get("message", ""))

    ready = _condition("PredictorReady", "False")
    if available is not None and available["status"] == "True":
        ready = of(available)
    if progressing is not None:
        if progressing["status"] == "False":
            if progressing.get("message"):
                ready = of(progressing)
        elif progressing["status"] == "True":
            if progressing.get("reason") == "NewReplicaSetAvailable":
                ready = of(progressing)
            elif available is None or available["status"] != "True":
                ready = of(progressing, "Unknown")
    if available is not None and available["status"] == "False":
        ready = of(available)
    return ready


def standard_status(
    previous: dict[str, Any],
    *,
    deployment: dict[str, Any] | None,
    failure: str,
    urls: Urls,
    now: str,
) -> dict[str, Any]:
    """Standard (RawDeployment) mode: status from the predictor Deployment (PropagateRawStatus).

    During a rolling update the old pod keeps ``Available=True``, so PredictorReady and Ready stay
    True while the new pod starts or crash-loops (kserve issue #4626); only
    ``ProgressDeadlineExceeded`` turns them False. ``observedGeneration`` is the Deployment's.
    ``failure`` is the new pod's last crash message ("" when none).
    """
    if deployment is None:
        predictor_ready = _condition("PredictorReady", "Unknown")
    else:
        predictor_ready = _raw_predictor_ready(deployment)
    serving = predictor_ready["status"] == "True"
    ingress = _condition("IngressReady", "True") if deployment is not None else _condition("IngressReady", "Unknown")
    conditions = [
        predictor_ready,
        ingress,
        _aggregate("Ready", [predictor_ready, ingress]),
        _condition("Stopped", "False"),
    ]
    dstatus = (deployment or {}).get("status") or {}
    done = (
        dstatus.get("updatedReplicas", 0) == dstatus.get("replicas", 0) == dstatus.get("availableReplicas", 0) > 0
    )
    if failure:
        model = _model_status(previous.get("modelStatus") or {}, "FailedToLoad", _failure(failure), serving)
    elif done:
        model = _model_status(previous.get("modelStatus") or {}, "Loaded", None, True)
    else:
        model = _model_status(previous.get("modelStatus") or {}, "Loading", None, serving)
    old_predictor = ((previous.get("components") or {}).get("predictor")) or {}
    predictor = copy.deepcopy(old_predictor)
    if serving:
        predictor["url"] = urls.raw_predictor
    status: dict[str, Any] = {
        "conditions": stamp_conditions(previous.get("conditions") or [], conditions, now),
        "components": {"predictor": predictor},
        "modelStatus": model,
        "deploymentMode": STANDARD,
    }
    if deployment is not None:
        status["observedGeneration"] = dstatus.get("observedGeneration", 0)
    if serving or previous.get("url"):
        status["url"] = urls.raw
        status["address"] = {"url": urls.address}
    return status
