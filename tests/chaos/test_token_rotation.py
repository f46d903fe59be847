"""Scenario e: the KFP bearer token is rotated every 5 s while sync and deferred tasks wait.

The stand-in accepts only the current content of its token file, and the ``kfp`` connection reads
that file (``token_path``), as a projected service-account token would be read. The file is
replaced atomically (write + rename), as the kubelet swaps a projected volume.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

import httpx
import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.chaos.conftest import FIRST_TRY_OUTCOME, RUN_TIMEOUT, check_outcome, explain, wait_until_waiting
from tests.fixtures.kfp_stand_in import KfpStandIn

pytestmark = pytest.mark.chaos

DAG_ID = "chaos_wait"
ROTATE_EVERY = 5.0
RUN_SECONDS = 40


def _rotate(stand_in: KfpStandIn) -> str:
    assert stand_in.token_file is not None
    new = f"rotated-{secrets.token_hex(8)}"
    tmp = stand_in.token_file.with_name(stand_in.token_file.name + ".tmp")
    tmp.write_text(new + "\n")
    os.replace(tmp, stand_in.token_file)
    stand_in.token = new
    return new


@pytest.mark.timeout(1200)
def test_token_rotated_every_five_seconds_during_the_wait(
    chaos_stack: AirflowStack, chaos_kfp: KfpStandIn, chaos_round: int
) -> None:
    first = chaos_kfp.token
    run_id = chaos_stack.trigger_dag(DAG_ID, conf={"seconds": RUN_SECONDS})
    before = wait_until_waiting(chaos_stack, chaos_kfp, DAG_ID, run_id)
    started = time.monotonic()
    stop = threading.Event()
    rotations: list[float] = []

    def rotate() -> None:
        while not stop.wait(ROTATE_EVERY):
            _rotate(chaos_kfp)
            rotations.append(time.monotonic() - started)

    rotator = threading.Thread(target=rotate, name="token-rotator", daemon=True)
    rotator.start()
    try:
        state = chaos_stack.wait_dag_run(DAG_ID, run_id, RUN_TIMEOUT)
    finally:
        stop.set()
        rotator.join(30)
    assert not rotator.is_alive()
    assert state == "failed", explain(chaos_stack, DAG_ID, run_id)
    # The runs were RUNNING when rotation began and took RUN_SECONDS: the tasks polled through
    # several rotations, so they must have used tokens they had not seen at submit time.
    assert len([t for t in rotations if t < RUN_SECONDS - ROTATE_EVERY]) >= RUN_SECONDS // ROTATE_EVERY - 2, (
        rotations
    )
    with httpx.Client(base_url=chaos_kfp.host, timeout=10) as http:
        refused = http.get("/apis/v2beta1/runs", headers={"authorization": f"Bearer {first}"})
    assert refused.status_code == 401

    check_outcome(chaos_stack, chaos_kfp, DAG_ID, run_id, FIRST_TRY_OUTCOME, before)
    for task_id in ("sync", "deferred", "sync_fails", "deferred_fails"):
        assert "HTTP 401" not in chaos_stack.task_log(DAG_ID, run_id, task_id, 1)
