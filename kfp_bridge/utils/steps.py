"""Pipeline steps from a KFP 2.17 run's ``task_details``: the one mapping every caller uses.

The real API server reports one task detail per *Argo node* (fidelity.md K3,
``backend/src/apiserver/server/api_converter.go``): display name, phase mapped to a v2 state,
times, and ``child_tasks`` holding the children's node ids. It sets no ``error``, no
``pod_name`` and not the node's own id. The v2 Argo compiler
(``backend/src/v2/compiler/argocompiler/dag.go``, ``container.go``) names the nodes:

* the workflow node (display name = workflow name), then ``root-driver`` and ``root``;
* per pipeline task ``<task>-driver`` and ``<task>`` (a DAG node), whose child ``executor`` is the
  pod (``executor(N)`` attempts under it when the task retries); a cache hit skips ``executor``;
* a ParallelFor task ``<task>`` holds ``iteration-driver`` and ``iteration-iterations``, expanded
  by Argo into ``iteration-iterations(N:N)``, each with ``iteration-item-driver`` and
  ``iteration-item`` (the loop body's DAG);
* nested pipelines, conditions and exit handlers are DAG tasks whose tasks sit under them.

Argo's node id is ``<workflow>-<fnv32a(full node name)>`` (``Workflow.NodeID``), full names being
dotted paths (``wf.root.train.executor``). That lets the tree be rebuilt from ``child_tasks``; each
node then gets a *step path* from the pipeline spec's task names: ``train``, ``outer/inner``,
``for-loop-2[1]/print-op``. Drivers, executors, ``root`` and the workflow node are never steps.
When the tree cannot be rebuilt (an older or simpler server), steps fall back to display names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kfp_bridge.utils.states import RunState

EXECUTOR = "executor"
_ATTEMPT = re.compile(r"^(?P<base>.+)\((?P<n>\d+)\)$")  # Argo retry child: executor(0)
_ITERATION = re.compile(r"^iteration-iterations\((?P<index>\d+):[^)]*\)$")
_STRUCTURAL = frozenset({"root", "root-driver", "iteration-driver", "iteration-iterations", "iteration-item", "iteration-item-driver"})


# ----- the pipeline spec ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SpecTask:
    name: str
    component: str
    kind: str  # "container", "dag" (nested pipeline, condition, exit handler), "loop", "importer"


@dataclass(frozen=True)
class PipelineShape:
    """Task names per DAG of a compiled pipeline spec (``root`` and each DAG component)."""

    dags: Mapping[str, Mapping[str, SpecTask]]

    def tasks(self, dag: str) -> Mapping[str, SpecTask]:
        return self.dags.get(dag, {})

    @property
    def all_names(self) -> frozenset[str]:
        return frozenset(name for tasks in self.dags.values() for name in tasks)


def pipeline_shape(spec: Mapping[str, Any] | None) -> PipelineShape | None:
    """The DAGs of a compiled pipeline spec (IR YAML as a dict), or None when it has none."""
    if spec and "root" not in spec and isinstance(spec.get("pipeline_spec"), Mapping):
        spec = spec["pipeline_spec"]  # a run's pipeline_spec with a platform spec beside it
    if not spec or not isinstance(spec.get("root"), Mapping):
        return None
    components = spec.get("components") or {}
    executors = ((spec.get("deploymentSpec") or {}).get("executors")) or {}
    dags: dict[str, dict[str, SpecTask]] = {}

    def add(key: str, dag: Mapping[str, Any]) -> None:
        tasks: dict[str, SpecTask] = {}
        for name, task in (dag.get("tasks") or {}).items():
            task = task or {}
            component = (task.get("componentRef") or {}).get("name") or ""
            comp = components.get(component) or {}
            if task.get("parameterIterator") or task.get("artifactIterator"):
                kind = "loop"
            elif "dag" in comp:
                kind = "dag"
            elif "importer" in (executors.get(comp.get("executorLabel") or "") or {}):
                kind = "importer"
            else:
                kind = "container"
            tasks[name] = SpecTask(name, component, kind)
            if kind in ("dag", "loop") and component not in dags and isinstance(comp.get("dag"), Mapping):
                dags[component] = {}  # placeholder against cycles
                add(component, comp["dag"])
        dags[key] = tasks

    add("root", spec["root"].get("dag") or {})
    return PipelineShape(dags)


# ----- Argo node ids ------------------------------------------------------------------------------
def fnv32a(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def argo_node_id(workflow: str, node_name: str) -> str:
    """Argo's ``Workflow.NodeID``: the workflow node's id is the workflow name itself."""
    return workflow if node_name == workflow else f"{workflow}-{fnv32a(node_name)}"


# ----- steps ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One pipeline task of a run.

    :param name: the step path (``train``, ``outer/inner``, ``for-loop-2[1]/print-op``).
    :param cached: KFP served it from its cache (its executor was skipped).
    :param executor_failed: its pod failed (True), did not (False), or unknown (None).
    :param node_name: the Argo node name of its executor (what the pod's
        ``workflows.argoproj.io/node-name`` annotation holds), when known.
    :param container: a task that runs a pod (not a nested pipeline, condition or loop).
    """

    name: str
    state: RunState
    start_time: str | None = None
    end_time: str | None = None
    cached: bool = False
    executor_failed: bool | None = None
    node_name: str | None = None
    container: bool = True
    error: str | None = None  # only older or simpler servers report one

    @property
    def label(self) -> str:
        """The state shown to users: CACHED for a cache hit, else the KFP state."""
        return "CACHED" if self.cached else self.state.value

    @property
    def blamed(self) -> bool:
        """The step itself failed, as opposed to being interrupted by a terminate."""
        return self.state == RunState.FAILED and self.container and self.executor_failed is not False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "state": self.label}
        for key in ("error", "start_time", "end_time", "node_name"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


@dataclass
class _Node:
    detail: Mapping[str, Any]
    display: str
    children: list[str]
    full_name: str | None = None

    @property
    def state(self) -> RunState:
        return RunState.parse(self.detail.get("state"))

    @property
    def span(self) -> tuple[float, float]:
        return _epoch(self.detail.get("start_time")), _epoch(self.detail.get("end_time"))


def steps_from_task_details(details: Iterable[Mapping[str, Any]], spec: Mapping[str, Any] | None = None) -> tuple[Step, ...]:
    """The steps of a run, ordered by step path (KFP lists the nodes in no useful order)."""
    nodes = [_node(detail) for detail in details]
    shape = pipeline_shape(spec)
    if _resolve_names(nodes):
        return tuple(_steps_from_names(nodes, shape))
    return tuple(_by_display_name(nodes, shape))


def _node(detail: Mapping[str, Any]) -> _Node:
    children = []
    for child in detail.get("child_tasks") or []:
        if isinstance(child, Mapping):
            ident = child.get("pod_name") or child.get("task_id")
            if ident:
                children.append(str(ident))
    return _Node(detail, str(detail.get("display_name") or ""), children)


def _prefixes(name: str) -> list[str]:
    """``a.b.c`` → ``a.b.c``, ``a.b``, ``a``: the DAG nodes a child of this node can be named under.

    Argo hangs a task under the outbound nodes of the tasks it depends on (``controller/dag.go``),
    not under its DAG node, but names it ``<DAG node name>.<task>``: so the name of a child is some
    ancestor's name plus its display name (retry attempts and loop expansions included).
    """
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _resolve_names(nodes: list[_Node]) -> bool:
    """Give every node reachable from the workflow node its Argo full name; False when the details are
    not Argo nodes named the Argo way (then steps fall back to display names).

    A detail carries its children's node ids but not its own, so a child id is matched by hashing the
    candidate names; among several details with one display name the one whose own children hash
    from that name wins, then (a leaf: executor pods, drivers) the one whose times fit the parent's.
    """
    workflow_node = None
    for candidate in nodes:
        wf = candidate.display
        if wf and {argo_node_id(wf, f"{wf}.root"), argo_node_id(wf, f"{wf}.root-driver")} & set(candidate.children):
            workflow_node = candidate
            break
    if workflow_node is None:
        return False
    wf = workflow_node.display
    workflow_node.full_name = wf
    by_display: dict[str, list[_Node]] = {}
    for node in nodes:
        if node is not workflow_node:
            by_display.setdefault(node.display, []).append(node)
    displays = list(by_display)
    listed = set(workflow_node.children)  # child ids some named node already leads to
    queue = [workflow_node]
    resolved = 1
    while queue:
        parent = queue.pop(0)
        assert parent.full_name is not None
        for child_id in parent.children:
            match = _match_child(wf, parent, child_id, by_display, displays, listed)
            if match is None:
                continue  # already named through another parent (a task with two dependencies)
            node, name = match
            node.full_name = name
            listed.update(node.children)
            resolved += 1
            queue.append(node)
    return resolved > 1


def _match_child(
    wf: str, parent: _Node, child_id: str, by_display: dict[str, list[_Node]], displays: list[str], listed: set[str]
) -> tuple[_Node, str] | None:
    """The unnamed detail that is node ``child_id`` of ``parent``, with its full name.

    Same-display candidates (every pod is ``executor``) are ranked: children that can be its own
    (named from its name's prefixes, never its own ancestors' nodes), then one that is the only way
    to nodes nothing named leads to yet (picking a leaf there would leave them unreachable), then a
    state that fits the parent, then times (KFP reports whole seconds: fast steps tie).
    """
    assert parent.full_name is not None
    for prefix in _prefixes(parent.full_name):
        for display in displays:
            name = f"{prefix}.{display}"
            if argo_node_id(wf, name) != child_id:
                continue
            free = [n for n in by_display[display] if n.full_name is None]
            if not free:
                return None
            if len(free) == 1:
                return free[0], name
            fits = _children_fit(wf, name, displays)
            chosen = min(
                free,
                key=lambda n: (
                    not fits(n),
                    not (set(n.children) - listed),
                    not _state_fits(n, parent),
                    _distance(n, parent),
                ),
            )
            return chosen, name
    return None


def _children_fit(wf: str, name: str, displays: list[str]) -> Callable[[_Node], bool]:
    """Whether every child id of a node is one Argo could hang under ``name``: some prefix of it plus
    a display name, and not one of its own ancestors or their drivers (Argo makes no cycles)."""
    ancestors = _prefixes(name)[1:]
    forbidden = {argo_node_id(wf, a) for a in ancestors} | {argo_node_id(wf, f"{a}-driver") for a in ancestors}
    possible = {argo_node_id(wf, f"{prefix}.{d}") for prefix in _prefixes(name) for d in displays} - forbidden
    return lambda node: all(child in possible for child in node.children)


def _state_fits(node: _Node, parent: _Node) -> bool:
    """A pod's phase agrees with the node holding it (a failed task has a failed pod, and so on)."""
    if parent.state == RunState.FAILED:
        return node.state == RunState.FAILED
    if parent.state == RunState.SUCCEEDED:
        return node.state in (RunState.SUCCEEDED, RunState.SKIPPED)
    return True


def _distance(node: _Node, parent: _Node) -> float:
    (start, end), (p_start, p_end) = node.span, parent.span
    return abs(start - p_start) + abs(end - p_end)


def _locate(segments: list[str], shape: PipelineShape | None) -> tuple[str | None, str]:
    """(step path, role) of a node from its name's segments after the workflow name.

    role: ``step`` (the ``<task>`` node), ``executor`` (its pod, or a retry attempt) or ``other``.
    """
    if not segments or segments[0] != "root":
        return None, "other"
    stack: list[tuple[str, str]] = [("root", "")]  # (DAG component, path prefix)
    found: str | None = None
    for index, part in enumerate(segments[1:], start=1):
        dag, prefix = stack[-1]
        last = index == len(segments) - 1
        if part == EXECUTOR or (_ATTEMPT.match(part) and part.startswith(EXECUTOR)):
            return (found, "executor") if found else (None, "other")
        if part == "onExit":  # exit tasks run as a hook of the task they follow, in its DAG
            stack.pop() if len(stack) > 1 else None
            found = None
            continue
        iteration = _ITERATION.match(part)
        if iteration:
            stack[-1] = (dag, f"{prefix.rstrip('/')}[{iteration.group('index')}]/")
            found = None
            continue
        if part in ("iteration-iterations", "iteration-item"):
            found = None
            continue
        task = _spec_task(shape, dag, part)
        if task is None:
            return None, "other"
        found = prefix + part
        if last:
            return found, "step"
        stack.append((task.component if shape is not None else dag, f"{found}/"))
    return None, "other"


def _kind(shape: PipelineShape | None, segments: list[str], nodes_below: list[str]) -> bool:
    """Whether a step runs a pod (True) or groups tasks (False)."""
    if shape is not None:
        dag = "root"
        task = None
        for part in segments[1:]:
            task = shape.tasks(dag).get(part)
            if task is not None:
                dag = task.component
        if task is not None:
            return task.kind in ("container", "importer")
    return not nodes_below or any(n == EXECUTOR for n in nodes_below)


def _steps_from_names(nodes: list[_Node], shape: PipelineShape | None) -> list[Step]:
    located: list[tuple[str, str, _Node]] = []
    for node in nodes:
        if node.full_name is None or "." not in node.full_name:
            continue
        path, role = _locate(node.full_name.split(".")[1:], shape)
        if path is not None:
            located.append((path, role, node))
    executors: dict[str, list[_Node]] = {}
    for path, role, node in located:
        if role == "executor":
            executors.setdefault(path, []).append(node)
    steps = []
    for path, role, node in sorted(located, key=lambda item: item[0]):
        if role != "step":
            continue
        assert node.full_name is not None
        below = [n.full_name[len(node.full_name) + 1 :].split(".")[0] for n in nodes
                 if n.full_name and n.full_name.startswith(node.full_name + ".")]
        container = _kind(shape, node.full_name.split(".")[1:], below)
        steps.append(_step(node, path, executors.get(path, []), container=container))
    return steps


def _spec_task(shape: PipelineShape | None, dag: str, display: str) -> SpecTask | None:
    if shape is not None:
        return shape.tasks(dag).get(display)
    # No spec: anything that is not a driver, an executor or a loop's scaffolding is a task.
    if display in _STRUCTURAL or display == EXECUTOR or _ATTEMPT.match(display) or display.endswith("-driver"):
        return None
    return SpecTask(display, dag, "")


def _step(node: _Node, path: str, pods_and_groups: list[_Node], *, container: bool) -> Step:
    attempts = [n for n in pods_and_groups if n.display != EXECUTOR]  # executor(N) under a Retry node
    executors = [n for n in pods_and_groups if n.display == EXECUTOR]
    pods = attempts or executors
    state = node.state
    cached = state == RunState.SUCCEEDED and bool(executors) and all(ex.state == RunState.SKIPPED for ex in executors)
    failed_pod: bool | None = any(pod.state == RunState.FAILED for pod in pods) if pods else False
    if container and not pods and state == RunState.FAILED:
        failed_pod = None  # an importer (itself a pod), or no pod seen: cannot tell
    latest = max(pods, key=lambda n: (n.span[0], n.full_name or "")) if pods else None
    return Step(
        name=path,
        state=state,
        start_time=_time(node.detail.get("start_time")),
        end_time=_time(node.detail.get("end_time")),
        cached=cached,
        executor_failed=failed_pod if container else False,
        node_name=latest.full_name if latest else None,
        container=container,
    )


def _by_display_name(nodes: list[_Node], shape: PipelineShape | None) -> list[Step]:
    """Without a tree: one step per node whose display name is a spec task (any DAG); without a
    spec, per node that is not a driver, an executor, a loop's scaffolding or the workflow node."""
    groups = {t.name for tasks in shape.dags.values() for t in tasks.values() if t.kind in ("dag", "loop")} if shape else set()
    steps = []
    for node in nodes:
        display = node.display
        if shape is not None:
            if display not in shape.all_names:
                continue
        elif not display or _spec_task(None, "root", display) is None or _is_workflow_node(node):
            continue
        error = node.detail.get("error")
        message = (error.get("message") if isinstance(error, Mapping) else str(error)) if error else None
        steps.append(
            Step(
                name=display,
                state=node.state,
                start_time=_time(node.detail.get("start_time")),
                end_time=_time(node.detail.get("end_time")),
                executor_failed=None,
                container=display not in groups,
                error=message or None,
            )
        )
    return steps


def _is_workflow_node(node: _Node) -> bool:
    # Argo node ids are "<workflow name>-<hash>": the workflow node is the parent of ids named after it.
    return bool(node.children) and all(child.startswith(f"{node.display}-") for child in node.children)


def _epoch(value: Any) -> float:
    if not value:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        from datetime import datetime

        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _time(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, int | float):
        from datetime import UTC, datetime

        value = datetime.fromtimestamp(value, UTC)
    text = value if isinstance(value, str) else value.isoformat()
    return None if text.startswith("1970-01-01") else text  # the API sends the epoch for "unset"


# ----- executor pods ----------------------------------------------------------------------------------
NODE_NAME_ANNOTATION = "workflows.argoproj.io/node-name"
NODE_ID_ANNOTATION = "workflows.argoproj.io/node-id"
RUN_ID_LABEL = "pipeline/runid"


def step_of_node_name(node_name: str, spec: Mapping[str, Any] | None = None) -> str | None:
    """The step path an executor pod belongs to, from its Argo node name annotation.

    ``wf.root.for-loop-2.iteration-iterations(1:1).iteration-item.print-op.executor`` →
    ``for-loop-2[1]/print-op``; None for drivers and anything that is not a step's pod.
    """
    path, role = _locate(node_name.split(".")[1:], pipeline_shape(spec))
    return path if role == "executor" else None
