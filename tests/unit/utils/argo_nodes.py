"""Build ``run_details.task_details`` exactly as KFP 2.17's api_converter.go does from Argo nodes.

``toModelTasks`` walks the workflow's nodes sorted by node id; ``toModelTask`` keeps DisplayName,
Phase (mapped by ``RuntimeState.ToV2``: Error → FAILED, Omitted → unspecified), StartedAt as
create/start time, FinishedAt, and Children (node ids); ``toApiPipelineTaskDetail`` emits
``child_tasks`` as ``{pod_name: <child node id>}`` and no ``error``, ``pod_name`` or ``task_id``.
Node ids follow Argo's ``Workflow.NodeID``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from kfp_bridge.utils.steps import argo_node_id

PHASE_TO_V2 = {
    "Pending": "PENDING",
    "Running": "RUNNING",
    "Succeeded": "SUCCEEDED",
    "Skipped": "SKIPPED",
    "Failed": "FAILED",
    "Error": "FAILED",
    "Omitted": "RUNTIME_STATE_UNSPECIFIED",
}


@dataclass
class N:
    """An Argo node: display name, phase, the nodes of its template, and the sibling tasks it
    depends on; ``name`` overrides the full-name rule (loop expansions)."""

    display: str
    phase: str = "Succeeded"
    kids: list[N] = field(default_factory=list)
    name: str | None = None
    deps: list[str] = field(default_factory=list)


def container(task: str, phase: str = "Succeeded", executor: str | None = None, deps: list[str] | None = None) -> list[N]:
    """``<task>-driver`` and ``<task>`` with its ``executor`` pod (phase ``executor``, default ``phase``)."""
    return [N(f"{task}-driver", "Succeeded", deps=list(deps or [])),
            N(task, phase, [N("executor", executor or phase)], deps=[f"{task}-driver"])]


def task_details(workflow: str, root_kids: list[N], run_phase: str = "Succeeded", *,
                 one_second: bool = False) -> list[dict[str, Any]]:
    """Children as Argo's controller/dag.go links them: a DAG node holds its root tasks, a task with
    dependencies hangs under the outbound nodes of what it depends on. Rows come in task-id order
    (random UUIDs, run_store.go's GROUP_CONCAT), not by node id. ``one_second``: every time is the
    same second, as KFP reports a fast run (its times are whole seconds)."""
    nodes: dict[str, dict[str, Any]] = {}
    outbound: dict[str, list[str]] = {}
    clock = iter(range(10_000))

    def at(second: int) -> str:
        return f"2026-01-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"

    def add(node: N, full: str) -> str:
        ident = argo_node_id(workflow, full)
        nodes[ident] = {
            "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, ident)),
            "display_name": node.display,
            "create_time": at(0),
            "start_time": at(0 if one_second else next(clock)),
            "state": PHASE_TO_V2[node.phase],
            "execution_id": "0",
            "child_tasks": [],
        }
        ids = {kid.display: add(kid, kid.name or f"{full}.{kid.display}") for kid in node.kids}
        depended = {dep for kid in node.kids for dep in kid.deps}
        for kid in node.kids:
            if not kid.deps:
                nodes[ident]["child_tasks"].append({"pod_name": ids[kid.display]})
            for dep in kid.deps:
                for out in outbound[ids[dep]]:
                    nodes[out]["child_tasks"].append({"pod_name": ids[kid.display]})
        nodes[ident]["end_time"] = at(0 if one_second else next(clock))
        ends = [ids[kid.display] for kid in node.kids if kid.display not in depended]
        outbound[ident] = [o for end in ends for o in outbound[end]] if node.kids else [ident]
        return ident

    add(N(workflow, run_phase, [N("root-driver"), N("root", run_phase, root_kids, deps=["root-driver"])]), workflow)
    for row in nodes.values():
        if not row["child_tasks"]:
            del row["child_tasks"]
    return sorted(nodes.values(), key=lambda row: row["task_id"])


def loop(task: str, iterations: list[list[N]], phase: str = "Succeeded", *, parent: str, deps: list[str] | None = None) -> N:
    """A ParallelFor task as dag.go's iteratorTask/iterationItemTask compile it; ``parent`` is the
    full name of the DAG node holding it (Argo names expanded iterations after the loop node)."""
    loop_full = f"{parent}.{task}"
    expanded = [
        N(
            f"iteration-iterations({i}:{i})",
            phase if any(k.phase != "Succeeded" for k in body) else "Succeeded",
            [N("iteration-item-driver"),
             N("iteration-item", "Failed" if any(k.phase == "Failed" for k in body) else "Succeeded", body,
               deps=["iteration-item-driver"])],
            name=f"{loop_full}.iteration-iterations({i}:{i})",
        )
        for i, body in enumerate(iterations)
    ]
    return N(task, phase, [N("iteration-driver"), N("iteration-iterations", phase, expanded, deps=["iteration-driver"])],
             deps=list(deps or []))
