"""Chaos suite: scripted faults against a real Airflow (scheduler, triggerer, api-server) and the stand-ins.

Run with ``make chaos`` (``pytest -p no:xdist tests/chaos``); ``--chaos-repeat N`` runs every
scenario N times, round after round, so "passes three times in a row" is one command.

Everything here is private to the suite: its own AirflowStack with two triggerers (Airflow's
triggerer HA: a dead triggerer's triggers move to the live one), its own KFP stand-ins (one for the
session, one the restart scenario stops and starts, one with synthetic runs for the HA scenario),
because the scenarios kill things. The
``kfp`` connections come from ``AIRFLOW_CONN_*`` variables that name the stand-ins' token files,
so a rotated token is read by every Airflow process without touching the database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

from kfp_bridge.local.airflow import AirflowStack
from kfp_bridge.local.launch import free_port
from kfp_bridge.utils.run_tags import run_tag
from tests.chaos.pipelines import compile_nap
from tests.chaos.report import ChaosReport
from tests.fixtures import airflow_checks
from tests.fixtures.kfp_stand_in import KfpStandIn, start_kfp_stand_in
from tests.fixtures.kube_stand_in import KubeStandIn, start_kube_stand_in

DAGS = Path(__file__).parent / "dags"
CONN_ID = "kfp_chaos"
RESTART_CONN_ID = "kfp_chaos_restart"
HA_CONN_ID = "kfp_chaos_ha"
KUBE_CONN_ID = "kube_chaos"
STARTUP_TIMEOUT = 300.0
PARSE_TIMEOUT = 180.0
# Airflow's default is 30 s; lower so scenario g (a triggerer SIGKILLed) hands over sooner. Not
# lower still: on two busy cores a live triggerer's 2 s heartbeat can lag several seconds, and a
# triggerer wrongly declared dead has its triggers moved while it still runs them.
TRIGGERER_HEALTH_CHECK_THRESHOLD = 15
MODEL_LOAD_TIMEOUT = 1800
# Two cores shared with other test sessions: waits are generous, but every one of them is bounded.
RUN_TIMEOUT = 420.0
_STATE: dict[str, Path] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: scripted faults against real Airflow services and the stand-ins (slow)"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-repeat",
        type=int,
        default=1,
        help="run every chaos scenario this many times, all scenarios per round (acceptance: 3)",
    )
    parser.addoption(
        "--chaos-write-docs",
        action="store_true",
        help="write this session's results table into docs/chaos.md (section chaos_results)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    repeat = metafunc.config.getoption("--chaos-repeat")
    if repeat > 1 and "chaos_round" in metafunc.fixturenames:
        metafunc.parametrize(
            "chaos_round", range(1, repeat + 1), ids=[f"round{i}" for i in range(1, repeat + 1)]
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Round 1 of every scenario, then round 2 ...: "three times in a row" for the whole suite."""

    def round_of(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("chaos_round", 1) if callspec else 1

    items.sort(key=round_of)  # stable: file order is kept inside a round


@pytest.fixture
def chaos_round() -> int:
    """Overridden by parametrization under ``--chaos-repeat``; every scenario requests it."""
    return 1


_REPORT = ChaosReport()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _REPORT.add(report)


@pytest.fixture
def chaos_figures(request: pytest.FixtureRequest, chaos_round: int) -> Callable[[dict[str, Any]], None]:
    """``chaos_figures({...})`` keeps what this scenario measured for the results section."""
    return partial(_REPORT.record, str(request.path), chaos_round)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if "root" in _STATE:
        terminalreporter.write_line(f"chaos suite state and logs (Airflow, stand-ins): {_STATE['root']}")
    if not _REPORT.cells:
        return
    command = " ".join(["pytest", *config.invocation_params.args])
    terminalreporter.write_line(_REPORT.render(command))
    if config.getoption("--chaos-write-docs"):
        _REPORT.write(command)
        terminalreporter.write_line("results table written to docs/chaos.md")


@dataclass
class ChaosEnv:
    root: Path
    token: str
    restart_port: int
    restart_state: Path
    kube_state: Path
    ha_port: int
    ha_state: Path
    ingress_port: int


@pytest.fixture(scope="session")
def chaos_env(tmp_path_factory: pytest.TempPathFactory) -> ChaosEnv:
    # Outside pytest's basetemp: concurrent pytest sessions prune old basetemps, and a failed
    # scenario's Airflow task logs, trigger logs and stand-in logs are what explains it.
    root = Path(tempfile.mkdtemp(prefix="kfp-bridge-chaos-"))
    _STATE["root"] = root
    return ChaosEnv(
        root=root,
        token=f"chaos-{secrets.token_hex(8)}",
        restart_port=free_port(),
        restart_state=root / "kfp-restart",
        kube_state=root / "kube",
        ha_port=free_port(),
        ha_state=root / "kfp-ha",
        ingress_port=free_port(),
    )


@pytest.fixture(scope="session")
def chaos_kfp(chaos_env: ChaosEnv) -> Iterator[KfpStandIn]:
    with start_kfp_stand_in(chaos_env.root / "kfp", token=chaos_env.token, admin=True) as stand_in:
        yield stand_in


def _conn(host: str, token_file: Path) -> str:
    return json.dumps({"conn_type": "kfp", "host": host, "extra": {"token_path": str(token_file)}})


@pytest.fixture(scope="session")
def chaos_stack(
    tmp_path_factory: pytest.TempPathFactory, chaos_env: ChaosEnv, chaos_kfp: KfpStandIn
) -> Iterator[AirflowStack]:
    # The restart stand-in starts later, inside its test, on this port and this token file
    # (start_kfp_stand_in names it <state dir>.token next to the state dir).
    restart_token = chaos_env.restart_state.parent / f"{chaos_env.restart_state.name}.token"
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": _conn(chaos_kfp.host, chaos_kfp.token_file),
        f"AIRFLOW_CONN_{RESTART_CONN_ID.upper()}": _conn(
            f"http://127.0.0.1:{chaos_env.restart_port}", restart_token
        ),
        # Scenario g's stand-in (synthetic runs) starts in its module, like the restart one.
        f"AIRFLOW_CONN_{HA_CONN_ID.upper()}": _conn(
            f"http://127.0.0.1:{chaos_env.ha_port}",
            chaos_env.ha_state.parent / f"{chaos_env.ha_state.name}.token",
        ),
        # The kube stand-in starts in its own test; start_kube_stand_in writes <state dir>/kubeconfig.
        f"AIRFLOW_CONN_{KUBE_CONN_ID.upper()}": json.dumps(
            {
                "conn_type": "kubernetes",
                "extra": {
                    "kube_config_path": str(chaos_env.kube_state / "kubeconfig"),
                    # Smoke tests reach KServe's host-name URLs through the stand-in's ingress,
                    # on a port fixed now because the connection is set before the stand-in starts.
                    "ingress_address": f"http://127.0.0.1:{chaos_env.ingress_port}",
                },
            }
        ),
        # Triggers of a dead triggerer are handed to a live one after this long (default 30 s).
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_CHECK_THRESHOLD),
    }
    root = chaos_env.root / "airflow"
    stack = AirflowStack(
        home=root / "home",
        dags_folder=root / "dags",
        env=env,
        cache_dir=tmp_path_factory.getbasetemp() / "airflow-db-cache",
        triggerers=2,  # "triggerer" and "triggerer-2"
    )
    # The api-server answers slowly on two busy cores; a 30 s read timeout failed a poll once.
    stack.request_timeout = 120.0
    with stack:
        stack.wait_ready(STARTUP_TIMEOUT)
        # Not primed: the first tasks race to create the experiment and pipeline version, as on a
        # fresh cluster (the stand-in's rollback once made that race answer 404s; docs/chaos.md).
        compile_nap(stack.dags_folder / "chaos_pipelines")
        for name in ("chaos_crash.py", "chaos_fleet.py", "chaos_wait.py", "chaos_rollout.py", "chaos_ha.py"):
            stack.add_dag_file(DAGS / name)
        for dag_id in (
            "chaos_crash_sync",
            "chaos_crash_deferred",
            "chaos_fleet",
            "chaos_wait",
            "chaos_restart",
            "chaos_rollout",
            "chaos_ha_rollouts",
            "chaos_ha_kfp",
        ):
            stack.wait_dag_parsed(dag_id, PARSE_TIMEOUT)
        yield stack
    leftovers = [p for p in stack.pids() if psutil.pid_exists(p)]
    assert leftovers == [], f"chaos stack left processes behind: {leftovers}"


