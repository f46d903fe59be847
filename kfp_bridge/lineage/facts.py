"""What the operators know about a task, as typed facts for the facets (pure, no OpenLineage import).

Each builder reads the operator's rendered arguments, what ``execute`` left on the operator (the
run id, the hook, the loaded spec, the rollout state) and, after the task, the remote object as the
hook reads it: the KFP run (``KfpHook.get_run``) or the InferenceService (``KServeHook.get_isvc``).
The task's XCom is not read: the OpenLineage listener runs in a fork of the task process, where
calls through the supervisor connection are not safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kfp_bridge.lineage.naming import api_server_authority


@dataclass(frozen=True)
class KfpRunFacts:
    """One KFP run as the training task saw it; None where it is not known (yet)."""

    pipeline: str | None  # the operator's ``pipeline`` argument (YAML path or module:function)
    experiment: str | None
    model_uri: str | None
    run_id: str | None = None
    run_url: str | None = None
    state: str | None = None
    experiment_id: str | None = None
    pipeline_name: str | None = None
    pipeline_version: str | None = None
    pipeline_version_id: str | None = None
    kfp_host: str | None = None
    steps: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrafficShare:
    revision: str
    percent: int
    tag: str = ""


@dataclass(frozen=True)
class KServeFacts:
    """One rollout (or promotion, or rollback) of an InferenceService."""

    action: str  # "rollout", "promote" or "rollback"
    model_uri: str | None  # the model the service serves when the task succeeds
    inference_service: str | None
    namespace: str | None
    cluster: str | None = None  # the Kubernetes API server's host:port
    mode: str | None = None
    url: str | None = None
    latest_ready: str | None = None
    previous_uri: str | None = None
    previous_revision: str | None = None
    new_revision: str | None = None
    canary: bool | None = None
    smoke: str | None = None
    traffic: tuple[TrafficShare, ...] = ()

    @property
    def revision(self) -> str | None:
        """The revision serving ``model_uri`` after the task: the one with all the traffic, else (a
        canary left for approval) the latest ready one, which is the canary."""
        full = [share.revision for share in self.traffic if share.percent == 100 and share.revision]
        return full[0] if len(full) == 1 else self.latest_ready


def kfp_run_facts(operator: Any, run: dict[str, Any] | None) -> KfpRunFacts:
    """Facts of a ``KfpRunOperator``; ``run`` is the KFP run as ``KfpHook.get_run`` returns it (None
    before ``execute``, or when it could not be read)."""
    run = run or {}
    settings = _cached(getattr(operator, "_hook", None), "settings")
    run_id = _text(run.get("run_id")) or _text(getattr(operator, "_run_id", None))
    reference = run.get("pipeline_version_reference") or {}
    name, version = _pipeline_names(getattr(operator, "_spec", None))
    if name is None:  # after a deferral: what the operator was handed back through the trigger
        name, version = getattr(operator, "_pipeline_names", None) or (None, None)
    return KfpRunFacts(
        pipeline=_text(getattr(operator, "pipeline", None)),
        experiment=_text(getattr(operator, "experiment", None)),
        model_uri=_text(getattr(operator, "model_uri", None)),
        run_id=run_id,
        run_url=settings.run_url(run_id) if run_id and settings is not None else None,
        state=_text(run.get("state")),
        experiment_id=_text(run.get("experiment_id")),
        pipeline_name=name,
        pipeline_version=version,
        pipeline_version_id=_text(reference.get("pipeline_version_id")) or _text(run.get("pipeline_version_id")),
        kfp_host=_text(getattr(settings, "host", None)),
        steps=_step_states(run, getattr(operator, "_spec", None)),
    )


def kserve_target(operator: Any) -> tuple[str | None, str | None]:
    """(name, namespace) of the InferenceService the task works on: the rollout state, the recorded
    canary (promote/rollback), else the rendered arguments (namespace None: the connection's)."""
    for source in (getattr(operator, "_rollout", None), getattr(operator, "_record", None)):
        name = _text(getattr(source, "name", None)) or _text(getattr(source, "inference_service", None))
        if name:
            return name, _text(getattr(source, "namespace", None))
    return _text(getattr(operator, "inference_service", None)), _text(getattr(operator, "namespace", None))


def kserve_facts(operator: Any, isvc: dict[str, Any] | None, *, namespace: str | None = None) -> KServeFacts:
    """Facts of a KServe rollout/promote/rollback operator; ``isvc`` is the InferenceService as
    ``KServeHook.get_isvc`` returns it after the task (None before ``execute``)."""
    from kfp_bridge.utils import kserve_status as ks

    rollout = getattr(operator, "_rollout", None) or getattr(operator, "_record", None)
    name, target_namespace = kserve_target(operator)
    status = ks.IsvcStatus.from_object(isvc) if isvc else None
    served = ks.storage_uri(((isvc or {}).get("spec") or {}).get("predictor") or {}) if isvc else None
    # The rollout's input is the model it was given; promote/rollback's the model served afterwards.
    model_uri = _text(getattr(operator, "storage_uri", None)) or _text(served) or _text(getattr(rollout, "target_uri", None))
    return KServeFacts(
        action=_text(getattr(operator, "action", None)) or "rollout",
        model_uri=model_uri,
        inference_service=(status.name if status else None) or name,
        namespace=(status.namespace if status else None) or target_namespace or namespace,
        cluster=_kube_cluster(getattr(operator, "_hook", None)),
        mode=status.mode if status else None,
        url=(status.url or None) if status else None,
        latest_ready=(status.latest_ready or None) if status else None,
        previous_uri=_text(getattr(rollout, "previous_uri", None)),
        previous_revision=_text(getattr(rollout, "previous_revision", None)),
        new_revision=_text(getattr(rollout, "new_revision", None)),
        canary=rollout.canary if isinstance(getattr(rollout, "canary", None), bool) else None,
        smoke=_text(getattr(rollout, "smoke", None)),
        traffic=tuple(TrafficShare(t.revision, t.percent, t.tag) for t in status.traffic) if status else (),
    )


def _pipeline_names(spec: Any) -> tuple[str | None, str | None]:
    """The pipeline's name and content-hash version from the spec ``execute`` loaded: the same
    functions name the uploaded version. (No spec after a deferral: see the caller's fallback.)"""
    if not isinstance(spec, dict):
        return None, None
    from kfp_bridge.utils.pipeline_specs import pipeline_name, version_name

    return _text(pipeline_name(spec)), version_name(spec)


def _step_states(run: dict[str, Any], spec: Any) -> dict[str, str]:
    """Step path -> state, as the operator's result has them (``RunStatus.step_states``)."""
    if not run.get("run_id"):
        return {}
    from kfp_bridge.utils.states import RunStatus

    return RunStatus.from_api(run, spec if isinstance(spec, dict) else None).step_states()


def _kube_cluster(hook: Any) -> str | None:
    """host:port of the API server the hook talked to; None when it built no client (never builds one:
    that would read the connection from inside the lineage listener)."""
    client = _cached(hook, "api_client")
    configuration = getattr(client, "configuration", None)
    return api_server_authority(getattr(configuration, "host", None))


def _cached(obj: Any, name: str) -> Any:
    """A ``cached_property`` value only if it was computed already."""
    return vars(obj).get(name) if obj is not None and hasattr(obj, "__dict__") else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
