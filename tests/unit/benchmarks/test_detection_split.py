"""benchmarks/detection_split.py reads a triggerer_airflow.py workdir: the splits and the bursts."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import detection_split

BASE = 1_800_000_000.0


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(BASE + seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _line(seconds: float, event: str, **extra) -> str:
    return json.dumps({"timestamp": _stamp(seconds), "event": event, **extra})


def _workdir(tmp_path: Path, tasks: list[tuple[str, float, float, float, float]]) -> Path:
    """tasks: (run_id, run end, fired, resumed, last line), seconds after BASE."""
    (tmp_path / "state").mkdir()
    db = sqlite3.connect(tmp_path / "state" / "kfp.sqlite")
    db.execute("CREATE TABLE docs (kind TEXT, id TEXT, doc TEXT)")
    for index, (run_id, end, fired, resumed, last) in enumerate(tasks):
        db.execute("INSERT INTO docs VALUES ('runs', ?, ?)", (run_id, json.dumps({"run_id": run_id, "finished_at": BASE + end})))
        task = tmp_path / f"airflow/logs/dag_id=bench_triggerer_provider/run_id=x/task_id=wait/map_index={index}"
        task.mkdir(parents=True)
        (task / "attempt=1.log").write_text("\n".join([
            _line(0.0, "::group::Pre Execute"), _line(0.5, "Pausing task as DEFERRED. "),
            _line(resumed, "::group::Pre Execute"), _line(last, "::endgroup::"),
        ]))
        (task / "attempt=1.log.trigger.7.log").write_text(_line(
            fired, "Trigger fired event", result=f"TriggerEvent<{{'status': 'success', 'run_id': '{run_id}'}}>"))
    db.commit()
    db.close()
    return tmp_path


def test_each_task_is_split_at_the_trigger_event_and_the_resumed_process(tmp_path):
    workdir = _workdir(tmp_path, [("a", 100.0, 104.0, 105.5, 106.5), ("b", 200.0, 209.0, 213.0, 214.0)])
    found = sorted(detection_split.tasks(workdir, "provider", detection_split.run_ends(workdir)))
    assert [(t.fired - t.run_end, t.resumed - t.fired, t.last - t.resumed) for t in found] == [
        (4.0, 1.5, 1.0), (9.0, 4.0, 1.0)]


def test_events_closer_than_the_gap_form_one_burst():
    def task(fired: float) -> detection_split.Task:
        return detection_split.Task(0.0, fired, fired + 1, fired + 2)

    groups = detection_split.bursts([task(10.0), task(10.3), task(10.6), task(12.0)], gap=0.5)
    assert [len(g) for g in groups] == [3, 1]
