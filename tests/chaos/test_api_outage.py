"""Scenario a: the KFP API refuses every request (503) for 60 s while sync and deferred tasks wait.

The four runs (two succeed, two fail) finish during the outage; nobody can see that until it ends.
Every task must ride the outage out in its first try and then report its run's real outcome.
"""

from __future__ import annotations

import time

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.chaos.conftest import (
    FIRST_TRY_OUTCOME,
    RUN_TIMEOUT,
    assert_still_waiting,
    check_outcome,
    explain,
    runs_by_tag,
    tag_of,
    wait_until_waiting,
)
from tests.fixtures.kfp_stand_in import KfpStandIn

pytestmark = pytest.mark.chaos

DAG_ID = "chaos_wait"
OUTAGE_SECONDS = 60
RUN_SECONDS = 20


@pytest.mark.timeout(1200)
def test_sixty_second_api_outage_mid_wait(
    chaos_stack: AirflowStack, chaos_kfp: KfpStandIn, chaos_round: int
) -> None:
    run_id = chaos_stack.trigger_dag(DAG_ID, conf={"seconds": RUN_SECONDS})
    before = wait_until_waiting(chaos_stack, chaos_kfp, DAG_ID, run_id)
    try:
        chaos_kfp.set_faults(outage_seconds=OUTAGE_SECONDS)
        began = time.monotonic()
        # The runs end inside the outage; until it is over no task may have finished.
        time.sleep(OUTAGE_SECONDS - 5)
        assert_still_waiting(chaos_stack, DAG_ID, run_id)
        assert chaos_stack.wait_dag_run(DAG_ID, run_id, RUN_TIMEOUT) == "failed", explain(
            chaos_stack, DAG_ID, run_id
        )
        waited = time.monotonic() - began
    finally:
        chaos_kfp.clear_faults()
    assert waited >= OUTAGE_SECONDS - 5

    check_outcome(chaos_stack, chaos_kfp, DAG_ID, run_id, FIRST_TRY_OUTCOME, before)
    # Every wait says so in its task's log: the sync ones per retry (the hook's backoff), the
    # deferred ones once per outage (the shared poller hands its retries to each trigger).
    for task_id in ("sync", "sync_fails"):
        log = chaos_stack.task_log(DAG_ID, run_id, task_id, 1)
        assert "503" in log, f"{task_id} never saw the outage:\n{log[-3000:]}"
    for task_id in ("deferred", "deferred_fails"):
        log = chaos_stack.task_log(DAG_ID, run_id, task_id, 1)
        said = [line for line in log.splitlines() if "KFP API unavailable" in line]
        assert len(said) == 1 and "503" in said[0], f"{task_id}: {said}\n{log[-3000:]}"
        assert "KFP API answering again" in log, log[-3000:]
    assert len(runs_by_tag(chaos_kfp, DAG_ID, run_id)[tag_of(DAG_ID, "sync", run_id)]) == 1
