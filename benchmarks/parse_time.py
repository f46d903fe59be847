"""Parse cost of a DAG file with 20 KfpRunOperators against the same file with 20 EmptyOperators.

Each sample is a fresh interpreter that has already imported ``airflow.sdk`` (as a dag-processor
has) and then times executing the DAG file, so the figure is what our operators add to parsing.
Samples alternate between the two files to cancel drift. The last line is machine-readable:

    parse_ratio=R kfp_ms=K empty_ms=E imports_kfp=False imports_kubernetes=False samples=N
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HEADER = """
from __future__ import annotations
import pendulum
from airflow.sdk import DAG
{import_line}
with DAG(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
"""
KFP_TASK = '    KfpRunOperator(task_id="t{i}", pipeline="pipelines/iris.yaml", params={{"model_dir": "/tmp/m{i}"}})\n'
EMPTY_TASK = '    EmptyOperator(task_id="t{i}")\n'

PROBE = textwrap.dedent(
    """
    import json, runpy, sys, time
    import airflow.sdk  # the dag-processor has this loaded before it parses any file
    from airflow.sdk import DAG  # noqa: F401
    started = time.perf_counter()
    runpy.run_path(sys.argv[1])
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "seconds": elapsed,
        "kfp": any(m == "kfp" or m.startswith("kfp.") for m in sys.modules),
        "kubernetes": any(m == "kubernetes" or m.startswith("kubernetes.") for m in sys.modules),
    }))
    """
)


def write_dag(folder: Path, kind: str, tasks: int) -> Path:
    if kind == "kfp":
        text = HEADER.format(import_line="from kfp_bridge.operators.kfp import KfpRunOperator", dag_id="bench_kfp")
        text += "".join(KFP_TASK.format(i=i) for i in range(tasks))
    else:
        text = HEADER.format(
            import_line="from airflow.providers.standard.operators.empty import EmptyOperator", dag_id="bench_empty"
        )
        text += "".join(EMPTY_TASK.format(i=i) for i in range(tasks))
    path = folder / f"dag_{kind}.py"
    path.write_text(text)
    return path


def sample(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {kind: write_dag(folder, kind, args.tasks) for kind in ("kfp", "empty")}
        sample(files["kfp"])  # warm the file-system cache and .pyc files for both
        sample(files["empty"])
        times: dict[str, list[float]] = {"kfp": [], "empty": []}
        leaks = {"kfp": False, "kubernetes": False}
        for _ in range(args.samples):
            for kind in ("kfp", "empty"):
                result = sample(files[kind])
                times[kind].append(result["seconds"])
                if kind == "kfp":
                    leaks["kfp"] |= result["kfp"]
                    leaks["kubernetes"] |= result["kubernetes"]
    kfp_ms = statistics.median(times["kfp"]) * 1000
    empty_ms = statistics.median(times["empty"]) * 1000
    figures = {
        "parse_ratio": round(kfp_ms / empty_ms, 3),
        "kfp_ms": round(kfp_ms, 1),
        "empty_ms": round(empty_ms, 1),
        "imports_kfp": leaks["kfp"],
        "imports_kubernetes": leaks["kubernetes"],
        "samples": args.samples,
    }
    print(" ".join(f"{key}={value}" for key, value in figures.items()))
    return figures


if __name__ == "__main__":
    main()
