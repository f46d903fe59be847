"""Parse cost of a DAG file with 20 KfpRunOperators (and ``pipeline_params``) against the same DAG with EmptyOperators.

Four files, 20 tasks each: ``kfp`` (KfpRunOperators, ``params=pipeline_params("pipelines/iris.yaml")``),
``empty`` (the same DAG: the same Params written out by hand, EmptyOperators), ``subclass`` (the
same DAG and task-level params, with an operator class defined in the file whose ``__init__`` only
calls ``super().__init__``) and ``bare`` (EmptyOperators, no params). ``parse_ratio`` is kfp/empty:
what the provider adds to a DAG with a typed Trigger form. ``own_ratio`` is kfp/subclass: Airflow
wraps every class's own ``__init__`` in its argument-defaults wrapper, and each wrapper deep-copies
the DAG's Params, so any operator that defines ``__init__`` (EmptyOperator does not) pays that
again per task; own_ratio is what is left for kfp-bridge's code (imports, the Params helper, the
operator's own ``__init__``). ``bare_ratio`` is kfp/bare.

Each sample is a fresh interpreter that has already imported ``airflow.sdk`` (as a dag-processor
has) and then times executing the DAG file, so the figure is what our operators add to parsing.
Samples alternate between the two files to cancel drift, importing from bytecode as a
dag-processor does. The ratio uses CPU time of the parsing
process (``time.process_time``): on a shared, loaded machine wall time mostly measures waiting for
a core; the wall-clock ratio is printed beside it. ``--breakdown`` adds what each module the KFP file
imports beyond the EmptyOperator file costs (``python -X importtime``, self time, median).

``*_build_ms`` is building the file's DAG and tasks alone: each file run again and again in one process
(imports done), the fastest run. ``subclass_build_ms - empty_build_ms`` is Airflow's own price for an
operator class with an ``__init__`` (its wrapper deep-copies the DAG's Params once more per task), and
``floor_ratio`` is the parse ratio that price alone gives: no operator with its own ``__init__`` parses
below it, whatever its module imports. The last line is machine-readable:

    parse_ratio=R kfp_ms=K empty_ms=E subclass_ms=C own_ratio=O bare_ms=B bare_ratio=R2 wall_ratio=W
    kfp_build_ms=KB empty_build_ms=EB subclass_build_ms=SB floor_ratio=F
    imports_kfp=False imports_kubernetes=False imports_openlineage=False samples=N
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "dags" / "pipelines" / "iris.yaml"

HEADER = """
from __future__ import annotations
import pendulum
from airflow.sdk import DAG
{import_line}
with DAG(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False{params}) as dag:
"""
# As dags/kfp_train.py does: the form from the pipeline, the output folder set per task.
KFP_TASK = (
    '    KfpRunOperator(task_id="t{i}", pipeline="pipelines/iris.yaml", params={{"model_dir": "/tmp/m{i}"}}, '
    "params_from_dag=True)\n"
)
EMPTY_TASK = '    EmptyOperator(task_id="t{i}")\n'
# The floor for any operator with its own __init__ and the KFP tasks' task-level params.
SUBCLASS_OPERATOR = """
class PlainOperator(BaseOperator):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def execute(self, context):
        pass
