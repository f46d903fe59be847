"""The chaos results table, written by the suite itself (``--chaos-write-docs``) into docs/chaos.md.

One row per scenario (and parameter set), one column per round: outcome and seconds, setup and
teardown included. The section names the machine, date, commit and the exact command. Figures a
scenario measures (``ChaosReport.record``, e.g. scenario g's takeover times) follow the table, one
line per round.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.report import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "chaos.md"
SECTION = "chaos_results"
# The scenario letters, by test file.
SCENARIOS = {
    "test_api_outage.py": "a. 60 s KFP API outage mid-wait",
    "test_kfp_restart.py": "b. KFP restarted mid-run",
    "test_triggerer_kill.py": "c. triggerer killed, 50 deferred",
    "test_task_crash.py": "d. task SIGKILLed",
    "test_token_rotation.py": "e. token rotated every 5 s",
    "test_watch_drop.py": "f. watch dropped mid-rollout",
    "test_triggerer_ha.py": "g. one of two triggerers killed, 50 KFP + 25 rollouts deferred",
}
_ROUND = re.compile(r"round(\d+)-?")


@dataclass
class _Cell:
    seconds: float = 0.0
    outcome: str = "pass"


@dataclass
class ChaosReport:
    started: float = field(default_factory=time.time)
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])
    cells: dict[tuple[str, str], dict[int, _Cell]] = field(default_factory=dict)
    figures: list[tuple[str, int, dict[str, object]]] = field(default_factory=list)

    def record(self, file: str, round_no: int, figures: dict[str, object]) -> None:
        """Keep what a scenario measured (shown under the table, in the order recorded)."""
        self.figures.append((Path(file).name, round_no, dict(figures)))

    def add(self, report: pytest.TestReport) -> None:
        path, _, test = report.nodeid.partition("::")
        params = test.partition("[")[2].rstrip("]")
        match = _ROUND.search(params)
        round_no = int(match.group(1)) if match else 1
        variant = _ROUND.sub("", params)
        cell = self.cells.setdefault((Path(path).name, variant), {}).setdefault(round_no, _Cell())
        cell.seconds += report.duration
        if report.failed:
            cell.outcome = "error" if report.when != "call" else "FAIL"
        elif report.skipped and report.when == "setup":
            cell.outcome = "skipped"

    def render(self, command: str) -> str:
        rounds = max((r for cells in self.cells.values() for r in cells), default=1)
        counts = [c.outcome for cells in self.cells.values() for c in cells.values()]
        minutes = (time.time() - self.started) / 60
        lines = [
            f"Measured {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(self.started))} on {machine_facts()}; "
            f"Airflow {_airflow_version()}, PostgreSQL + LocalExecutor; commit {_commit()}.",
            f"Command: `{command}`. {counts.count('pass')} of {len(counts)} passed in {minutes:.0f} min; "
            f"1-minute load average {self.load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
            "(seconds per test include setup; the first test also starts the Airflow stack).",
            "",
            "| Scenario | Test | " + " | ".join(f"Round {r}" for r in range(1, rounds + 1)) + " |",
            "|---|---|" + "---|" * rounds,
        ]
        order = list(SCENARIOS)
        for (file, variant), cells in sorted(self.cells.items(), key=lambda kv: (_rank(order, kv[0][0]), kv[0][1])):
            name = f"`{file.removesuffix('.py')}" + (f"[{variant}]`" if variant else "`")
            row = [SCENARIOS.get(file, "?"), name]
            for r in range(1, rounds + 1):
                cell = cells.get(r)
                row.append(f"{cell.outcome} {cell.seconds:.0f} s" if cell else "not run")
            lines.append("| " + " | ".join(row) + " |")
        if self.figures:
            lines += ["", "Measured by the scenarios:", ""]
            for file, round_no, figures in sorted(self.figures, key=lambda f: (_rank(order, f[0]), f[1])):
                values = ", ".join(f"{key} {value}" for key, value in figures.items())
                lines.append(f"- {SCENARIOS.get(file, file)}, round {round_no}: {values}")
        return "\n".join(lines)

    def write(self, command: str) -> None:
        write_section(DOCS, SECTION, self.render(command), preamble="# Chaos suite\n")


def _rank(order: list[str], file: str) -> int:
    return order.index(file) if file in order else len(order)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "") if out.returncode == 0 else "unknown"


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")
