"""Build ``run_details.task_details`` exactly as KFP 2.17's api_converter.go does from Argo nodes.

``toModelTasks`` walks the workflow's nodes sorted by node id; ``toModelTask`` keeps DisplayName,
Phase (mapped by ``RuntimeState.ToV2``: Error → FAILED, Omitted → unspecified), StartedAt as
create/start time, FinishedAt, and Children (node ids); ``toApiPipelineTaskDetail`` emits
``child_tasks`` as ``{pod_name: <child node id>}`` and no ``error``, ``pod_name`` or ``task_id``.
Node ids follow Argo's ``Workflow.NodeID``.
"""

from __future__ import annotations

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
    """An Argo node: display name, phase, children; ``name`` overrides the full-name rule."""

    display: str
    phase: str = "Succeeded"
    kids: list[N] = field(default_factory=list)
    name: str | None = None  # full name when Argo does not use parent.display (retries, expansions)


def container(task: str, phase: str = "Succeeded", executor: str | None = None) -> list[N]:
    """``<task>-driver`` and ``<task>`` with its ``executor`` pod (phase ``executor``, default ``phase``)."""
    return [N(f"{task}-driver", "Succeeded"), N(task, phase, [N("executor", executor or phase)])]


def task_details(workflow: str, root_kids: list[N], run_phase: str = "Succeeded") -> list[dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}

    def add(node: N, full: str) -> str:
        ident = argo_node_id(workflow, full)
        children = [add(kid, kid.name or f"{full}.{kid.display}") for kid in node.kids]
        nodes[ident] = {
            "display_name": node.display,
            "create_time": "2026-01-01T00:00:00Z",
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T00:01:00Z",
            "state": PHASE_TO_V2[node.phase],
            "execution_id": "0",
            **({"child_tasks": [{"pod_name": child} for child in children]} if children else {}),
        }
        return ident

    add(N(workflow, run_phase, [N("root-driver"), N("root", run_phase, root_kids)]), workflow)
    return [nodes[key] for key in sorted(nodes)]


def loop(task: str, iterations: list[list[N]], phase: str = "Succeeded", *, parent: str) -> N:
    """A ParallelFor task as dag.go's iteratorTask/iterationItemTask compile it; ``parent`` is the
    full name of the DAG node holding it (Argo names expanded iterations after the loop node)."""
    loop_full = f"{parent}.{task}"
    expanded = [
        N(
            f"iteration-iterations({i}:{i})",
            phase if any(k.phase != "Succeeded" for k in body) else "Succeeded",
            [N("iteration-item-driver"), N("iteration-item", "Failed" if any(k.phase == "Failed" for k in body) else "Succeeded", body)],
            name=f"{loop_full}.iteration-iterations({i}:{i})",
        )
        for i, body in enumerate(iterations)
    ]
    return N(task, phase, [N("iteration-driver"), N("iteration-iterations", phase, expanded)])
