"""A real Airflow 3.3 stack on PostgreSQL: parse, trigger, defer through the triggerer, clear, auth, stop."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from kfp_bridge.local.airflow import SERVICES, AirflowStack
from kfp_bridge.local.airflow_api import AirflowApiError

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

DAG_FILE = Path(__file__).parent / "dags" / "stack_smoke.py"
DAG_ID = "kfp_bridge_stack_smoke"
RUN_TIMEOUT = 180


@pytest.fixture(scope="module")
def smoke_dag(airflow_stack: AirflowStack) -> str:
    airflow_stack.add_dag_file(DAG_FILE)
    airflow_stack.wait_dag_parsed(DAG_ID, 120, file_name=DAG_FILE.name)
    return DAG_ID


@pytest.fixture(scope="module")
def smoke_run(airflow_stack: AirflowStack, smoke_dag: str) -> str:
    """One successful run shared by the read-only tests below."""
    run_id = airflow_stack.trigger_dag(smoke_dag, conf={"origin": "test_stack"})
    # Seen while it lasts (5 s): the task handed its wait to the triggerer.
    assert airflow_stack.wait_task_state(smoke_dag, run_id, "wait", ("deferred",), RUN_TIMEOUT) == "deferred"
    assert airflow_stack.wait_dag_run(smoke_dag, run_id, RUN_TIMEOUT) == "success"
    return run_id


def test_every_service_is_healthy_with_the_bridge_provider_loaded(airflow_stack: AirflowStack) -> None:
    health = airflow_stack.health()
    assert {
        name: health[name]["status"] for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    } == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    assert set(airflow_stack.processes) == set(SERVICES)
    assert all(proc.poll() is None for proc in airflow_stack.processes.values())
    # The apache_airflow_provider entry point of this package is read by the running api-server.
    providers = airflow_stack.get("/api/v2/providers").json()["providers"]
    assert "kfp-bridge" in {p["package_name"] for p in providers}


def test_the_stack_runs_on_its_own_postgresql(airflow_stack: AirflowStack, smoke_dag: str) -> None:
    """Every service talks to this stack's private server (not SQLite), readable through sql()."""
    assert airflow_stack.postgres is not None
    assert airflow_stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == airflow_stack.postgres.url
    assert airflow_stack.postgres.process.pid in airflow_stack.pids()
    assert airflow_stack.sql("SELECT version()")[0][0].startswith("PostgreSQL ")
    # A literal % and a ? placeholder in one statement (psycopg2 needs the % doubled).
    rows = airflow_stack.sql("SELECT dag_id FROM dag WHERE dag_id LIKE 'kfp_bridge_stack_%' AND dag_id = ?", (smoke_dag,))
    assert rows == [(smoke_dag,)]
    assert smoke_dag.encode() in airflow_stack.database_dump()
    assert not (airflow_stack.home / "airflow.db").exists()


def test_dag_is_listed_without_import_errors(airflow_stack: AirflowStack, smoke_dag: str) -> None:
    listed = {dag["dag_id"]: dag for dag in airflow_stack.list_dags()}
    assert smoke_dag in listed
    assert listed[smoke_dag]["is_paused"] is False
    assert [e for e in airflow_stack.import_errors() if e["filename"].endswith(DAG_FILE.name)] == []


def test_triggered_run_succeeds_and_resumes_after_the_triggerer(
    airflow_stack: AirflowStack, smoke_run: str
) -> None:
    states = {ti["task_id"]: ti["state"] for ti in airflow_stack.task_instances(DAG_ID, smoke_run)}
    assert states == {"hello": "success", "wait": "success"}
    assert airflow_stack.dag_run(DAG_ID, smoke_run)["conf"] == {"origin": "test_stack"}
    assert airflow_stack.xcom(DAG_ID, smoke_run, "hello") == "hello-from-bash"
    # execute_complete ran on a worker with the trigger's event.
    assert airflow_stack.xcom(DAG_ID, smoke_run, "wait").startswith("resumed after trigger event 20")
    assert "hello-from-bash" in airflow_stack.task_log(DAG_ID, smoke_run, "hello", 1)
    wait_log = airflow_stack.task_log(DAG_ID, smoke_run, "wait", 1)
    assert "Pausing task as DEFERRED" in wait_log
    assert "Trigger fired event" in wait_log  # written by the triggerer, served by the api-server


def test_clear_reruns_only_the_cleared_task(airflow_stack: AirflowStack, smoke_run: str) -> None:
    cleared = airflow_stack.clear_task(DAG_ID, smoke_run, ["hello"])
    assert [ti["task_id"] for ti in cleared] == ["hello"]
    assert airflow_stack.wait_dag_run(DAG_ID, smoke_run, RUN_TIMEOUT) == "success"
    assert airflow_stack.wait_task_state(DAG_ID, smoke_run, "hello", ("success",), RUN_TIMEOUT) == "success"
    assert airflow_stack.task_instance(DAG_ID, smoke_run, "hello")["try_number"] == 2
    assert airflow_stack.task_instance(DAG_ID, smoke_run, "wait")["try_number"] == 1
    assert [t["try_number"] for t in airflow_stack.task_tries(DAG_ID, smoke_run, "hello")] == [1, 2]
    assert "hello-from-bash" in airflow_stack.task_log(DAG_ID, smoke_run, "hello", 2)


