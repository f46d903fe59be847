"""Scenario b: the KFP stand-in is stopped and started again (same state dir, same port) mid-run.

Runs that were executing come back FAILED ("the KFP stand-in server restarted ..."), as runs do
when a cluster loses their pods. What on-call should see, and what is asserted: the try that was
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
            assert "server restarted while this run was executing" in first_try, first_try[-3000:]
            # The interrupted step may be reported FAILED, or only the run (the stand-in does that):
            # either way the retry's log names why the run failed.
            assert (
                f"Previous KFP run {kfp_run.run_id} ended FAILED (failed steps: nap-step)" in second_try
                or f"Previous KFP run {kfp_run.run_id} ended FAILED (no step failed; run error: the KFP stand-in "
                "server restarted while this run was executing"
                in second_try
            ), second_try[-3000:]
            assert "asking KFP to retry only the failed steps" in second_try
            assert "Created KFP run" not in second_try
