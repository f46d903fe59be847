"""What submitting costs: ``KfpRunOperator.execute()`` start → KFP run created, new vs unchanged pipeline.

The real code path with a real context: a generated DAG runs under ``airflow dags test`` (an
isolated Airflow home, SQLite, ``kfp_bridge.local.airflow.run_dags_test``) against a private KFP
stand-in started with ``--admin``. Its tasks, chained, are pairs of ``KfpRunOperator`` s on one
pipeline: ``new_i`` submits pipeline variant *i* for the first time (its version is uploaded),
then ``unchanged_i`` submits the same file again (the version exists, so it must not be uploaded).
A warm-up pair first pays the one-off imports of the process (kfp, kfp_server_api), which a
long-lived worker has paid too.

Timing: each task's ``on_execute_callback`` (the task runner calls it right before ``execute``)
prints the wall time and the stand-in's upload counters (``GET /_admin/stats``); the end is the
timestamp of the operator's own ``Created KFP run`` log line. Runs are the stand-in's synthetic runs
(1 s, admin only), so the tasks finish quickly. The last line is::

    new_pipeline_ms=... unchanged_pipeline_ms=... ratio=... uploads_new=1 uploads_unchanged=0

(medians over ``--pairs`` pairs; upload counts per pair, and the script fails if an unchanged
pipeline was uploaded again). ``--write-docs`` rewrites this benchmark's section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine_facts  # noqa: E402
from benchmarks.triggerer_scale import StandIn, write_section  # noqa: E402

PIPELINE = ROOT / "dags" / "pipelines" / "iris.yaml"
CONN_ID = "kfp_bench"
DAG_ID = "bench_submit_overhead"
# Package uploads (the operator uploads a version; a new pipeline is first created empty by JSON).
UPLOAD_ROUTES = ("POST /apis/v2beta1/pipelines/upload_version", "POST /apis/v2beta1/pipelines/upload",
                 "POST /apis/v2beta1/pipelines/{pipeline_id}/versions")
START = re.compile(r"BENCH start (?P<task>\S+) (?P<t>[\d.]+) (?P<uploads>\d+)")
CREATED = re.compile(r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?).*Created KFP run (?P<run>\S+)")

DAG_TEMPLATE = '''
from __future__ import annotations

import time

import httpx
import pendulum
from airflow.sdk import DAG, chain

from kfp_bridge.operators.kfp import KfpRunOperator

UPLOAD_ROUTES = {upload_routes!r}


def mark_start(context):
    # Called by the task runner right before execute(): the wall time and uploads so far.
    started = time.time()
    stats = httpx.get("{host}/_admin/stats", headers={{"authorization": "Bearer {token}"}}, timeout=30).json()
    uploads = sum(stats["requests"].get(route, 0) for route in UPLOAD_ROUTES)
    print(f"BENCH start {{context['ti'].task_id}} {{started:.6f}} {{uploads}}", flush=True)


with DAG(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         tags=["benchmark"]) as dag:
    tasks = []
    for label, variant in {tasks!r}:
        tasks.append(KfpRunOperator(
            task_id=label, pipeline=f"{{variant}}.yaml", params={{"model_dir": "/tmp/bench-model"}},
            kfp_conn_id="{conn_id}", deferrable=False, poll_interval=0.5, on_execute_callback=mark_start,
        ))
    chain(*tasks)
'''


def write_dag(folder: Path, pairs: int, host: str, token: str) -> list[tuple[str, str]]:
    spec_docs = list(yaml.safe_load_all(PIPELINE.read_text()))
    tasks: list[tuple[str, str]] = []
    stamp = int(time.time())
    for i in ["warmup", *range(pairs)]:
        variant = f"bench-pipeline-{i}"
        docs = [dict(d) for d in spec_docs]
        docs[0]["pipelineInfo"] = {**docs[0]["pipelineInfo"], "name": f"bench-{stamp}-{i}"}
        (folder / f"{variant}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=True))
        tasks += [(f"new_{i}", variant), (f"unchanged_{i}", variant)]
    source = DAG_TEMPLATE.format(upload_routes=UPLOAD_ROUTES, host=host, token=token, dag_id=DAG_ID,
                                 tasks=tasks, conn_id=CONN_ID)
    (folder / "bench_submit_overhead.py").write_text(textwrap.dedent(source).lstrip())
    return tasks


def parse(output: str, tasks: list[tuple[str, str]], final_uploads: int) -> dict[str, dict[str, float]]:
    starts = {m["task"]: (float(m["t"]), int(m["uploads"])) for m in START.finditer(output)}
    created = []
    for m in CREATED.finditer(output):
        created.append(dt.datetime.fromisoformat(m["ts"].replace("Z", "+00:00")).timestamp())
    order = [label for label, _ in tasks]
    missing = [label for label in order if label not in starts]
    if missing or len(created) < len(order):
        raise RuntimeError(f"could not find start/created lines for {missing or 'some tasks'} in the dags test output")
    out: dict[str, dict[str, float]] = {}
    for index, label in enumerate(order):
        start, uploads_before = starts[label]
        uploads_after = starts[order[index + 1]][1] if index + 1 < len(order) else final_uploads
        out[label] = {"ms": (created[index] - start) * 1000.0, "uploads": uploads_after - uploads_before}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="new/unchanged pairs to time (after a warm-up pair)")
    parser.add_argument("--write-docs", action="store_true", help="rewrite this section of docs/benchmarks.md")
    parser.add_argument("--workdir", help="keep the Airflow home, DAG and logs here (default: a temp dir)")
    args = parser.parse_args()

    from kfp_bridge.local.airflow import run_dags_test

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kfp-submit-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        (workdir / "dags").mkdir(parents=True, exist_ok=True)
        stand_in = StandIn(workdir)
        try:
            stand_in.admin("POST", "synthetic", {"enabled": True, "duration_seconds": 1.0})
            stand_in.admin("POST", "stats/reset")
            tasks = write_dag(workdir / "dags", args.pairs, stand_in.host, stand_in.token)
            conn = {"conn_type": "kfp", "host": stand_in.host, "extra": {"token_path": str(stand_in.token_file)}}
            proc = run_dags_test(workdir / "dags" / "bench_submit_overhead.py", DAG_ID, home=workdir / "airflow",
                                 env={f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(conn)}, timeout=900)
            (workdir / "dags-test.out").write_text(proc.stdout)
            stats = stand_in.admin("GET", "stats")["requests"]
            final_uploads = sum(stats.get(route, 0) for route in UPLOAD_ROUTES)
        finally:
            stand_in.stop()
        if proc.returncode != 0:
            print(proc.stdout[-4000:])
            raise SystemExit(f"airflow dags test failed (exit {proc.returncode}); output kept in {workdir}")
        per_task = parse(proc.stdout, tasks, final_uploads)

    pairs = [str(i) for i in range(args.pairs)]
    new_ms = statistics.median(per_task[f"new_{i}"]["ms"] for i in pairs)
    unchanged_ms = statistics.median(per_task[f"unchanged_{i}"]["ms"] for i in pairs)
    uploads_new = {per_task[f"new_{i}"]["uploads"] for i in pairs}
    uploads_unchanged = {per_task[f"unchanged_{i}"]["uploads"] for i in pairs}
    detail = " ".join(f"{label}={per_task[label]['ms']:.0f}ms/{per_task[label]['uploads']:.0f}up" for label, _ in tasks)
    print(f"# {detail} | load1 {load_before[0]:.1f}->{os.getloadavg()[0]:.1f}", flush=True)
    line = (f"new_pipeline_ms={new_ms:.0f} unchanged_pipeline_ms={unchanged_ms:.0f} ratio={unchanged_ms / new_ms:.2f} "
            f"uploads_new={max(uploads_new):.0f} uploads_unchanged={max(uploads_unchanged):.0f}")
    if args.write_docs:
        write_section("submit_overhead", "\n".join([
            "## Submit overhead (`benchmarks/submit_overhead.py`)",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine_facts()}; "
            f"load1 {load_before[0]:.1f} → {os.getloadavg()[0]:.1f}. Command: "
            f"`python benchmarks/submit_overhead.py {' '.join(sys.argv[1:])}`.",
            "`KfpRunOperator.execute()` start (its `on_execute_callback`) → the operator's `Created KFP run` log line, "
            "under `airflow dags test` against the KFP stand-in; medians over "
            f"{args.pairs} pairs after a warm-up pair.",
            "",
            "| pipeline | execute → run created (ms) | package uploads |",
            "|---|---|---|",
            f"| new (first submit of this file) | {new_ms:.0f} | {max(uploads_new):.0f} |",
            f"| unchanged (same file again) | {unchanged_ms:.0f} | {max(uploads_unchanged):.0f} |",
            "",
            f"Per task: {detail}.",
        ]))
    print(line, flush=True)
    if max(uploads_unchanged) != 0 or min(uploads_new) < 1:
        print("FAILED: an unchanged pipeline was uploaded again, or a new one was not uploaded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
