"""Where the detection latency of a ``triggerer_airflow.py`` run goes, from the run's own files.

``triggerer_airflow.py --workdir DIR`` keeps the Airflow task logs and the KFP stand-in's state.
For each deferred task of ``bench_triggerer_<kind>`` this reads:

* the run's exact end: ``finished_at`` of the run document in the stand-in's SQLite state;
* the trigger's fire time: the ``Trigger fired event`` line of the task's trigger log;
* the resumed process's start (its last ``Pre Execute`` group) and its last log line.

and prints, per kind, p50/p90/p99 of

* ``end->fired``: the trigger noticing the run ended (the poll wait, the request, the event);
* ``fired->resumed``: Airflow's handback (event written, scheduler, executor, process start);
* ``resumed``: the resumed task process itself (``execute_complete``);

and the bursts the triggers fired in (events less than ``--gap`` s apart) with the handback by a
task's place in its burst: a burst queues in the scheduler and the executor's slots.

Usage: ``python benchmarks/detection_split.py /tmp/bench-af-1000 [--kinds provider baseline]``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import NamedTuple


class Task(NamedTuple):
    run_end: float
    fired: float
    resumed: float
    last: float


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_ends(workdir: Path) -> dict[str, float]:
    db = sqlite3.connect(f"file:{workdir / 'state' / 'kfp.sqlite'}?mode=ro", uri=True)
    try:
        ends = {}
        for (text,) in db.execute("SELECT doc FROM docs WHERE kind = 'runs'"):
            doc = json.loads(text)
            if doc.get("finished_at"):
                ends[doc["run_id"]] = float(doc["finished_at"])
        return ends
    finally:
        db.close()


def _fired(task_dir: Path) -> tuple[float, str] | None:
    for log in task_dir.glob("attempt=1.log.trigger.*.log"):
        for line in log.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "Trigger fired event":
                result = str(event.get("result", ""))
                start = result.find("'run_id': '") + len("'run_id': '")
                return _seconds(event["timestamp"]), result[start: result.find("'", start)]
    return None


def tasks(workdir: Path, kind: str, ends: dict[str, float]) -> list[Task]:
    found = []
    for task_dir in workdir.glob(f"airflow/logs/dag_id=bench_triggerer_{kind}/*/task_id=wait/map_index=*"):
        fired = _fired(task_dir)
        lines = (task_dir / "attempt=1.log").read_text().splitlines()
        starts = [_seconds(json.loads(line)["timestamp"]) for line in lines if '"::group::Pre Execute"' in line]
        if fired is None or fired[1] not in ends or len(starts) < 2:
            continue  # not deferred, or the run ended before the measurement
        found.append(Task(ends[fired[1]], fired[0], starts[-1], _seconds(json.loads(lines[-1])["timestamp"])))
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5):6.2f}  p90 {percentile(values, 0.9):6.2f}  p99 {percentile(values, 0.99):6.2f} s"


def bursts(found: list[Task], gap: float) -> list[list[Task]]:
    ordered = sorted(found, key=lambda t: t.fired)
    groups: list[list[Task]] = []
    for task in ordered:
        if groups and task.fired - groups[-1][-1].fired < gap:
            groups[-1].append(task)
        else:
            groups.append([task])
    return groups


def report(workdir: Path, kind: str, gap: float, ends: dict[str, float]) -> None:
    found = tasks(workdir, kind, ends)
    if not found:
        print(f"{kind}: no resumed tasks under {workdir}")
        return
    print(f"{kind}: {len(found)} tasks")
    print(f"  end->fired      {spread([t.fired - t.run_end for t in found])}")
    print(f"  fired->resumed  {spread([t.resumed - t.fired for t in found])}")
    print(f"  resumed         {spread([t.last - t.resumed for t in found])}")
    print(f"  end->done       {spread([t.last - t.run_end for t in found])}")
    groups = bursts(found, gap)
    sizes = [len(g) for g in groups]
    print(f"  bursts (events < {gap:g} s apart): {len(groups)}, size p50 {percentile(sizes, 0.5)} "
          f"p90 {percentile(sizes, 0.9)} max {max(sizes)}")
    by_place: dict[int, list[float]] = defaultdict(list)
    for group in groups:
        for place, task in enumerate(group):
            by_place[min(place // 5, 4)].append(task.resumed - task.fired)
    for band, handbacks in sorted(by_place.items()):
        label = f"{band * 5 + 1}-{band * 5 + 5}" if band < 4 else "21+"
        print(f"    fired->resumed, place {label:>5} in its burst: n {len(handbacks):4d}  {spread(handbacks)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path, help="the --workdir of a triggerer_airflow.py run")
    parser.add_argument("--kinds", nargs="+", default=["provider", "baseline"])
    parser.add_argument("--gap", type=float, default=0.5, help="events closer than this are one burst (s)")
    args = parser.parse_args()
    ends = run_ends(args.workdir)
    for kind in args.kinds:
        report(args.workdir, kind, args.gap, ends)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