def test_viewer_is_refused_and_anonymous_is_unauthenticated(
    airflow_stack: AirflowStack, smoke_run: str
) -> None:
    runs = f"/api/v2/dags/{DAG_ID}/dagRuns"
    clear = f"/api/v2/dags/{DAG_ID}/clearTaskInstances"
    clear_body = {"dry_run": False, "dag_run_id": smoke_run, "task_ids": ["hello"]}
    # The viewer is a real, authenticated user: reading works, changing does not.
    assert airflow_stack.get(f"/api/v2/dags/{DAG_ID}", user="viewer").status_code == 200
    assert airflow_stack.post(runs, {"logical_date": None}, user="viewer").status_code == 403
    assert airflow_stack.post(clear, clear_body, user="viewer").status_code == 403
    with pytest.raises(AirflowApiError) as refused:
        airflow_stack.trigger_dag(DAG_ID, user="viewer")
    assert refused.value.status_code == 403
    assert airflow_stack.get("/api/v2/dags", user=None).status_code == 401
    assert airflow_stack.post(runs, {"logical_date": None}, user=None).status_code == 401
    assert airflow_stack.post(clear, clear_body, user=None).status_code == 401
    # Nothing the refused calls asked for happened.
    assert airflow_stack.task_instance(DAG_ID, smoke_run, "hello")["state"] == "success"


def test_restarted_triggerer_runs_new_deferrals(airflow_stack: AirflowStack, smoke_dag: str) -> None:
    old = psutil.Process(airflow_stack.processes["triggerer"].pid)
    airflow_stack.kill_service("triggerer", signal.SIGKILL)
    airflow_stack.processes["triggerer"].wait(10)
    assert not old.is_running()
    new = airflow_stack.restart_service("triggerer")
    assert new.pid != old.pid
    run_id = airflow_stack.trigger_dag(smoke_dag)
    assert airflow_stack.wait_dag_run(smoke_dag, run_id, RUN_TIMEOUT) == "success"
    assert new.poll() is None


SLEEPY_DAG = """
from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG("kfp_bridge_stack_sleepy", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
    BashOperator(task_id="sleep", bash_command="sleep 3171")
"""


def test_stop_leaves_no_process_behind(tmp_path: Path, airflow_db_cache: Path) -> None:
    # Its own stack: stopping the session one would break the other tests.
    stack = AirflowStack(home=tmp_path / "home", dags_folder=tmp_path / "dags", cache_dir=airflow_db_cache)
    with stack:
        stack.wait_ready(240)
        stack.add_dag_file(SLEEPY_DAG, "sleepy.py")
        stack.add_dag_file(DAG_FILE.read_text().replace("seconds=5", "seconds=3600"), "smoke_long.py")
        stack.wait_dag_parsed("kfp_bridge_stack_sleepy", 120, file_name="sleepy.py")
        stack.wait_dag_parsed(DAG_ID, 120, file_name="smoke_long.py")
        sleepy = stack.trigger_dag("kfp_bridge_stack_sleepy")
        deferring = stack.trigger_dag(DAG_ID)
        stack.wait_task_state("kfp_bridge_stack_sleepy", sleepy, "sleep", ("running",), RUN_TIMEOUT)
        stack.wait_task_state(DAG_ID, deferring, "wait", ("deferred",), RUN_TIMEOUT)
        procs = [psutil.Process(pid) for pid in stack.pids()]
        commands = [" ".join(p.cmdline()) for p in procs]
        # The Bash command runs in a process group of its own, yet pids() still finds it.
        assert any("sleep 3171" in c for c in commands), commands
    survivors = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
    assert stack.pids() == set()


FAILING_DAG = """
from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG("kfp_bridge_stack_failing", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
    BashOperator(task_id="boom", bash_command="echo about-to-fail; exit 3")
"""


def test_run_dags_test_runs_the_deferring_dag_in_process(airflow_dags_test) -> None:
    result = airflow_dags_test(DAG_FILE, DAG_ID, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "hello-from-bash" in result.stdout
    assert "Pausing task as DEFERRED" in result.stdout  # the trigger ran inside `dags test`
    assert f"DagRun Finished: dag_id={DAG_ID}" in result.stdout
    assert "state=success" in result.stdout


def test_run_dags_test_reports_a_failed_run(airflow_dags_test, tmp_path: Path) -> None:
    dag_file = tmp_path / "failing.py"
    dag_file.write_text(FAILING_DAG)
    result = airflow_dags_test(dag_file, "kfp_bridge_stack_failing", timeout=300)
    assert result.returncode != 0
    assert "about-to-fail" in result.stdout
    assert "state=failed" in result.stdout
