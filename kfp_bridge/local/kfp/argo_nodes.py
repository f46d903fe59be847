"""Argo workflow nodes of a run, named and nested as KFP 2.17's v2 Argo compiler and Argo v4 make them.

Pure functions: from the compiled PipelineSpec and the steps kfp.local reported (keyed by their
kfp.local path, e.g. ``for-loop-2/for-loop-2-iteration-0/print-op``) build the node list Argo would
hold, then upsert it into the run's ``task_details`` as the API server's persistence path does.

Upstream sources this follows (kubeflow/pipelines tag 2.17.0, argoproj/argo-workflows v4.0.5):
- ``backend/src/v2/compiler/argocompiler/dag.go``: per task ``<task>-driver`` then ``<task>``; root
  ``root-driver`` + ``root`` under the ``entrypoint`` DAG; ParallelFor as ``<task>`` (iterator DAG)
  holding ``iteration-driver`` and ``iteration-iterations`` (withSequence), each iteration running
  ``iteration-item-driver`` + ``iteration-item``; exit tasks as ``exit-hook-<dag>-<task>`` hooks.
- ``container.go``: ``<task>`` is a ``system-container-executor`` DAG holding one ``executor`` pod
  (``system-container-impl``), skipped (``when cached-decision != true``) on a cache hit.
- Argo ``workflow_types.go`` ``NodeID`` (``<wf>-<fnv32a(node name)>``), ``controller/dag.go``
  (children = dependents of the outbound nodes; expanded names ``task(i:item)``),
  ``controller/exit_handler.go`` (``<node>.onExit``), ``util/pod_name.go`` (pod names v2).
- ``backend/src/common/util/workflow.go`` ``NodeStatuses``/``RetrievePodName`` and
  ``apiserver/server/api_converter.go`` ``toModelTasks``/``toApiPipelineTaskDetail``: one task per
  node, ``create_time`` = the workflow's creation, state = phase ``ToV2`` (Error -> FAILED, Omitted ->
  unspecified), ``child_tasks`` = child node ids, no ``error``/``pod_name``/``parent_task_id``;
  ``apiserver/storage/task_store.go`` ``CreateOrUpdateTasks``: rows are upserted by pod name and
  never deleted, a random task id each, an unspecified state keeps the stored one.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

# Argo node phase -> v2 RuntimeState (apiserver/model/run.go RuntimeState.ToV2).
PHASE_TO_STATE = {
    "Pending": "PENDING", "Running": "RUNNING", "Succeeded": "SUCCEEDED", "Skipped": "SKIPPED",
    "Failed": "FAILED", "Error": "FAILED", "Omitted": "RUNTIME_STATE_UNSPECIFIED",
}
# RETRYING: a step that failed before a retry and has not started again. GenerateRetryExecution
# (common/util/workflow.go) sets failed DAG nodes back to Running and deletes failed pods.
_STEP_PHASE = {"RUNNING": "Running", "SUCCEEDED": "Succeeded", "FAILED": "Failed", "RETRYING": "Running"}
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s apimachinery rand.String
EXIT_STRATEGY = "ALL_UPSTREAM_TASKS_COMPLETED"


def fnv32a(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def workflow_name(spec: dict[str, Any], run_id: str) -> str:
    """``generateName: <pipeline name>-`` (argo.go) plus k8s' 5 random characters, derived from the run id."""
    base = str((spec.get("pipelineInfo") or {}).get("name") or "pipeline").split("/")[-1]
    digest = hashlib.sha256(run_id.encode()).digest()
    return base + "-" + "".join(_GENERATE_NAME_ALPHABET[b % len(_GENERATE_NAME_ALPHABET)] for b in digest[:5])


def node_id(wf: str, name: str) -> str:
    return wf if name == wf else f"{wf}-{fnv32a(name)}"


def pod_name(wf: str, name: str, template: str) -> str:
    return wf if name == wf else f"{wf}-{template}-{fnv32a(name)}"


def loop_iterations(steps: dict[str, Any], loop_path: str, loop_task: str) -> list[int]:
    """Iteration indexes kfp.local has reached (``<loop>/<loop>-iteration-<i>``)."""
    prefix = f"{loop_path}/{loop_task}-iteration-"
    found = set()
    for path in steps:
        if path.startswith(prefix):
            index = path[len(prefix):].split("/", 1)[0]
            if index.isdigit():
                found.add(int(index))
    return sorted(found)


