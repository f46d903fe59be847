"""Scenario c: the triggerer is SIGKILLed while 50 tasks are deferred, their runs finish while it is
dead, and a new triggerer starts.

The 50 runs wait on a gate file, so all 50 tasks are deferred at the moment of the kill; the gate
opens only after the kill, so every completion happens while no triggerer is alive and must still
reach its task (0 lost completions). One run in ten is made to fail: its task must fail (0 false
successes). No task retries, so a trigger that errored on the way would show as a failure.

The chaos stack runs two triggerers; this scenario is about the only one dying (scenario g,
test_triggerer_ha.py, is about the other taking over), so ``triggerer-2`` is stopped for its length.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.chaos.conftest import RUN_TIMEOUT, explain, poll, runs_by_tag, tag_of
from tests.fixtures.kfp_stand_in import KfpStandIn

pytestmark = pytest.mark.chaos

DAG_ID = "chaos_fleet"
TASK_ID = "fleet"
FLEET = 50
# 50 task starts (each imports Airflow and kfp) on two shared cores.
DEFER_TIMEOUT = 900.0
# Completions that must happen while the triggerer is dead.
COMPLETED_WHILE_DEAD = 8


def _fails(index: int) -> bool:
    return index % 10 == 9  # mirrors dags/chaos_fleet.py


@pytest.mark.timeout(2400)
def test_triggerer_killed_with_50_deferred_tasks_loses_nothing(
    chaos_stack: AirflowStack, chaos_kfp: KfpStandIn, tmp_path: Path, chaos_round: int
) -> None:
    chaos_stack.stop_service("triggerer-2")
    try:
        _only_triggerer_killed(chaos_stack, chaos_kfp, tmp_path / "gate")
    finally:
        chaos_stack.start_service("triggerer-2")


def _only_triggerer_killed(chaos_stack: AirflowStack, chaos_kfp: KfpStandIn, gate: Path) -> None:
    run_id = chaos_stack.trigger_dag(DAG_ID, conf={"gate_path": str(gate)})

    def states() -> dict[int, str]:
        return {ti["map_index"]: ti["state"] for ti in chaos_stack.task_instances(DAG_ID, run_id)}

    poll(
        lambda: list(states().values()).count("deferred") == FLEET,
        DEFER_TIMEOUT,
        lambda: f"not all {FLEET} tasks deferred: {sorted(states().items())}",
        2.0,
    )
    runs = runs_by_tag(chaos_kfp, DAG_ID, run_id)
    assert len(runs) == FLEET and all(len(r) == 1 for r in runs.values())
    assert {r[0].state for r in runs.values()} <= {"PENDING", "RUNNING"}

    triggerer = psutil.Process(chaos_stack.processes["triggerer"].pid)
    chaos_stack.kill_service("triggerer", signal.SIGKILL)
    triggerer.wait(30)
    gate.write_text("open\n")

    def finished() -> int:
        return sum(
            r[0].state in ("SUCCEEDED", "FAILED") for r in runs_by_tag(chaos_kfp, DAG_ID, run_id).values()
        )

    done = poll(
        lambda: finished() >= COMPLETED_WHILE_DEAD and finished(), RUN_TIMEOUT, "runs did not finish", 1.0
    )
    # Nobody can have told Airflow yet: every task is still deferred.
    assert set(states().values()) == {"deferred"}, sorted(states().items())
    dead_for = time.monotonic()
    chaos_stack.start_service("triggerer")

    assert chaos_stack.wait_dag_run(DAG_ID, run_id, RUN_TIMEOUT * 2) == "failed", explain(
        chaos_stack, DAG_ID, run_id
    )
    elapsed = time.monotonic() - dead_for
    tis = {ti["map_index"]: ti for ti in chaos_stack.task_instances(DAG_ID, run_id)}
    assert sorted(tis) == list(range(FLEET))
    expected = {i: "failed" if _fails(i) else "success" for i in range(FLEET)}
    assert {i: ti["state"] for i, ti in tis.items()} == expected, explain(chaos_stack, DAG_ID, run_id)
    assert {ti["try_number"] for ti in tis.values()} == {1}

    runs = runs_by_tag(chaos_kfp, DAG_ID, run_id)
    assert sorted(runs) == sorted(tag_of(DAG_ID, TASK_ID, run_id, i) for i in range(FLEET))
    assert all(len(r) == 1 for r in runs.values()), "duplicate runs"
    for index in range(FLEET):
        (kfp_run,) = runs[tag_of(DAG_ID, TASK_ID, run_id, index)]
        assert kfp_run.state == ("FAILED" if _fails(index) else "SUCCEEDED")
        if not _fails(index):
            assert chaos_stack.xcom(DAG_ID, run_id, TASK_ID, map_index=index)["run_id"] == kfp_run.run_id
    print(
        f"{done} runs finished while the triggerer was dead; all {FLEET} tasks done {elapsed:.0f}s after restart"
    )