@pytest.fixture(scope="module")
def chaos_kube(chaos_env: ChaosEnv) -> Iterator[KubeStandIn]:
    """The kube stand-in (and its model servers) for one scenario module; its kubeconfig is where
    the ``kube_chaos`` connection looks, whichever module started it."""
    # A canary model the test holds on a FIFO must not time out loading (the stand-in's default is
    # 180 s, like a readiness deadline): scenario g holds 25 of them while 50 more tasks defer.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KFP_BRIDGE_MODEL_LOAD_TIMEOUT", str(MODEL_LOAD_TIMEOUT))
        with start_kube_stand_in(
            chaos_env.kube_state, token=secrets.token_hex(16), env={"INGRESS_PORT": chaos_env.ingress_port}
        ) as stand_in:
            yield stand_in


# ----- helpers shared by the scenarios ------------------------------------------------------------


def runs_by_tag(stand_in: KfpStandIn, dag_id: str, run_id: str) -> dict[str, list[Any]]:
    """Every KFP run one Airflow dag run created, grouped by its tag (one list entry per duplicate)."""
    out: dict[str, list[Any]] = {}
    for run in airflow_checks.kfp_runs(stand_in, dag_id=dag_id, run_id=run_id):
        out.setdefault(run.description, []).append(run)
    return out


