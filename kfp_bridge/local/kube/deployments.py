"""Standard-mode predictor ``apps/v1`` Deployments, ReplicaSet-less, as pure functions.

The Deployment controller's status arithmetic (kubernetes ``pkg/controller/deployment/sync.go``
``calculateStatus``, ``progress.go`` ``syncRolloutStatus``; ``deploymentutil`` condition reasons) for
one replica with the default RollingUpdate strategy (maxSurge 25 % -> 1, maxUnavailable 25 % -> 0):
the old pod keeps serving until the new one is Ready, and a new pod that never becomes Ready ends
in ``Progressing=False/ProgressDeadlineExceeded`` after ``progressDeadlineSeconds``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

DEFAULT_PROGRESS_DEADLINE_S = 600
POD_TEMPLATE_HASH = "pod-template-hash"


@dataclass(frozen=True)
class Pod:
    """One predictor pod of one generation of the pod template.

    :param phase: ``Pending`` (scheduled, loading), ``Running``.
    :param ready: the readiness probe passes.
    :param restarts: container restarts so far (a model server that exits).
    :param waiting: the container's waiting reason (``CrashLoopBackOff``) or "".
    """

    name: str
    template_hash: str
    ready: bool
    restarts: int = 0
    waiting: str = ""
    message: str = ""
    started: str = ""


def template_hash(template: dict[str, Any]) -> str:
    """A stable ``pod-template-hash`` label value (Kubernetes uses an FNV hash, safe-encoded)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # rand.SafeEncodeString's alphabet
    return "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


def labels(isvc: str) -> dict[str, str]:
    """Labels KServe's raw reconciler puts on the predictor Deployment and its pods."""
    return {
        "app": f"isvc.{isvc}-predictor",
        "component": "predictor",
        "serving.kserve.io/inferenceservice": isvc,
    }


def _condition(type_: str, status: str, reason: str, message: str, now: str, previous: dict[str, Any] | None):
    if previous is not None and (previous.get("status"), previous.get("reason"), previous.get("message")) == (
        status, reason, message
    ):
        return previous  # nothing happened: no new timestamps (and no watch event)
    cond = {"type": type_, "status": status, "reason": reason, "message": message, "lastUpdateTime": now}
    same = previous is not None and previous.get("status") == status
    cond["lastTransitionTime"] = previous["lastTransitionTime"] if same and previous else now
    return cond


def deployment(
    *,
    isvc: str,
    namespace: str,
    uid: str,
    generation: int,
    new_hash: str,
    pods: list[Pod],
    previous: dict[str, Any] | None,
    now: str,
    now_s: float,
    progress_deadline_s: int = DEFAULT_PROGRESS_DEADLINE_S,
    progress_since_s: float,
) -> dict[str, Any]:
    """The Deployment ``<isvc>-predictor`` as the API serves it (status as the controller writes it).

    ``progress_since_s`` is when the rollout last made progress (new RS created or a pod became
    ready): the deadline counts from there, as ``progress.go`` counts from the Progressing
    condition's lastUpdateTime.
    """
    name = f"{isvc}-predictor"
    old_prev = (previous or {}).get("status", {}).get("conditions") or []
    prev = {c["type"]: c for c in old_prev}
    new = [p for p in pods if p.template_hash == new_hash]
    ready = [p for p in pods if p.ready]
    replicas = 1
    total = len(pods)
    available = len(ready)
    rs_name = f"{name}-{new_hash}"
    complete = len(new) == replicas and all(p.ready for p in new) and total == replicas
    if available >= replicas:  # maxUnavailable is 0 for one replica
        avail = _condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now, prev.get("Available"))
    else:
        avail = _condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", now, prev.get("Available"))
    before = prev.get("Progressing")
    if complete:
        progressing = _condition("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.', now, before)
    elif before is not None and before.get("reason") == "ProgressDeadlineExceeded" and before.get("message", "").find(rs_name) >= 0:
        progressing = before  # stays failed until the template changes or the rollout completes
    elif now_s - progress_since_s > progress_deadline_s:
        progressing = _condition("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.', now, before)
    elif before is None or rs_name not in before.get("message", ""):
        progressing = _condition("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"', now, before)
    else:
        progressing = _condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', now, before)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": total,
        "updatedReplicas": len(new),
        "readyReplicas": len(ready),
        "availableReplicas": available,
        "conditions": [avail, progressing],
    }
    if total - available > 0:
        status["unavailableReplicas"] = total - available
    for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
        if status[key] == 0:
            del status[key]  # omitempty, as the apiserver serialises int32 zeros
    meta_prev = (previous or {}).get("metadata") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": meta_prev.get("uid") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{uid}/deployment")),
            "creationTimestamp": meta_prev.get("creationTimestamp") or now,
            "generation": generation,
            "labels": labels(isvc),
            "annotations": {"deployment.kubernetes.io/revision": str(generation)},
            "ownerReferences": [
                {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceService",
                    "name": isvc,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": f"isvc.{isvc}-predictor"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": progress_deadline_s,
            "template": {
                "metadata": {"labels": labels(isvc)},
                "spec": {"containers": [{"name": "kserve-container", "image": "kserve/sklearnserver"}]},
            },
        },
        "status": status,
    }


def pod_object(isvc: str, namespace: str, pod: Pod, now: str) -> dict[str, Any]:
    """A core/v1 Pod of the predictor, with the container state ``kubectl get pods`` shows."""
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": "kserve/sklearnserver",
        "imageID": "docker.io/kserve/sklearnserver@sha256:" + "0" * 64,
        "ready": pod.ready,
        "restartCount": pod.restarts,
        "started": pod.ready,
    }
    if pod.waiting:
        container["state"] = {"waiting": {"reason": pod.waiting, "message": pod.message}}
        container["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "message": pod.message}}
    else:
        container["state"] = {"running": {"startedAt": pod.started or now}}
    ready = "True" if pod.ready else "False"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{pod.name}")),
            "creationTimestamp": pod.started or now,
            "labels": {**labels(isvc), POD_TEMPLATE_HASH: pod.template_hash},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{isvc}-predictor-{pod.template_hash}",
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{isvc}-predictor-{pod.template_hash}")),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"containers": [{"name": "kserve-container", "image": "kserve/sklearnserver"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": ready},
                {"type": "ContainersReady", "status": ready},
            ],
            "containerStatuses": [container],
        },
    }