class _Builder:
    def __init__(self, spec: dict[str, Any], wf: str, steps: dict[str, Any]) -> None:
        self.spec = spec
        self.wf = wf
        self.steps = steps
        self.nodes: dict[str, dict[str, Any]] = {}
        self.components = spec.get("components") or {}
        self.executors = ((spec.get("deploymentSpec") or {}).get("executors")) or {}

    # ----- nodes -----

    def add(self, name: str, boundary: str | None, template: str, kind: str, phase: str,
            started: float = 0.0, finished: float = 0.0, **extra: Any) -> dict[str, Any]:
        display = name[len(boundary) + 1:] if boundary and name.startswith(boundary + ".") else name
        node = {"id": node_id(self.wf, name), "name": name, "display_name": display, "template": template,
                "type": kind, "phase": phase, "started": started, "finished": finished, "children": [],
                "outbound": [], **extra}
        if kind == "Pod":
            node["pod_name"] = pod_name(self.wf, name, template)
        self.nodes[node["id"]] = node
        return node

    def outbound(self, nid: str) -> list[str]:
        node = self.nodes[nid]
        if node["type"] in ("Pod", "Skipped"):
            return [nid]
        if node["type"] == "Retry":
            return node["children"][-1:]
        if node["type"] == "TaskGroup":
            return [o for c in node["children"] for o in self.outbound(c)] or [nid]
        return [o for c in node["outbound"] for o in self.outbound(c)]

    def connect(self, parent: dict[str, Any], entries: list[tuple[str, list[str], str | None]]) -> None:
        """Argo's connectDependencies: roots hang under the DAG node, the rest under their deps' outbound nodes."""
        ids = {name: nid for name, _, nid in entries}
        for _name, deps, nid in entries:
            if nid is None:
                continue
            known = [d for d in deps if ids.get(d)]
            if not deps:
                parent["children"].append(nid)
            for dep in known:
                for out in self.outbound(ids[dep]):  # type: ignore[arg-type]
                    self.nodes[out]["children"].append(nid)
        depended = {d for _, deps, _ in entries for d in deps}
        parent["outbound"] = [nid for name, _, nid in entries if nid and name not in depended]

    # ----- phases -----

    @staticmethod
    def _span(step: dict[str, Any] | None) -> tuple[float, float]:
        if not step:
            return 0.0, 0.0
        return float(step.get("start") or 0.0), float(step.get("end") or 0.0)

    def step_phase(self, path: str) -> str | None:
        step = self.steps.get(path)
        return _STEP_PHASE.get(step["state"]) if step else None

    # ----- DAG walk -----

    def dag(self, node: dict[str, Any], component: str, prefix: str, final: bool) -> None:
        """Build the tasks of ``component``'s DAG under ``node``; ``final``: the DAG is done (unreached tasks get Omitted/Skipped)."""
        spec = self.spec.get("root") if component == "root" else self.components.get(component)
        tasks = ((spec or {}).get("dag") or {}).get("tasks") or {}
        exits = {n: t for n, t in tasks.items() if (t.get("triggerPolicy") or {}).get("strategy") == EXIT_STRATEGY}
        entries: list[tuple[str, list[str], str | None]] = []
        task_nodes: dict[str, str | None] = {}
        for name in sorted(tasks):
            if name in exits:
                continue
            task = tasks[name]
            deps = [d for d in task.get("dependentTasks") or [] if d not in exits]
            path = f"{prefix}/{name}" if prefix else name
            built = self.task(node["name"], name, task, path, deps, final, tasks)
            entries.extend(built)
            task_nodes[name] = built[-1][2] if built else None
        self.connect(node, entries)
        # Exit tasks run as the exit lifecycle hook of each task they depend on; a dependency holds
        # one hook (the last exit task naming it wins) and ParallelFor tasks get none (dag.go DAG()
        # fills taskToExitTemplate, iteratorTask() drops the exit template).
        hooks: dict[str, str] = {}
        for name in sorted(exits):
            for dep in exits[name].get("dependentTasks") or []:
                hooks[dep] = name
        for dep, name in sorted(hooks.items()):
            task = exits[name]
            path = f"{prefix}/{name}" if prefix else name
            owner = task_nodes.get(dep)
            dep_task = tasks.get(dep) or {}
            if path not in self.steps or owner is None or "parameterIterator" in dep_task or "artifactIterator" in dep_task:
                continue
            owner_node = self.nodes[owner]
            hook_name = f"{owner_node['name']}.onExit"
            phase = self.step_phase(path) or "Running"
            start, end = self._span(self.steps.get(path))
            hook = self.add(hook_name, node["name"], f"exit-hook-{component}-{name}", "DAG", phase, start, end)
            owner_node["children"].append(hook["id"])
            self.connect(hook, self.task(hook_name, name, task, path, [], final, tasks))

    def task(self, boundary: str, name: str, task: dict[str, Any], path: str, deps: list[str], final: bool,
             siblings: dict[str, Any]) -> list[tuple[str, list[str], str | None]]:
        component = (task.get("componentRef") or {}).get("name", "")
        comp = self.components.get(component) or {}
        step = self.steps.get(path)
        start, end = self._span(step)
        base = f"{boundary}.{name}"
        if "parameterIterator" in task or "artifactIterator" in task:
            return [(name, deps, self.loop(boundary, name, task, component, path, deps, final, siblings))]
        if step is None:
            if not final:
                return [(f"{name}-driver", deps, None)]
            # Argo marks a task whose dependencies did not succeed Omitted; a false condition skips the DAG.
            upstream_ok = all((self.steps.get(self._sibling_path(path, d)) or {}).get("state") == "SUCCEEDED"
                              for d in deps)
            if (task.get("triggerPolicy") or {}).get("condition") and upstream_ok:
                driver = self.add(f"{base}-driver", boundary, self._driver_template(comp), "Pod", "Succeeded")
                skipped = self.add(base, boundary, component, "Skipped", "Skipped")
                return [(f"{name}-driver", deps, driver["id"]), (name, [f"{name}-driver"], skipped["id"])]
            omitted = self.add(f"{base}-driver", boundary, self._driver_template(comp), "Skipped", "Omitted")
            return [(f"{name}-driver", deps, omitted["id"])]
        phase = _STEP_PHASE.get(step["state"], "Running")
        if "dag" in comp:
            driver = self.add(f"{base}-driver", boundary, "system-dag-driver", "Pod", "Succeeded", start, start)
            dag = self.add(base, boundary, component, "DAG", phase, start, end)
            self.dag(dag, component, path, phase != "Running")
            return [(f"{name}-driver", deps, driver["id"]), (name, [f"{name}-driver"], dag["id"])]
        executor = self.executors.get(comp.get("executorLabel", "")) or {}
        if "importer" in executor:
            node = self.add(base, boundary, "system-importer", "Pod", phase, start, end, path=path)
            return [(name, deps, node["id"])]
        retry = "retryPolicy" in task
        impl = ("retry-" if retry else "") + "system-container-impl"
        image = (executor.get("container") or {}).get("image", "")
        driver = self.add(f"{base}-driver", boundary, "system-container-driver", "Pod", "Succeeded", start, start)
        holder = self.add(base, boundary, ("retry-" if retry else "") + "system-container-executor", "DAG",
                          "Succeeded" if step.get("cached") else phase, start, end)
        if step["state"] == "RETRYING":
            return [(f"{name}-driver", deps, driver["id"]), (name, [f"{name}-driver"], holder["id"])]
        if step.get("cached"):
            # The driver found a cached execution: "executor" is skipped (when cached-decision != true).
            pod = self.add(f"{base}.executor", base, impl, "Skipped", "Skipped", start, start)
        elif retry:
            group = self.add(f"{base}.executor", base, impl, "Retry", phase, start, end)
            pod = self.add(f"{base}.executor(0)", base, impl, "Pod", phase, start, end, path=path, image=image)
            group["children"].append(pod["id"])
            pod = group
        else:
            pod = self.add(f"{base}.executor", base, impl, "Pod", phase, start, end, path=path, image=image)
        holder["children"].append(pod["id"])
        holder["outbound"] = [pod["id"]]
        return [(f"{name}-driver", deps, driver["id"]), (name, [f"{name}-driver"], holder["id"])]

    @staticmethod
    def _sibling_path(path: str, sibling: str) -> str:
        parent = path.rpartition("/")[0]
        return f"{parent}/{sibling}" if parent else sibling

    def _driver_template(self, comp: dict[str, Any]) -> str:
        return "system-dag-driver" if "dag" in comp else "system-container-driver"

    def loop(self, boundary: str, name: str, task: dict[str, Any], component: str, path: str, deps: list[str],
             final: bool, siblings: dict[str, Any]) -> str | None:
        step = self.steps.get(path)
        base = f"{boundary}.{name}"
        if step is None:
            if not final:
                return None
            return self.add(base, boundary, f"{component}-{name}-iterator", "Skipped", "Omitted")["id"]
        phase = _STEP_PHASE.get(step["state"], "Running")
        start, end = self._span(step)
        outer = self.add(base, boundary, f"{component}-{name}-iterator", "DAG", phase, start, end)
        driver = self.add(f"{base}.iteration-driver", base, "system-dag-driver", "Pod", "Succeeded", start, start)
        indexes = loop_iterations(self.steps, path, name)
        if not indexes and phase != "Running":
            group = self.add(f"{base}.iteration-iterations", base, f"{component}-iteration", "Skipped", "Skipped",
                             start, end)
        else:
            group = self.add(f"{base}.iteration-iterations", base, f"{component}-iteration", "TaskGroup", phase,
                             start, end)
        driver["children"].append(group["id"])
        outer["children"].append(driver["id"])
        outer["outbound"] = [group["id"]]
        for i in indexes:
            it_path = f"{path}/{name}-iteration-{i}"
            it_phase = self.step_phase(it_path) or "Running"
            it_start, it_end = self._span(self.steps.get(it_path))
            it_name = f"{base}.iteration-iterations({i}:{i})"
            iteration = self.add(it_name, base, f"{component}-iteration", "DAG", it_phase, it_start, it_end)
            group["children"].append(iteration["id"])
            it_driver = self.add(f"{it_name}.iteration-item-driver", it_name, "system-dag-driver", "Pod",
                                 "Succeeded", it_start, it_start)
            item = self.add(f"{it_name}.iteration-item", it_name, component, "DAG", it_phase, it_start, it_end)
            it_driver["children"].append(item["id"])
            iteration["children"].append(it_driver["id"])
            iteration["outbound"] = [item["id"]]
            self.dag(item, component, it_path, it_phase != "Running")
        return outer["id"]


