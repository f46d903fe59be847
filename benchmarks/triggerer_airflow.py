"""N deferred KfpRunOperator tasks in Airflow's own triggerer, on PostgreSQL, against synthetic KFP runs.

Unlike ``triggerer_scale.py`` (a triggerer-like asyncio process), this runs the real thing: an
``AirflowStack`` (api-server, scheduler, dag-processor, one triggerer; PostgreSQL; LocalExecutor)
and the embedded KFP stand-in with its admin-only synthetic runs (``POST /_admin/synthetic``: runs
go PENDING → RUNNING → SUCCEEDED on a timer, no process per run; ``GET /_admin/synthetic/finished``
has each run's exact terminal time). Per N and per follower kind:

1. a DAG run of ``bench_triggerer_<kind>`` maps N deferrable tasks (``.expand`` over a list made
   from ``conf["n"]``), each submitting one run of ``dags/pipelines/iris.yaml``;
2. once all N are deferred (the measurement window opens), the stand-in's request counters are
   reset and the triggerer's process tree (the ``airflow triggerer`` process and its children) is
   sampled for CPU and RSS;
3. the window closes when all N tasks are done.

Follower kinds:

* ``provider``: ``KfpRunOperator(deferrable=True)`` → ``KfpRunTrigger`` (the shared poller: one
  ListRuns per poll interval for all runs of a connection, ``IN`` filter, 200 per page);
* ``baseline``: the same operator whose trigger is :class:`PerRunPollTrigger` below — one
  ``get_run`` per run per poll interval, the honest naive provider.

Figures:

* ``detect_p50_s`` / ``detect_p99_s``: task instance ``end_date`` − the run's exact terminal time
  on the server: everything from "run finished on KFP" to "task success in Airflow" (the trigger
  noticing, the scheduler queueing the resumed task, a worker process running
  ``execute_complete``). ``handback_p99_s`` stops at the task's ``queued_dttm`` instead (trigger +
  scheduler, no worker start): on a loaded 2-core machine the worker start dominates.
* ``api_requests_per_run_per_poll``: ``/apis/`` requests the stand-in counted from "all deferred"
  to the first run's end (only triggers poll then: no task is resuming) ÷ (N × that span ÷ poll
  interval). The whole window's count, resumed tasks' own requests included, is printed too.
* ``triggerer_cpu_pct``: user+system CPU of the triggerer's process tree over the window, % of one
  core; ``rss_mib``: its largest resident set seen (1 s samples).

The last line is exactly::

    runs=N detect_p99_s=X api_requests_per_run_per_poll=Y triggerer_cpu_pct=Z rss_mib=W baseline_cpu_pct=B

``--sweep`` measures N = 200, 500, 1000 (and ``--runs``), printing the ``--runs`` line last;
``--write-docs`` writes the table into docs/benchmarks.md (section ``triggerer_airflow``) with the
machine and the load average. Starting N Airflow task processes takes minutes on two cores: the
synthetic runs last ``--duration`` (default: enough for N task starts) + up to ``--jitter`` s so
they end after all N are deferred; a run that ended earlier is counted and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: benchmarks/ is on the path, the repo is not
    sys.path.insert(0, str(ROOT))

from airflow.triggers.base import BaseTrigger, TriggerEvent  # noqa: E402

from benchmarks import report  # noqa: E402
from kfp_bridge.operators.kfp import KfpRunOperator  # noqa: E402

PIPELINE = ROOT / "dags" / "pipelines" / "iris.yaml"
CONN_ID = "kfp_bench"
SWEEP = (200, 500, 1000)
KINDS = ("provider", "baseline")
DOCS = ROOT / "docs" / "benchmarks.md"
TASK_ID = "wait"


# ----- the baseline: what a provider without a shared poller does ------------------------------------


class PerRunPollTrigger(BaseTrigger):
    """One ``get_run`` per run every ``poll_interval`` s until the run is final; the same event
    shape as ``KfpRunTrigger``, so ``KfpRunOperator.execute_complete`` handles it unchanged.

    :param run_id: the KFP run. :param kfp_conn_id: the ``kfp`` connection. :param poll_interval: seconds.
    """

    def __init__(self, *, run_id: str, kfp_conn_id: str, poll_interval: float) -> None:
        super().__init__()
        self.run_id = run_id
        self.kfp_conn_id = kfp_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"run_id": self.run_id, "kfp_conn_id": self.kfp_conn_id, "poll_interval": self.poll_interval},
        )

    async def run(self):  # type: ignore[override]
        from kfp_bridge.hooks.kfp import KfpHook
        from kfp_bridge.utils.states import RunState, is_success, is_terminal

        hook = KfpHook(kfp_conn_id=self.kfp_conn_id)
        try:
            while True:
                try:
                    # Only the run's state, as a plain poll loop reads it (execute_complete reads the rest).
                    state = RunState.parse((await hook.aget_run(self.run_id)).get("state"))
                except Exception as exc:  # noqa: BLE001 - a trigger turns errors into events
                    yield TriggerEvent({"status": "error", "run_id": self.run_id, "message": str(exc)})
                    return
                if is_terminal(state):
                    yield TriggerEvent({
                        "status": "success" if is_success(state) else "failed",
                        "run_id": self.run_id,
                        "state": state.value,
                        "message": f"KFP run {self.run_id}: {state.value}",
                    })
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await hook.aclose()


class PerRunPollKfpRunOperator(KfpRunOperator):
    """``KfpRunOperator`` deferring to :class:`PerRunPollTrigger`: submit, resume and results unchanged."""

    def _trigger(self, run_id: str) -> BaseTrigger:
        return PerRunPollTrigger(run_id=run_id, kfp_conn_id=self.kfp_conn_id, poll_interval=self.poll_interval)


def dag_source(kind: str, poll_interval: float, capacity: int) -> str:
    operator = "KfpRunOperator" if kind == "provider" else "PerRunPollKfpRunOperator"
    module = "kfp_bridge.operators.kfp" if kind == "provider" else "benchmarks.triggerer_airflow"
    return f'''"""Benchmark DAG (benchmarks/triggerer_airflow.py): conf["n"] deferred {operator} tasks."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from {module} import {operator}

