"""Scenario d: the task process is SIGKILLed before it creates its KFP run, after KFP created the run
but before the task saw the answer (so the id was never saved), and after the id was saved.

The middle case is made deterministic without a stand-in change: with ``latency_seconds`` set, the
stand-in counts ``POST /runs`` when it arrives and then holds it; the test SIGSTOPs the task process
during that hold, waits until the run exists on the server (the answer sits unread in the socket),
then SIGKILLs it. The next attempt must find the run by its tag. In every case: one run per task.
"""

from __future__ import annotations

import signal

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.chaos.conftest import (
    RUN_TIMEOUT,
    explain,
    kill,
    poll,
    request_count,
    runs_by_tag,
    tag_of,
    task_process,
    tries,
)
from tests.fixtures.kfp_stand_in import KfpStandIn

pytestmark = pytest.mark.chaos

# Long enough to see a request arrive and stop the process while the stand-in holds it.
LATENCY = 3.0
EXPERIMENTS = "GET /apis/v2beta1/experiments"
CREATE_RUN = "POST /apis/v2beta1/runs"
CASES = [
    ("sync", "before_create"),
    ("sync", "after_create"),
    ("sync", "after_save"),
    ("deferred", "before_create"),
    ("deferred", "after_create"),
]


@pytest.mark.parametrize(("mode", "phase"), CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_task_killed_at_each_point_leaves_exactly_one_run(
    chaos_stack: AirflowStack, chaos_kfp: KfpStandIn, mode: str, phase: str, chaos_round: int
) -> None:
    dag_id, task_id = f"chaos_crash_{mode}", mode
    # A long run for after_save, so the second attempt finds it still RUNNING and must reattach.
    # (15 s otherwise: a run that ends within seconds of a deferral meets Airflow's resume race,
    # see conftest.state_mismatch_tries, and this DAG has no retry left for it.)
    seconds = 40 if phase == "after_save" else 15
    created_before = request_count(chaos_kfp, CREATE_RUN)
    listed_before = request_count(chaos_kfp, EXPERIMENTS)
    if phase != "after_save":
        chaos_kfp.set_faults(latency_seconds=LATENCY)
    try:
        run_id = chaos_stack.trigger_dag(dag_id, conf={"seconds": seconds})
        tag = tag_of(dag_id, task_id, run_id)
        proc = task_process(chaos_stack, dag_id, run_id, task_id)
        if phase == "before_create":
            # The first KFP call of _submit: the run cannot exist yet.
            poll(
                lambda: request_count(chaos_kfp, EXPERIMENTS) > listed_before,
                120,
                "no experiments lookup",
                0.05,
            )
            kill(proc)
            assert request_count(chaos_kfp, CREATE_RUN) == created_before
        elif phase == "after_create":
            poll(lambda: request_count(chaos_kfp, CREATE_RUN) > created_before, 120, "no POST /runs", 0.05)
            kill(proc, signal.SIGSTOP)
            try:
                poll(
                    lambda: runs_by_tag(chaos_kfp, dag_id, run_id).get(tag),
                    60,
                    f"run {tag} never created",
                    0.5,
                )
            finally:
                kill(proc)
        else:
            # Logged right after the id went into task_state_store.
            (kfp_run,) = poll(lambda: runs_by_tag(chaos_kfp, dag_id, run_id).get(tag), 120, f"no run {tag}")
            poll(
                lambda: f"KFP run {kfp_run.run_id}: " in chaos_stack.task_log(dag_id, run_id, task_id, 1),
                60,
                "the task never logged its saved run id",
                0.2,
            )
            kill(proc)
    finally:
        chaos_kfp.clear_faults()

    assert chaos_stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "success", explain(
        chaos_stack, dag_id, run_id
    )
    assert tries(chaos_stack, dag_id, run_id, task_id) == [(1, "failed"), (2, "success")]
    runs = runs_by_tag(chaos_kfp, dag_id, run_id)
    assert list(runs) == [tag], runs
    (kfp_run,) = runs[tag]  # 0 duplicates
    assert kfp_run.state == "SUCCEEDED"
    assert chaos_stack.xcom(dag_id, run_id, task_id)["run_id"] == kfp_run.run_id

    first = chaos_stack.task_log(dag_id, run_id, task_id, 1)
    second = chaos_stack.task_log(dag_id, run_id, task_id, 2)
    if phase == "before_create":
        assert "Created KFP run" not in first
        assert f"Created KFP run {kfp_run.run_id}" in second
    elif phase == "after_create":
        assert "Created KFP run" not in first  # killed before the answer arrived: the id was never saved
        assert f"Found this task's KFP run {kfp_run.run_id} by its run tag" in second
        assert "Created KFP run" not in second
    else:
        assert f"Created KFP run {kfp_run.run_id}" in first
        assert f"Reattaching to KFP run {kfp_run.run_id} (RUNNING); no new run" in second
        assert "Created KFP run" not in second
    # No run of this suite anywhere is a duplicate (also catches strays from earlier scenarios).
    tags = [r.description for r in chaos_kfp.all_runs()]
    assert len(tags) == len(set(tags))
