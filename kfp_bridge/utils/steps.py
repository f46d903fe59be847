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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    kids: list[_Node] = field(default_factory=list)

    @property
    def state(self) -> RunState:
        return RunState.parse(self.detail.get("state"))


def steps_from_task_details(details: Iterable[Mapping[str, Any]], spec: Mapping[str, Any] | None = None) -> tuple[Step, ...]:
    """The steps of a run, in the order KFP lists the nodes (sorted by node id, so stable)."""
    nodes = [_node(detail) for detail in details]
    shape = pipeline_shape(spec)
    root = _rebuild_tree(nodes)
    if root is not None:
        return tuple(_walk_tree(root, shape))
    return tuple(_by_display_name(nodes, shape))


def _node(detail: Mapping[str, Any]) -> _Node:
    children = []
    for child in detail.get("child_tasks") or []:
        if isinstance(child, Mapping):
            ident = child.get("pod_name") or child.get("task_id")
            if ident:
                children.append(str(ident))
    return _Node(detail, str(detail.get("display_name") or ""), children)


def _rebuild_tree(nodes: list[_Node]) -> _Node | None:
    """The workflow node with every node's full name and kids, or None when the details are not
    Argo nodes listed the way api_converter.go lists them (sorted by node id).

    A detail does not carry its own node id, but every id is some node's child (or the workflow
    name), and the list is sorted by id: the i-th detail is the i-th smallest id. The full names
    are then checked against Argo's naming, so a server that names nodes differently falls back.
    """
    for candidate in nodes:
        workflow = candidate.display
        expected = {argo_node_id(workflow, f"{workflow}.{name}") for name in ("root", "root-driver")}
        if workflow and expected & set(candidate.children):
            break
    else:
        return None
    ids = sorted({workflow} | {child for node in nodes for child in node.children})
    if len(ids) != len(nodes):
        return None
    by_id = dict(zip(ids, nodes, strict=True))
    if by_id[workflow] is not candidate:
        return None
    candidate.full_name = workflow
    queue = [candidate]
    while queue:
        parent = queue.pop(0)
        for child_id in parent.children:
            node = by_id.get(child_id)
            if node is None or node.full_name is not None:
                return None
            names = [n for n in _child_names(parent, node.display) if argo_node_id(workflow, n) == child_id]
            if not names:
                return None
            node.full_name = names[0]
            parent.kids.append(node)
            queue.append(node)
    return candidate


def _child_names(parent: _Node, display: str) -> list[str]:
    """Full names a child with this display name can have under ``parent`` (Argo's naming rules)."""
    assert parent.full_name is not None
    names = [f"{parent.full_name}.{display}"]
    attempt = _ATTEMPT.match(display)
    if attempt and attempt.group("base") == parent.display:
        names.append(f"{parent.full_name}({attempt.group('n')})")  # retry attempt
    if "." in parent.full_name:
        names.append(f"{parent.full_name.rsplit('.', 1)[0]}.{display}")  # withSequence expansion
    return names


def _walk_tree(workflow: _Node, shape: PipelineShape | None) -> list[Step]:
    steps: list[Step] = []

    def visit(node: _Node, dag: str | None, prefix: str) -> None:
        for kid in node.kids:
            display = kid.display
            if dag is None:  # the workflow node's children: only root holds steps
                if display == "root":
                    visit(kid, "root", "")
                continue
            iteration = _ITERATION.match(display)
            if iteration:
                visit(kid, dag, f"{prefix.rstrip('/')}[{iteration.group('index')}]/")
                continue
            if display in ("iteration-iterations", "iteration-item"):
                visit(kid, dag, prefix)
                continue
            task = _spec_task(shape, dag, display)
            if task is None:
                continue  # a driver, an executor, or a node the spec does not know
            path = prefix + display
            kind = task.kind or _kind_from_kids(kid)
            if kind in ("dag", "loop"):
                steps.append(_step(kid, path, container=False))
                visit(kid, task.component if shape else dag, f"{path}/")
            else:
                steps.append(_step(kid, path, container=True))

    visit(workflow, None, "")
    return steps


def _kind_from_kids(node: _Node) -> str:
    """Without a spec: a task with an executor (or no kids yet) runs a pod; otherwise it groups tasks."""
    if not node.kids or any(kid.display == EXECUTOR for kid in node.kids):
        return "container"
    return "dag"


def _spec_task(shape: PipelineShape | None, dag: str, display: str) -> SpecTask | None:
    if shape is not None:
        return shape.tasks(dag).get(display)
    # No spec: anything that is not a driver, an executor or a loop's scaffolding is a task.
    if display in _STRUCTURAL or display == EXECUTOR or _ATTEMPT.match(display) or display.endswith("-driver"):
        return None
    return SpecTask(display, dag, "")


def _step(node: _Node, path: str, *, container: bool) -> Step:
    executors = [kid for kid in node.kids if kid.display == EXECUTOR]
    attempts = [grand for ex in executors for grand in ex.kids if _ATTEMPT.match(grand.display)]
    pods = attempts or executors
    state = node.state
    cached = state == RunState.SUCCEEDED and bool(executors) and all(ex.state == RunState.SKIPPED for ex in executors)
    failed_pod: bool | None = any(pod.state == RunState.FAILED for pod in pods) if pods else False
    if container and not node.kids and state == RunState.FAILED:
        failed_pod = None  # never started a pod, or an importer (itself a pod): cannot tell
    return Step(
        name=path,
        state=state,
        start_time=_time(node.detail.get("start_time")),
        end_time=_time(node.detail.get("end_time")),
        cached=cached,
        executor_failed=failed_pod if container else False,
        node_name=pods[-1].full_name if pods else None,
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


def _time(value: Any) -> str | None:
    if not value:
        return None
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
    parts = node_name.split(".")
    if len(parts) < 3 or parts[1] != "root":
        return None
    shape = pipeline_shape(spec)
    dag = "root"
    path = ""
    found = None
    for part in parts[2:]:
        if part == EXECUTOR or _ATTEMPT.match(part):
            return found
        iteration = _ITERATION.match(part)
        if iteration:
            path = f"{path.rstrip('/')}[{iteration.group('index')}]/"
            continue
        if part in ("iteration-iterations", "iteration-item"):
            continue
        task = _spec_task(shape, dag, part)
        if task is None:
            return None
        found = path + part
        path = f"{found}/"
        if shape is not None:
            dag = task.component
    return None