with DAG(
    dag_id="bench_triggerer_{kind}",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-bench"],
    max_active_tasks={capacity},
    # A task whose supervisor loses the api-server on a loaded machine is retried; a retried wait
    # finds its KFP run by its tag and reattaches (the benchmark reports tries > 1).
    default_args={{"retries": 2, "retry_delay": pendulum.duration(seconds=5)}},
) as dag:

    @task
    def inputs(dag_run=None) -> list[dict]:
        return [{{"model_dir": f"/tmp/bench/{{i}}"}} for i in range(int(dag_run.conf["n"]))]

    {operator}.partial(
        task_id="{TASK_ID}",
        pipeline="{PIPELINE}",
        experiment="bench-triggerer-airflow",
        kfp_conn_id="{CONN_ID}",
        deferrable=True,
        poll_interval={poll_interval!r},
    ).expand(params=inputs())
'''


# ----- measuring --------------------------------------------------------------------------------------


class TreeSampler:
    """CPU seconds and the largest RSS of a process and its descendants, sampled every second."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.rss_max = 0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _procs(self) -> list[Any]:
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        import psutil

        rss = 0
        for proc in self._procs():
            try:
                times = proc.cpu_times()
                # children_* would double count: every descendant is sampled itself
                self._cpu[proc.pid] = times.user + times.system
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
        self.rss_max = max(self.rss_max, rss)

    def cpu_seconds(self) -> float:
        self.sample()
        return sum(self._cpu.values())

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _states(stack: Any, dag_id: str, run_id: str) -> dict[str, int]:
    rows = stack.sql(
        "SELECT state, count(*) FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ? GROUP BY state",
        (dag_id, run_id, TASK_ID),
    )
    return {str(state): int(count) for state, count in rows}


def _kfp_runs_by_index(stand_in: Any, dag_id: str, run_id: str) -> dict[int, str]:
    from kfp_bridge.utils.run_tags import parse_run_tag

    out: dict[int, str] = {}
    token = ""
    while True:
        params = {"page_size": 1000, **({"page_token": token} if token else {})}
        body = stand_in.http.get("/apis/v2beta1/runs", params=params).json()
        for run in body.get("runs") or []:
            tag = parse_run_tag(run.get("description"))
            if tag and tag.get("dag_id") == dag_id and tag.get("run_id") == run_id:
                out[int(tag["map_index"])] = run["run_id"]
        token = body.get("next_page_token") or ""
        if not token:
            return out


def _wait(check: Any, timeout: float, what: str, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f}s: {what}")
        time.sleep(interval)


def measure(stack: Any, stand_in: Any, kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    dag_id = f"bench_triggerer_{kind}"
    duration = args.duration if args.duration is not None else 120.0 + 0.8 * n
    stand_in.admin("POST", "synthetic", {"enabled": True, "duration_seconds": duration,
                                         "jitter_seconds": args.jitter, "seed": n})
    load_before = os.getloadavg()
    triggered = time.monotonic()
    run_id = stack.trigger_dag(dag_id, conf={"n": n})
    timeout = args.defer_timeout if args.defer_timeout is not None else 600.0 + 4.0 * n

    def all_deferred() -> bool:
        states = _states(stack, dag_id, run_id)
        if states.get("failed") or states.get("upstream_failed"):  # retries exhausted
            raise RuntimeError(f"{dag_id}: tasks failed while deferring: {states}; logs in {stack.home}/logs")
        # a run that ended before all were deferred resumes its task early; count it as done
        return sum(states.get(s, 0) for s in ("deferred", "success")) == n and states.get("deferred", 0) > 0

    _wait(all_deferred, timeout, f"not all {n} tasks of {dag_id} deferred: {_states(stack, dag_id, run_id)}")
    defer_s = time.monotonic() - triggered
    sampler = TreeSampler(stack.processes["triggerer"].pid)
    stand_in.admin("POST", "stats/reset")
    started, cpu0 = time.time(), sampler.cpu_seconds()
    sampler.start()
    finished_before = {r for r, t in stand_in.admin("GET", "synthetic/finished")["finished"].items() if t <= started}
    steady: dict[str, Any] = {}

    def done() -> bool:
        if not steady:
            ends = stand_in.admin("GET", "synthetic/finished")["finished"]
            if any(r not in finished_before for r in ends):
                steady.update(seconds=time.time() - started, stats=stand_in.admin("GET", "stats"),
                              cpu=sampler.cpu_seconds())
        states = _states(stack, dag_id, run_id)
        return sum(states.get(s, 0) for s in ("success", "failed")) == n

    _wait(done, duration + args.jitter + timeout, f"{dag_id}: not all {n} tasks done: {_states(stack, dag_id, run_id)}",
          interval=1.0)
    ended, cpu1 = time.time(), sampler.cpu_seconds()
    sampler.stop()
    stats_all = stand_in.admin("GET", "stats")
    finished = stand_in.admin("GET", "synthetic/finished")["finished"]
    by_index = _kfp_runs_by_index(stand_in, dag_id, run_id)
    rows = stack.sql(
        "SELECT map_index, state, EXTRACT(EPOCH FROM end_date), EXTRACT(EPOCH FROM queued_dttm), try_number "
        "FROM task_instance "
        "WHERE dag_id = ? AND run_id = ? AND task_id = ?",
        (dag_id, run_id, TASK_ID),
    )
    detect, handback, early, failed = [], [], 0, 0
    retried = sum(1 for row in rows if int(row[4] or 0) > 1)
    for index, state, end_date, queued, _ in rows:
        kfp_run = by_index.get(int(index))
        if state != "success":
            failed += 1
        if kfp_run is None or kfp_run not in finished or end_date is None:
            continue
        if finished[kfp_run] <= started:
            early += 1
            continue
        detect.append(float(end_date) - finished[kfp_run])
        if queued is not None and float(queued) >= finished[kfp_run]:
            handback.append(float(queued) - finished[kfp_run])

    def api(stats: dict[str, Any]) -> int:
        return sum(count for route, count in stats["requests"].items() if " /apis/" in route)

    if steady and steady["seconds"] >= args.poll_interval:
        per_poll = api(steady["stats"]) / (n * steady["seconds"] / args.poll_interval)
        per_poll_basis = f"{steady['seconds']:.0f} s before the first run ended"
    else:  # no quiet span: the whole window, resumed tasks' requests included (an upper bound)
        per_poll = api(stats_all) / (n * (ended - started) / args.poll_interval)
        per_poll_basis = "whole window (upper bound)"
    window = ended - started
    return {
        "kind": kind, "runs": n, "poll_interval": args.poll_interval, "duration": duration, "jitter": args.jitter,
        "defer_s": defer_s, "window_s": window,
        "detect_p50_s": statistics.median(detect) if detect else float("nan"),
        "detect_p99_s": percentile(detect, 0.99), "detect_max_s": max(detect, default=float("nan")),
        "handback_p50_s": statistics.median(handback) if handback else float("nan"),
        "handback_p99_s": percentile(handback, 0.99),
        "per_run_per_poll": per_poll, "per_poll_basis": per_poll_basis,
        "requests_window": api(stats_all), "requests_by_route": stats_all["requests"],
        "cpu_pct": 100.0 * (cpu1 - cpu0) / window, "rss_mib": sampler.rss_max / 2**20,
        # Only triggers polling (all deferred -> the first run's end): the cost of waiting, without
        # the triggerer's per-completion work (events written, triggers cleaned up).
        "steady_cpu_pct": 100.0 * (steady["cpu"] - cpu0) / steady["seconds"] if steady else float("nan"),
        "measured": len(detect), "ended_early": early, "not_success": failed, "retried": retried,
        "load_before": load_before, "load_after": os.getloadavg(),
    }


def run_benchmark(sizes: list[int], args: argparse.Namespace, workdir: Path, command: str) -> list[dict[str, Any]]:
    from benchmarks.triggerer_scale import StandIn
    from kfp_bridge.local.airflow import AirflowStack

    stand_in = StandIn(workdir)
    capacity = max(sizes) + 50
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "kfp", "host": stand_in.host, "extra": {"token_path": str(stand_in.token_file)}}),
        # The DAG and the triggerer import the baseline trigger from this file.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__TRIGGERER__CAPACITY": str(capacity),
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(capacity),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(capacity),
    }
    results = []
    try:
        with AirflowStack(home=workdir / "airflow", dags_folder=workdir / "dags", env=env) as stack:
            stack.request_timeout = 120.0
            stack.wait_ready(600)
            for kind in args.kinds:
                stack.add_dag_file(dag_source(kind, args.poll_interval, capacity), f"bench_triggerer_{kind}.py")
            for kind in args.kinds:
                stack.wait_dag_parsed(f"bench_triggerer_{kind}", 600)
            for n in sizes:
                for kind in args.kinds:
                    result = measure(stack, stand_in, kind, n, args) | {"command": command}
                    (workdir / f"result-{kind}-{n}.json").write_text(json.dumps(result, indent=1))
                    print(detail_line(result), flush=True)
                    results.append(result)
                pair = {r["kind"]: r for r in results if r["runs"] == n}
                if "provider" in pair:
                    print(last_line(pair), flush=True)
    finally:
        stand_in.stop()
    return results


# ----- output -------------------------------------------------------------------------------------------


def detail_line(r: dict[str, Any]) -> str:
    return (f"# {r['kind']} N={r['runs']} S={r['poll_interval']:g}: detect p50={r['detect_p50_s']:.2f}s "
            f"p99={r['detect_p99_s']:.2f}s max={r['detect_max_s']:.2f}s handback p99={r['handback_p99_s']:.2f}s "
            f"req/run/poll={r['per_run_per_poll']:.3f} ({r['per_poll_basis']}; {r['requests_window']} requests "
            f"in the window) cpu={r['cpu_pct']:.1f}% (steady {r.get('steady_cpu_pct', float('nan')):.1f}%) rss={r['rss_mib']:.0f}MiB window={r['window_s']:.0f}s "
            f"all deferred after {r['defer_s']:.0f}s measured={r['measured']} ended_early={r['ended_early']} "
            f"not_success={r['not_success']} retried={r['retried']} | load1 {r['load_before'][0]:.1f}->{r['load_after'][0]:.1f}")


def last_line(pair: dict[str, dict[str, Any]]) -> str:
    p = pair["provider"]
    b = pair.get("baseline")
    base = f"{b['cpu_pct']:.1f}" if b else "nan"
    return (f"runs={p['runs']} detect_p99_s={p['detect_p99_s']:.2f} "
            f"api_requests_per_run_per_poll={p['per_run_per_poll']:.3f} triggerer_cpu_pct={p['cpu_pct']:.1f} "
            f"rss_mib={p['rss_mib']:.0f} baseline_cpu_pct={base}")


def docs_section(results: list[dict[str, Any]], command: str) -> str:
    rows = []
    for r in results:
        rows.append(
            f"| {r['runs']} | {r['kind']} | {r['poll_interval']:g} | {r['detect_p50_s']:.2f} | {r['detect_p99_s']:.2f} | "
            f"{r['handback_p99_s']:.2f} | {r['per_run_per_poll']:.3f} | {r['cpu_pct']:.1f} | {r.get('steady_cpu_pct', float('nan')):.1f} | {r['rss_mib']:.0f} | "
            f"{r['defer_s']:.0f} | {r['window_s']:.0f} | {r['measured']} / {r['ended_early']} | "
            f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f} |"
        )
    s = results[0]["poll_interval"]
    return "\n".join([
        "## Airflow's triggerer (`benchmarks/triggerer_airflow.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {report.machine_facts()}; Airflow stack on PostgreSQL "
        f"(LocalExecutor, one triggerer). Command: `{command}`"
        + "".join(f"; `{c}`" for c in dict.fromkeys(r.get("command", "") for r in results) if c and c != command)
        + ".",
        f"Poll interval S = {s:g} s unless the S column says otherwise. N deferred `KfpRunOperator` tasks (one mapped task) on the KFP stand-in's "
        "synthetic runs. **provider**: `KfpRunTrigger` (shared poller: ListRuns, IN on run_id, 200 per page). "
        "**baseline**: the same operator deferring to a plain trigger that calls `get_run` per run every S s.",
        "Targets at N=1000: detect p99 ≤ S + 2 s, ≤ 0.1 requests/run/poll, triggerer CPU ≤ 10 % of one core. "
        "retried = tasks with more than one try (a task process that lost the api-server on the loaded machine; "
        "a retried wait reattaches to its run): "
        + ", ".join(f"N={r['runs']} {r['kind']} {r.get('retried', 0)}" for r in results) + ".",
        "",
        "| N | follower | S s | detect p50 s | detect p99 s | handback p99 s | req/run/poll | triggerer CPU % | steady CPU % | RSS MiB "
        "| all deferred after s | window s | runs measured / ended early | load1 before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Detect = task `end_date` − the run's exact end on the server (trigger, scheduler, and a worker process "
        "running `execute_complete`); handback = the resumed task's `queued_dttm` − the same (no worker start). "
        "req/run/poll = `/apis/` requests the stand-in counted while only triggers polled (all deferred → first run "
        "ended) ÷ (N × span ÷ S). CPU = user+system of the triggerer process tree over the window (all N deferred → "
        "all N done), % of one core; steady CPU = the same while only triggers polled (all deferred → first run ended), "
        "without the triggerer's per-completion work; RSS = its largest resident set. Runs that ended before all N were deferred are "
        "not in the latency figures (column 'ended early'). The load column is the 1-minute load average: this "
        "machine is shared, and other work inflates latency and CPU.",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, help="synthetic run length, s (default 120 + 0.8 × N)")
    parser.add_argument("--jitter", type=float, default=60.0, help="extra random run length, up to this many s")
    parser.add_argument("--defer-timeout", type=float, help="how long N tasks may take to defer (default 600 + 4 × N)")
    parser.add_argument("--sweep", action="store_true", help=f"N in {SWEEP} and --runs; the --runs line last")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--write-docs", action="store_true", help="rewrite this table in docs/benchmarks.md")
    parser.add_argument("--workdir", help="keep the stack, logs and raw results here (default: a temp dir)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: print (and with --write-docs write) the results kept in --workdir")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.report_only and not args.workdir:
        parser.error("--report-only reads the result-*.json files of --workdir DIR")
    sizes = sorted(set(SWEEP) | {args.runs}) if args.sweep else [args.runs]
    command = "python benchmarks/triggerer_airflow.py " + " ".join(sys.argv[1:])
    if args.report_only:
        results = [json.loads(f.read_text()) for f in sorted(Path(args.workdir).glob("result-*.json"))]
        results.sort(key=lambda r: (r["runs"], KINDS.index(r["kind"])))
        if not results:
            parser.error(f"no result-*.json in {args.workdir}")
        for result in results:
            print(detail_line(result))
        first = results[0]
        command = first.get("command") or (  # results written before the command was kept in them
            f"python benchmarks/triggerer_airflow.py --runs {first['runs']} --poll-interval {first['poll_interval']:g} "
            f"--duration {first['duration']:g} --jitter {first['jitter']:g} --workdir {args.workdir}")
    else:
        with tempfile.TemporaryDirectory(prefix="kfp-bench-airflow-") as tmp:
            workdir = Path(args.workdir) if args.workdir else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            results = run_benchmark(sizes, args, workdir, command)
    if args.write_docs:
        report.write_section(DOCS, "triggerer_airflow", docs_section(results, command), preamble=(
            "# Benchmarks\n\nGenerated by the scripts in `benchmarks/` (`make bench`; `--write-docs` rewrites a "
            "section). Figures are what the scripts printed on the machine named in each section.\n"))
    pair = {r["kind"]: r for r in results if r["runs"] == (args.runs if not args.report_only else results[-1]["runs"])}
    if "provider" in pair:
        print(last_line(pair), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