def tag_of(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    return run_tag(dag_id, task_id, run_id, map_index)


def poll(
    check: Callable[[], Any], timeout: float, what: Callable[[], str] | str, interval: float = 0.2
) -> Any:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s: {what() if callable(what) else what}")
        time.sleep(interval)


def task_process(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, timeout: float = RUN_TIMEOUT
) -> psutil.Process:
    """The running task's own process (``airflow worker -- <ti id>``), checked by its title."""

    def find() -> psutil.Process | None:
        ti = stack.task_instance(dag_id, run_id, task_id)
        if ti["state"] != "running" or not ti.get("pid"):
            return None
        try:
            proc = psutil.Process(ti["pid"])
            return proc if f"airflow worker -- {ti['id']}" in " ".join(proc.cmdline()) else None
        except psutil.Error:
            return None

    return poll(find, timeout, f"task {dag_id}.{task_id} in {run_id} never ran", interval=0.1)


def kill(proc: psutil.Process, sig: int = signal.SIGKILL) -> None:
    os.kill(proc.pid, sig)


def request_count(stand_in: KfpStandIn, label: str) -> int:
    return stand_in.stats()["requests"].get(label, 0)


def tries(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> list[tuple[int, str]]:
    return sorted((t["try_number"], t["state"]) for t in stack.task_tries(dag_id, run_id, task_id, map_index))


def state_mismatch_tries(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, map_index: int | None = None
) -> set[int]:
    """Tries the scheduler failed with "state mismatch": Airflow 3.3's resume-after-defer race
    (apache/airflow#71580, #72716; fix proposed in #71579). A trigger that fires within seconds of
    the deferral can resume the task before the scheduler drains the deferring process's exit
    event, and that stale event then fails the resumed, running try. No operator can prevent it;
    a retry recovers from it, and the scenarios allow exactly that and nothing else. The same event
    marks a try whose task process died before it could report (on a saturated machine: its
    supervisor lost the api-server); that try never ran the operator either.

    :param map_index: only this mapped task instance's tries (otherwise any map index's)."""
    params: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "event": "state mismatch",
        "limit": 100,
    }
    if map_index is not None:
        params["map_index"] = map_index
    response = stack.get("/api/v2/eventLogs", params=params)
    response.raise_for_status()
    entries = response.json()["event_logs"]
    return {e["try_number"] for e in entries if map_index is None or e.get("map_index") == map_index}


# Shorter than the operator tests' messages: a chaos dag run has up to 50 tasks, several tries each.
explain = partial(airflow_checks.explain, line_chars=800, lines_per_try=4, max_lines=200)


WAIT_TASKS = ("sync", "deferred", "sync_fails", "deferred_fails")
# The Airflow state of each of them while it waits: the sync ones poll in their own process.
WAITING = {task_id: "deferred" if task_id.startswith("deferred") else "running" for task_id in WAIT_TASKS}
# A fault every task must ride out in its first try: each reports its own run's real outcome.
FIRST_TRY_OUTCOME = {
    "sync": ([(1, "success")], "SUCCEEDED"),
    "deferred": ([(1, "success")], "SUCCEEDED"),
    "sync_fails": ([(1, "failed")], "FAILED"),
    "deferred_fails": ([(1, "failed")], "FAILED"),
}


def wait_until_waiting(stack: AirflowStack, stand_in: KfpStandIn, dag_id: str, run_id: str) -> dict[str, Any]:
    """Wait until the four tasks of chaos_wait/chaos_restart wait on four RUNNING runs; task -> run."""
    for task_id, state in WAITING.items():
        assert stack.wait_task_state(dag_id, run_id, task_id, (state,), RUN_TIMEOUT) == state

    def running() -> dict[str, Any] | None:
        runs = runs_by_tag(stand_in, dag_id, run_id)
        found = {t: runs.get(tag_of(dag_id, t, run_id), []) for t in WAIT_TASKS}
        if all(len(r) == 1 and r[0].state == "RUNNING" for r in found.values()):
            return {t: r[0] for t, r in found.items()}
        return None

    return poll(running, RUN_TIMEOUT, f"the four runs of {dag_id}/{run_id} never all ran", 0.5)


def assert_still_waiting(stack: AirflowStack, dag_id: str, run_id: str) -> None:
    """Every task of chaos_wait/chaos_restart still waits: none finished, failed or retried."""
    states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(dag_id, run_id)}
    assert states == WAITING, states


