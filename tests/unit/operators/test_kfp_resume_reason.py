"""What the retry of a failed run tells on-call about why the previous run failed.

Found by the chaos suite (tests/chaos/test_kfp_restart.py): after a KFP restart the interrupted
run is FAILED with a run-level error and no failed step, and the retry logged only
"failed steps: none reported", hiding the cause.
"""

from __future__ import annotations

import logging

import pytest

from kfp_bridge.operators import kfp as kfp_operator
from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.utils.run_tags import task_identity


class RetryingHook:
    """Records retry_and_confirm, which answers with the run already RUNNING again."""

    def __init__(self) -> None:
        self.retried: list[str] = []

    def retry_and_confirm(self, run_id: str) -> dict:
        self.retried.append(run_id)
        return {"run_id": run_id, "state": "RUNNING"}

    def pipeline_spec_of(self, run: dict) -> None:
        return None


def _run(error: str | None, steps: list[tuple[str, str, str | None]]) -> dict:
    return {
        "run_id": "r1",
        "state": "FAILED",
        "error": {"code": 2, "message": error} if error else None,
        "run_details": {
            "task_details": [
                {"display_name": name, "state": state, "error": {"message": err} if err else None}
                for name, state, err in steps
            ]
        },
    }


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (
            _run("the KFP server restarted while this run was executing", [("nap-step", "SKIPPED", None)]),
            "Previous KFP run r1 ended FAILED (no step failed; run error: the KFP server restarted while this "
            "run was executing); asking KFP to retry only the failed steps",
        ),
        (
            _run("boom", [("prepare", "SUCCEEDED", None), ("check-flag", "FAILED", "flag present")]),
            "Previous KFP run r1 ended FAILED (failed steps: check-flag); asking KFP to retry only the failed steps",
        ),
        (
            _run(None, []),
            "Previous KFP run r1 ended FAILED (no step failed; run error: none reported); "
            "asking KFP to retry only the failed steps",
        ),
    ],
)
def test_retry_names_why_the_previous_run_failed(run, expected, caplog, capfd, monkeypatch):
    monkeypatch.setattr(kfp_operator.time, "sleep", lambda seconds: None)
    operator = KfpRunOperator(task_id="t", pipeline="p.yaml")
    hook = RetryingHook()
    with caplog.at_level(logging.INFO):
        resumed = operator._resume(hook, run, context={}, prepared={}, identity=task_identity("d", "t", "r", None, "i"))
    assert hook.retried == ["r1"]
    assert resumed["state"] == "RUNNING"
    out = capfd.readouterr()
    assert expected in caplog.text + out.out + out.err
