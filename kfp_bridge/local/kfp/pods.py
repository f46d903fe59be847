"""Executor and driver "pods" of a run, written where the Kubernetes stand-in serves them from.

Contract with ``kfp_bridge.local.kube``: ``<state-dir>/pods/<namespace>/<pod>.json`` is a core/v1
Pod and ``<pod>.main.log`` its ``main`` container log (a symlink to the step's live log, so a
``pods/log`` read sees it grow while the step runs).

Names, labels and annotations as Argo v4.0.5 and KFP 2.17.0 set them: pod name
``<workflow>-<template>-<fnv32a(node name)>`` (argo ``workflow/util/pod_name.go``), labels
``workflows.argoproj.io/workflow`` / ``completed`` and annotations ``workflows.argoproj.io/node-id``
/ ``node-name`` (argo ``workflow/controller/workflowpod.go``), ``pipeline/runid`` and
``pipelines.kubeflow.org/v2_component`` from the workflow's podMetadata (KFP
``apiserver/template/v2_template.go``, ``v2/compiler/argocompiler/argo.go``). Single-user KFP runs
in the API server's own namespace, ``kubeflow`` by default (``common.GetPodNamespace``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kfp_bridge.local.kfp.wire import rfc3339

DEFAULT_NAMESPACE = "kubeflow"
_POD_PHASE = {"Pending": "Pending", "Running": "Running", "Succeeded": "Succeeded", "Failed": "Failed",
              "Error": "Failed"}
_DRIVER_IMAGE = "ghcr.io/kubeflow/kfp-driver:2.17.0"
_WAIT_IMAGE = "quay.io/argoproj/argoexec:v4.0.5"


def step_log_name(path: str) -> str:
    """File name of a step's log inside ``<run dir>/logs/attempt-N/`` (child.py writes it)."""
    return path.replace("/", "__") + ".log"


def namespace_of(doc: dict[str, Any]) -> str:
    return doc.get("namespace") or DEFAULT_NAMESPACE


def pod_object(doc: dict[str, Any], node: dict[str, Any], namespace: str) -> dict[str, Any]:
    phase = _POD_PHASE.get(node["phase"], "Pending")
    wf = doc["_workflow"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": node["pod_name"],
            "namespace": namespace,
            "creationTimestamp": rfc3339(node["started"] or doc.get("created_at")),
            "labels": {
                "pipeline/runid": doc["run_id"],
                "pipelines.kubeflow.org/v2_component": "true",
                "workflows.argoproj.io/workflow": wf,
                "workflows.argoproj.io/completed": "true" if phase in ("Succeeded", "Failed") else "false",
            },
            "annotations": {
                "pipelines.kubeflow.org/v2_component": "true",
                "workflows.argoproj.io/node-id": node["id"],
                "workflows.argoproj.io/node-name": node["name"],
                "kubectl.kubernetes.io/default-container": "main",
            },
        },
        "spec": {
            "serviceAccountName": doc.get("service_account") or "pipeline-runner",
            "restartPolicy": "Never",
            "containers": [
                {"name": "wait", "image": _WAIT_IMAGE},
                {"name": "main", "image": node.get("image") or _DRIVER_IMAGE},
            ],
        },
        "status": {"phase": phase},
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class PodWriter:
    """Writes pod files for a run's Pod nodes, skipping the ones that did not change.

    :param pods_dir: ``<state-dir>/pods``.
    """

    def __init__(self, pods_dir: Path) -> None:
        self._dir = pods_dir
        self._written: dict[Path, str] = {}

    def write(self, doc: dict[str, Any], nodes: list[dict[str, Any]], run_dir: Path) -> None:
        namespace = namespace_of(doc)
        folder = self._dir / namespace
        steps = doc.get("_steps") or {}
        for node in nodes:
            if node["type"] != "Pod":
                continue
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{node['pod_name']}.json"
            text = json.dumps(pod_object(doc, node, namespace), sort_keys=True)
            if self._written.get(target) == text:
                continue
            _write_atomic(target, text)
            self._written[target] = text
            log = folder / f"{node['pod_name']}.main.log"
            path = node.get("path")
            if path and path in steps:
                # The executor's main container output is the component's own output (child.py).
                source = run_dir / "logs" / f"attempt-{steps[path].get('attempt', 1)}" / step_log_name(path)
                if not (log.is_symlink() and Path(os.readlink(log)) == source):
                    tmp = log.with_name(log.name + ".tmp")
                    tmp.unlink(missing_ok=True)
                    tmp.symlink_to(source)
                    os.replace(tmp, log)
            elif not log.exists():
                _write_atomic(log, f"{node['display_name']}: driver for {node['name']}\n")

    def prune(self, live_run_ids: set[str]) -> None:
        """Delete pods of runs that no longer exist (deleted while the server was down, or before
        the service told the executor)."""
        for path in self._dir.glob("*/*.json"):
            try:
                run_id = json.loads(path.read_text())["metadata"]["labels"]["pipeline/runid"]
            except (OSError, ValueError, KeyError):
                continue
            if run_id not in live_run_ids:
                path.unlink(missing_ok=True)
                path.with_name(path.name[: -len(".json")] + ".main.log").unlink(missing_ok=True)

    def remove_run(self, doc: dict[str, Any]) -> None:
        """Delete a run's pods (the run was deleted; Argo garbage-collects its pods with the workflow)."""
        folder = self._dir / namespace_of(doc)
        if not folder.is_dir():
            return
        for path in folder.glob("*.json"):
            try:
                labels = json.loads(path.read_text())["metadata"]["labels"]
            except (OSError, ValueError, KeyError):
                continue
            if labels.get("pipeline/runid") == doc.get("run_id"):
                path.unlink(missing_ok=True)
                path.with_name(path.name[: -len(".json")] + ".main.log").unlink(missing_ok=True)
                self._written.pop(path, None)
