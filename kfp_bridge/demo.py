"""``make demo``: the main job end to end on the embedded stand-ins.

Starts the KFP stand-in with a token file (the projected-token pattern), runs the ``kfp_train``
DAG with ``airflow dags test`` (the deferrable task's trigger runs in-process), then reads the
run back with the real ``kfp.Client`` and prints the task states, the run link, each KFP step
and where the model was written. Everything lives under ``.demo/`` and is stopped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"


def main() -> int:
    from kfp_bridge.local.airflow import run_dags_test
    from kfp_bridge.local.launch import run_stand_in

    work = ROOT / ".demo"
    work.mkdir(exist_ok=True)
    token_file = work / "kfp-token"
    token_file.write_text(secrets.token_urlsafe(24))
    token_file.chmod(0o600)
    models = work / "models"
    os.environ["HOME"] = str(work / "home")  # kfp.Client may write ~/.config/kfp

    print("== starting the KFP stand-in (kfp-bridge local kfp) ...", flush=True)
    with run_stand_in("kfp", work / "kfp-state", token_file=token_file) as kfp_server:
        print(f"   KFP API at {kfp_server.url} (bearer token from {token_file})")
        connection = {"conn_type": "kfp", "host": kfp_server.url, "extra": {"token_path": str(token_file)}}
        env = {
            "AIRFLOW_CONN_KFP_DEFAULT": json.dumps(connection),
            "AIRFLOW_VAR_MODEL_ROOT": str(models),
            "HOME": str(work / "home"),
        }
        print("== airflow dags test kfp_train (deferrable; trigger in-process) ...", flush=True)
        result = run_dags_test(
            DAGS / "kfp_train.py",
            "kfp_train",
            home=work / "airflow",
            env=env,
            conf={"model_root": str(models)},
            timeout=900,
        )
        states = _task_states(work / "airflow", "kfp_train")
        print("== Airflow task states")
        for task, state in states.items():
            print(f"   {task}: {state}")
        report_ok = _report_kfp_runs(kfp_server.url, token_file.read_text().strip())
    ok = result.returncode == 0 and states and all(s == "success" for s in states.values()) and report_ok
    if not ok:
        print(f"\nDEMO FAILED (airflow exit code {result.returncode}); log: {work / 'airflow' / 'logs' / 'dags-test.log'}")
        print("\n".join(result.stdout.splitlines()[-40:]))
        return 1
    print("\nDEMO OK")
    return 0


def _task_states(home: Path, dag_id: str) -> dict[str, str]:
    """Final state of each task of the DAG's latest run, read from the demo's Airflow database."""
    import sqlite3

    from kfp_bridge.local.airflow import DB_NAME

    with sqlite3.connect(home / DB_NAME) as db:
        rows = db.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) ORDER BY task_id, map_index",
            (dag_id, dag_id),
        ).fetchall()
    return {(task if index < 0 else f"{task}[{index}]"): state for task, index, state in rows}


def _report_kfp_runs(host: str, token: str) -> bool:
    import warnings

    import kfp

    warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
    client = kfp.Client(host=host, existing_token=token, namespace="demo")
    runs = client.list_runs(page_size=5, sort_by="created_at desc").runs or []
    if not runs:
        print("== no KFP run was created")
        return False
    run = client.get_run(runs[0].run_id)
    print(f"== KFP run {run.run_id}: {run.state}")
    print(f"   link: {host}/#/runs/details/{run.run_id}")
    print(f"   tag:  {run.description}")
    for task in (run.run_details.task_details or []) if run.run_details else []:
        print(f"   step {task.display_name:<22} {task.state}")
    model_dir = (run.runtime_config.parameters or {}).get("model_dir") if run.runtime_config else None
    if model_dir:
        model = Path(model_dir) / "model.joblib"
        print(f"   model: {model} ({'present' if model.exists() else 'MISSING'})")
        return run.state == "SUCCEEDED" and model.exists()
    return run.state == "SUCCEEDED"


if __name__ == "__main__":
    sys.exit(main())