def check_outcome(
    stack: AirflowStack,
    stand_in: KfpStandIn,
    dag_id: str,
    run_id: str,
    expected: dict[str, tuple[list[tuple[int, str]], str]],
    runs_before: dict[str, Any],
) -> None:
    """Each task's tries and its one KFP run's final state; the run is the one it started with."""
    runs = runs_by_tag(stand_in, dag_id, run_id)
    assert sorted(runs) == sorted(tag_of(dag_id, t, run_id) for t in expected), runs
    for task_id, (want_tries, want_state) in expected.items():
        (kfp_run,) = runs[tag_of(dag_id, task_id, run_id)]  # 0 duplicates
        assert kfp_run.run_id == runs_before[task_id].run_id
        assert kfp_run.state == want_state, (task_id, kfp_run.state)
        assert tries(stack, dag_id, run_id, task_id) == want_tries, (task_id, explain(stack, dag_id, run_id))
        last = stack.task_log(dag_id, run_id, task_id, want_tries[-1][0])
        if want_state == "SUCCEEDED":
            assert stack.xcom(dag_id, run_id, task_id)["run_id"] == kfp_run.run_id
        else:
            # Failed for the right reason, naming the step, not because of the fault. The step's own
            # exception text is only in its pod's log on KFP 2.17 (no `error` in task details,
            # fidelity.md K3); the chaos connection has no kubernetes_conn_id to read it, so the
            # message names the step and says where its log is. (Was: the exception text, which
            # only the old, kinder stand-in put in the task details.)
            assert "step 'nap-step' failed" in last and "terminated by Airflow" not in last, last[-3000:]