"""
SUBCLASS_TASK = '    PlainOperator(task_id="t{i}", params={{"model_dir": "/tmp/m{i}"}})\n'
HEAVY = ("kfp", "kubernetes", "openlineage")
KINDS = ("kfp", "empty", "subclass", "bare")

PROBE = textwrap.dedent(
    """
    import json, runpy, sys, time
    import airflow.sdk  # the dag-processor has this loaded before it parses any file
    from airflow.sdk import DAG  # noqa: F401
    before = set(sys.modules)
    cpu, wall = time.process_time(), time.perf_counter()
    runpy.run_path(sys.argv[1])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    # What parsing the file imported. Not what was loaded before it: with the openlineage provider
    # installed, `import airflow.sdk` itself loads airflow.providers.openlineage.get_provider_info
    # (provider discovery), whatever the DAG file holds.
    added = set(sys.modules) - before
    def loaded(top):
        return any(m == top or m.startswith(top + ".") for m in added)
    print(json.dumps({
        "seconds": cpu,
        "wall": wall,
        "kfp": loaded("kfp"),
        "kubernetes": loaded("kubernetes"),
        "openlineage": loaded("openlineage") or loaded("airflow.providers.openlineage"),
    }))
    """
)


# The same files run again and again in one process: imports are done after the first run, so the
# fastest run is what building the DAG and its tasks costs (per-task differences without the noise
# of two ~20 ms medians).
BUILD_PROBE = textwrap.dedent(
    """
    import json, runpy, sys, time
    import airflow.sdk  # noqa: F401
    best = {}
    for _ in range(int(sys.argv[1])):
        for path in sys.argv[2:]:
            cpu = time.process_time()
            runpy.run_path(path)
            best[path] = min(best.get(path, 1e9), time.process_time() - cpu)
    print(json.dumps(best))
    """
)


def build_times(files: dict[str, Path], repeats: int) -> dict[str, float]:
    """Per kind, the fastest run (s) of its file once everything it imports is loaded."""
    out = subprocess.run(
        [sys.executable, "-c", BUILD_PROBE, str(repeats), *map(str, files.values())],
        capture_output=True,
        text=True,
        check=True,
        env=_env(next(iter(files.values())).parent),
    )
    best = json.loads(out.stdout.strip().splitlines()[-1])
    return {kind: best[str(path)] for kind, path in files.items()}


def _literal_params() -> str:
    """``pipeline_params`` of iris.yaml as Python source: the same form, written by hand."""
    from kfp_bridge.params import pipeline_params

    params = pipeline_params(str(PIPELINE), exclude=["model_dir"])
    entries = ", ".join(
        f"{name!r}: Param({param.value!r}, description={param.description!r}, "
        + ", ".join(f"{key}={value!r}" for key, value in param.schema.items())
        + ")"
        for name, param in params.items()
    )
    return "{" + entries + "}"


def write_dag(folder: Path, kind: str, tasks: int) -> Path:
    if kind == "kfp":
        # The pipeline next to the DAG file, as in dags/: pipeline_params reads it at parse time.
        (folder / "pipelines").mkdir(exist_ok=True)
        shutil.copy(PIPELINE, folder / "pipelines" / "iris.yaml")
        text = HEADER.format(
            import_line="from kfp_bridge.operators.kfp import KfpRunOperator\n"
            "from kfp_bridge.params import pipeline_params",
            dag_id="bench_kfp",
            params=', params=pipeline_params("pipelines/iris.yaml", exclude=["model_dir"])',
        )
        text += "".join(KFP_TASK.format(i=i) for i in range(tasks))
    elif kind == "subclass":
        text = HEADER.format(
            import_line="from airflow.sdk import BaseOperator, Param\n" + SUBCLASS_OPERATOR,
            dag_id="bench_subclass",
            params=f", params={_literal_params()}",
        )
        text += "".join(SUBCLASS_TASK.format(i=i) for i in range(tasks))
    else:
        text = HEADER.format(
            import_line="from airflow.providers.standard.operators.empty import EmptyOperator\n"
            + ("from airflow.sdk import Param" if kind == "empty" else ""),
            dag_id=f"bench_{kind}",
            params=f", params={_literal_params()}" if kind == "empty" else "",
        )
        text += "".join(EMPTY_TASK.format(i=i) for i in range(tasks))
    path = folder / f"dag_{kind}.py"
    path.write_text(text)
    return path


def _env(folder: Path) -> dict[str, str]:
    # A dag-processor imports from .pyc files; with PYTHONDONTWRITEBYTECODE (set in some CI images)
    # every sample would compile every module from source and measure the compiler instead. The
    # bytecode goes to a private prefix, so neither the repo nor the venv gets __pycache__ folders.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    return env


def sample(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=_env(path.parent),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_breakdown(path: Path) -> dict[str, int]:
    """Self import time (µs) of every module the probe process loads."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=_env(path.parent),
    )
    costs = {}
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[0].strip().isdigit():
            costs[parts[2].strip()] = int(parts[0].strip())
    return costs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--breakdown", action="store_true", help="print each imported module's self time too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {kind: write_dag(folder, kind, args.tasks) for kind in KINDS}
        for path in files.values():
            sample(path)  # warm the file-system cache and .pyc files for each
        cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
        wall: dict[str, list[float]] = {kind: [] for kind in KINDS}
        leaks = dict.fromkeys(HEAVY, False)
        for _ in range(args.samples):
            for kind in KINDS:
                result = sample(files[kind])
                cpu[kind].append(result["seconds"])
                wall[kind].append(result["wall"])
                if kind == "kfp":
                    for name in HEAVY:
                        leaks[name] |= result[name]
        build = build_times(files, max(10, args.samples * 2))
        if args.breakdown:
            runs = {
                kind: [import_breakdown(files[kind]) for _ in range(max(3, args.samples // 3))]
                for kind in ("kfp", "empty")
            }
            _print_breakdown(runs)
    kfp_ms = statistics.median(cpu["kfp"]) * 1000
    empty_ms = statistics.median(cpu["empty"]) * 1000
    bare_ms = statistics.median(cpu["bare"]) * 1000
    subclass_ms = statistics.median(cpu["subclass"]) * 1000
    figures = {
        "parse_ratio": round(kfp_ms / empty_ms, 3),
        "kfp_ms": round(kfp_ms, 1),
        "empty_ms": round(empty_ms, 1),
        "subclass_ms": round(subclass_ms, 1),
        "own_ratio": round(kfp_ms / subclass_ms, 3),
        "bare_ms": round(bare_ms, 1),
        "bare_ratio": round(kfp_ms / bare_ms, 3),
        "wall_ratio": round(statistics.median(wall["kfp"]) / statistics.median(wall["empty"]), 3),
        # Building the tasks alone, everything imported (the fastest of many runs in one process):
        # subclass - empty is what Airflow adds for any operator class with its own __init__.
        **{f"{kind}_build_ms": round(build[kind] * 1000, 2) for kind in ("kfp", "empty", "subclass")},
        "floor_ratio": round((empty_ms + (build["subclass"] - build["empty"]) * 1000) / empty_ms, 3),
        **{f"imports_{name}": leaks[name] for name in HEAVY},
        "samples": args.samples,
    }
    print(" ".join(f"{key}={value}" for key, value in figures.items()))
    return figures


def _print_breakdown(runs: dict[str, list[dict[str, int]]]) -> None:
    # airflow.sdk imports lazily, so both files load more of Airflow; only what the KFP file loads
    # beyond the EmptyOperator file is ours to answer for.
    baseline = {name for costs in runs["empty"] for name in costs}
    names = sorted({name for costs in runs["kfp"] for name in costs} - baseline)
    medians = {name: statistics.median(costs.get(name, 0) for costs in runs["kfp"]) for name in names}
    total = sum(medians.values()) / 1000
    print(
        f"the KFP file imports {len(names)} modules the EmptyOperator file does not: {total:.1f} ms self time"
    )
    for name, us in sorted(medians.items(), key=lambda item: -item[1]):
        print(f"  {us / 1000:7.2f} ms  {name}")


if __name__ == "__main__":
    main()
