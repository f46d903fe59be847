"""The chaos suite's results table: rounds become columns, scenarios keep the issue's order."""

from __future__ import annotations

import pytest

from tests.chaos.report import ChaosReport


def _report(nodeid: str, when: str, outcome: str, duration: float) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("x", 0, "x"), {}, outcome, None, when, duration=duration)


def test_rounds_are_columns_phases_add_up_and_a_failed_call_shows():
    report = ChaosReport()
    crash = "tests/chaos/test_task_crash.py::test_task_killed[round{}-sync-before_create]"
    outage = "tests/chaos/test_api_outage.py::test_outage[round{}]"
    for r in (1, 2):
        for nodeid in (crash.format(r), outage.format(r)):
            report.add(_report(nodeid, "setup", "passed", 1.0))
            report.add(_report(nodeid, "call", "failed" if (r, nodeid) == (2, outage.format(2)) else "passed", 20.0))
            report.add(_report(nodeid, "teardown", "passed", 0.4))
    table = report.render("pytest tests/chaos --chaos-repeat 2")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == "| Scenario | Test | Round 1 | Round 2 |"
    assert rows[1] == "| a. 60 s KFP API outage mid-wait | `test_api_outage` | pass 21 s | FAIL 21 s |"
    assert rows[2] == "| d. task SIGKILLed | `test_task_crash[sync-before_create]` | pass 21 s | pass 21 s |"
    assert "3 of 4 passed" in table and "`pytest tests/chaos --chaos-repeat 2`" in table


def test_a_single_round_without_repeat_is_round_one():
    report = ChaosReport()
    report.add(_report("tests/chaos/test_watch_drop.py::test_watch_dropped", "call", "passed", 5.0))
    assert "| f. watch dropped mid-rollout | `test_watch_drop` | pass 5 s |" in report.render("pytest tests/chaos")


def test_recorded_figures_follow_the_table_in_scenario_and_round_order():
    report = ChaosReport()
    report.add(_report("tests/chaos/test_triggerer_ha.py::test_survivor[round1]", "call", "passed", 300.0))
    report.record("tests/chaos/test_triggerer_ha.py", 2, {"kill_to_all_triggers_on_survivor_s": 19.5})
    report.record("/x/tests/chaos/test_triggerer_ha.py", 1, {"kill_to_all_triggers_on_survivor_s": 17.0})
    lines = report.render("pytest tests/chaos").splitlines()
    assert "| g. one of two triggerers killed, 50 KFP + 25 rollouts deferred | `test_triggerer_ha` | pass 300 s |" in lines
    tail = lines[lines.index("Measured by the scenarios:") + 2 :]
    assert tail == [
        "- g. one of two triggerers killed, 50 KFP + 25 rollouts deferred, round 1: kill_to_all_triggers_on_survivor_s 17.0",
        "- g. one of two triggerers killed, 50 KFP + 25 rollouts deferred, round 2: kill_to_all_triggers_on_survivor_s 19.5",
    ]
