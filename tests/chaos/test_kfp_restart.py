"""Scenario b: the KFP stand-in is stopped and started again (same state dir, same port) mid-run.

Runs that were executing come back FAILED, as runs do when a cluster loses their pods (with an
empty ``Run.error``, as KFP 2.17 reports every run). What on-call should see, and what is asserted: the try that was
waiting fails, saying why (it never reports success for a failed run); the task's retry finds the
same run by its saved id and asks KFP to retry only the failed step, so a run that can succeed
ends SUCCEEDED with no second run, and a run whose step really fails still ends failed.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.chaos.conftest import (
    RUN_TIMEOUT,
    ChaosEnv,
    assert_still_waiting,
    check_outcome,
    explain,
    wait_until_waiting,
)
from tests.fixtures.kfp_stand_in import start_kfp_stand_in

pytestmark = pytest.mark.chaos

DAG_ID = "chaos_restart"
RUN_SECONDS = 20
DOWN_SECONDS = 5


@pytest.mark.timeout(1200)
def test_kfp_restart_mid_run_fails_the_try_and_the_retry_resumes_the_same_run(
    chaos_stack: AirflowStack, chaos_env: ChaosEnv, chaos_round: int
) -> None:
    state_dir, port = chaos_env.restart_state, chaos_env.restart_port
    with ExitStack() as stack:
        first = stack.enter_context(start_kfp_stand_in(state_dir, token=chaos_env.token, port=port))
        run_id = chaos_stack.trigger_dag(DAG_ID, conf={"seconds": RUN_SECONDS})
        before = wait_until_waiting(chaos_stack, first, DAG_ID, run_id)
        first.stop()
        # While it is down every poll is refused; nobody may fail or finish because of that alone.
        time.sleep(DOWN_SECONDS)
        assert_still_waiting(chaos_stack, DAG_ID, run_id)
        second = stack.enter_context(start_kfp_stand_in(state_dir, token=chaos_env.token, port=port))
        assert chaos_stack.wait_dag_run(DAG_ID, run_id, RUN_TIMEOUT) == "failed", explain(
            chaos_stack, DAG_ID, run_id
        )

        check_outcome(
            chaos_stack,
            second,
            DAG_ID,
            run_id,
            {
                "sync": ([(1, "failed"), (2, "success")], "SUCCEEDED"),
                "deferred": ([(1, "failed"), (2, "success")], "SUCCEEDED"),
                "sync_fails": ([(1, "failed"), (2, "failed")], "FAILED"),
                "deferred_fails": ([(1, "failed"), (2, "failed")], "FAILED"),
            },
            before,
        )
        for task_id, kfp_run in before.items():
            first_try = chaos_stack.task_log(DAG_ID, run_id, task_id, 1)
            second_try = chaos_stack.task_log(DAG_ID, run_id, task_id, 2)
            # KFP 2.17 leaves Run.error empty (fidelity.md K3): the first try says the run failed and
            # what KFP showed of its steps; the retry names the previous run's failure either way.
            # (Was: the stand-in's own "server restarted" run error, text only the kinder stand-in sent.)
            assert f"KFP run {kfp_run.run_id} ended FAILED." in first_try, first_try[-3000:]
            assert (
                f"Previous KFP run {kfp_run.run_id} ended FAILED (failed steps: nap-step)" in second_try
                or f"Previous KFP run {kfp_run.run_id} ended FAILED (no step failed; run error: none reported)"
                in second_try
            ), second_try[-3000:]
            assert "asking KFP to retry only the failed steps" in second_try
            assert "Created KFP run" not in second_try