def build(spec: dict[str, Any], wf: str, steps: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    """The workflow's nodes. ``run``: ``phase`` (Running/Succeeded/Failed), ``started``, ``finished``."""
    builder = _Builder(spec, wf, steps)
    phase = run.get("phase") or "Running"
    started, finished = float(run.get("started") or 0.0), float(run.get("finished") or 0.0)
    top = builder.add(wf, None, "entrypoint", "DAG", phase, started, finished)
    driver = builder.add(f"{wf}.root-driver", wf, "system-dag-driver", "Pod", "Succeeded", started, started)
    root = builder.add(f"{wf}.root", wf, "root", "DAG", phase, started, finished)
    builder.connect(top, [("root-driver", [], driver["id"]), ("root", ["root-driver"], root["id"])])
    builder.dag(root, "root", "", phase != "Running")
    return list(builder.nodes.values())


def task_uuid(run_id: str, nid: str) -> str:
    # The real server draws a random UUID once per node row; deriving it keeps it stable here too.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfp-stand-in:{run_id}/node/{nid}"))


def upsert_tasks(doc: dict[str, Any], nodes: list[dict[str, Any]], now: float) -> None:
    """Merge ``nodes`` into ``doc['task_details']`` as task_store.CreateOrUpdateTasks does."""
    rows = {t.get("_node"): t for t in doc.get("task_details") or [] if t.get("_node")}
    created = float(doc.get("created_at") or now)
    for node in nodes:
        state = PHASE_TO_STATE.get(node["phase"], "RUNTIME_STATE_UNSPECIFIED")
        row = rows.get(node["id"])
        if row is None:
            row = {"_node": node["id"], "run_id": doc["run_id"], "task_id": task_uuid(doc["run_id"], node["id"]),
                   "create_time": created, "state_history": []}
            rows[node["id"]] = row
        elif state == "RUNTIME_STATE_UNSPECIFIED" and row.get("state"):
            state = row["state"]
        row["display_name"] = node["display_name"]
        row["start_time"] = node["started"] or row.get("start_time") or 0.0
        # An unfinished node's FinishedAt is Go's zero time, never 0, so it replaces the stored end
        # (the real server renders it as 0001-01-01; unset times render as the epoch here).
        row["end_time"] = node["finished"] or 0.0
        # patchTask: children the new report leaves empty keep the stored ones.
        row["child_tasks"] = list(node["children"]) or row.get("child_tasks") or []
        if row.get("state") != state:
            row["state"] = state
            row["state_history"].append({"update_time": now, "state": state})
    # MySQL returns the run's task rows in primary-key (random task id) order.
    doc["task_details"] = sorted(rows.values(), key=lambda t: t["task_id"])
