"""How many deferred KFP runs one triggerer process can follow, against what users write today.

One invocation, per N:

1. starts the embedded KFP stand-in (``kfp-bridge local kfp --admin``, bearer token on) and
   switches on its admin-only synthetic runs (``POST /_admin/synthetic``): runs go PENDING →
   RUNNING → SUCCEEDED on a timer of ``--duration`` + up to ``--jitter`` seconds without executing,
   and the server keeps each run's exact terminal time (``GET /_admin/synthetic/finished``);
2. **triggers**: a child process (the "triggerer"; ``--role triggerer``) imports Airflow and the
   provider, then runs N ``KfpRunTrigger`` s as the triggerer does, ``async for event in
   trigger.run()`` in one asyncio loop, each on its own freshly created run. Their polling is the
   provider's shared poller (``kfp_bridge.triggers.kfp_poller``: ListRuns, ``IN`` filter on run_id,
   200 per page);
3. **baseline**: another child process (``--role baseline``) follows N fresh runs the way users
   write it today: one thread per run calling ``kfp.Client.wait_for_run_completion(run_id,
   sleep_duration=S)`` (``get_run`` + ``sleep(S)``).

Figures, per phase, over its measured window (all N followers started → last one done):

* ``detect_p99_s``: 99th percentile of (time the follower saw the final state − the run's exact
  terminal time on the server);
* ``api_requests_per_run_per_poll``: ``/apis/`` requests the server counted in the window ÷ the
  polls N per-run pollers would have made (Σ over runs of time followed ÷ S);
* ``triggerer_cpu_pct`` / ``baseline_cpu_pct``: user+system CPU of that child process in the
  window as % of one core; ``rss_mib``: the triggerer process's resident memory at the end.

The phases run one after the other so they do not share the two cores. The last line is exactly::

    runs=N detect_p99_s=X api_requests_per_run_per_poll=Y triggerer_cpu_pct=Z rss_mib=W baseline_cpu_pct=B

``--sweep`` measures N = 100, 500, 1000, 2000 and ends with the ``--runs`` line; ``--write-docs``
rewrites this benchmark's table in docs/benchmarks.md. Load average is printed with each result:
on a busy machine the CPU and latency figures include other work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: benchmarks/ is on the path, the repo is not
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.report import machine_facts  # noqa: E402

PIPELINE = ROOT / "dags" / "pipelines" / "iris.yaml"
CONN_ID = "kfp_bench"
SWEEP = (100, 500, 1000, 2000)
DOCS = ROOT / "docs" / "benchmarks.md"


# ----- the stand-in ------------------------------------------------------------------------------


class StandIn:
    def __init__(self, workdir: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self.token = f"bench-{secrets.token_hex(8)}"
        self.token_file = workdir / "token"
        self.token_file.write_text(self.token + "\n")
        self.log = (workdir / "kfp-server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kfp_bridge.cli", "local", "kfp", "--port", str(self.port),
             "--state-dir", str(workdir / "state"), "--token-file", str(self.token_file), "--admin"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT),
        )
        import httpx

        self.http = httpx.Client(base_url=self.host, headers={"authorization": f"Bearer {self.token}"}, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http.get("/apis/v2beta1/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"KFP stand-in did not start; see {workdir / 'kfp-server.log'}")
            time.sleep(0.2)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"/_admin/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def create_runs(stand_in: StandIn, n: int, version: tuple[str, str], experiment_id: str) -> list[str]:
    """N runs of the uploaded pipeline version (as KfpRunOperator submits them), 4 at a time."""
    pipeline_id, version_id = version

    def create(i: int) -> str:
        body = {"display_name": f"bench-{i}", "experiment_id": experiment_id,
                "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
                "runtime_config": {"parameters": {"model_dir": f"/tmp/bench/{i}"}}}
        response = stand_in.http.post("/apis/v2beta1/runs", json=body)
        response.raise_for_status()
        return response.json()["run_id"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(create, range(n)))


# ----- child processes -----------------------------------------------------------------------------


def _window_result(started: float, cpu0: float, seen: dict[str, float], begun: dict[str, float],
                   stats: dict[str, Any]) -> dict[str, Any]:
    ended = time.time()
    times = os.times()
    return {"window_s": ended - started, "cpu_s": times.user + times.system - cpu0, "seen": seen, "begun": begun,
            "requests": stats}


def role_triggerer(args: argparse.Namespace) -> None:
    import httpx
    import psutil

    from kfp_bridge.triggers.kfp import KfpRunTrigger

    admin = httpx.Client(base_url=args.host, headers={"authorization": f"Bearer {args.token}"}, timeout=60)
    Path(args.ready).touch()
    run_ids: list[str] = json.loads(sys.stdin.readline())
    seen: dict[str, float] = {}
    events: dict[str, list[dict]] = {}

    async def follow(trigger: KfpRunTrigger) -> None:
        async for event in trigger.run():
            seen.setdefault(trigger.run_id, time.time())
            events.setdefault(trigger.run_id, []).append(event.payload)

    async def main() -> dict[str, Any]:
        admin.post("/_admin/stats/reset").raise_for_status()
        times = os.times()
        cpu0, started = times.user + times.system, time.time()
        begun = dict.fromkeys(run_ids, started)
        tasks = [asyncio.create_task(follow(KfpRunTrigger(run_id=r, kfp_conn_id=CONN_ID, poll_interval=args.poll_interval)))
                 for r in run_ids]
        await asyncio.gather(*tasks)
        stats = admin.get("/_admin/stats").json()
        return _window_result(started, cpu0, seen, begun, stats)

    result = asyncio.run(main())
    result["rss_mib"] = psutil.Process().memory_info().rss / 2**20
    result["bad_events"] = {r: e for r, e in events.items() if len(e) != 1 or e[0].get("status") != "success"}
    Path(args.result).write_text(json.dumps(result))


def role_baseline(args: argparse.Namespace) -> None:
    import httpx
    import kfp

    admin = httpx.Client(base_url=args.host, headers={"authorization": f"Bearer {args.token}"}, timeout=60)
    run_ids: list[str] = []
    seen: dict[str, float] = {}
    failures: dict[str, str] = {}
    go = threading.Event()
    clients_ready = threading.Semaphore(0)

    def user_code(index: int) -> None:
        # What a PythonOperator (or a script) per run does today.
        client = kfp.Client(host=args.host, existing_token=args.token)
        clients_ready.release()
        go.wait()
        run_id = run_ids[index]
        try:
            client.wait_for_run_completion(run_id, timeout=3600, sleep_duration=args.poll_interval)
            seen[run_id] = time.time()
        except Exception as exc:  # noqa: BLE001 - reported, not raised, so one failure does not hang the benchmark
            failures[run_id] = repr(exc)

    threads = [threading.Thread(target=user_code, args=(i,), daemon=True) for i in range(args.runs)]
    for thread in threads:
        thread.start()
    for _ in threads:
        clients_ready.acquire()
    Path(args.ready).touch()
    run_ids.extend(json.loads(sys.stdin.readline()))
    admin.post("/_admin/stats/reset").raise_for_status()
    times = os.times()
    cpu0, started = times.user + times.system, time.time()
    go.set()
    for thread in threads:
        thread.join()
    result = _window_result(started, cpu0, seen, dict.fromkeys(run_ids, started), admin.get("/_admin/stats").json())
    result["bad_events"] = failures
    Path(args.result).write_text(json.dumps(result))


def run_child(role: str, stand_in: StandIn, workdir: Path, n: int, poll_interval: float,
              make_runs: Any) -> dict[str, Any]:
    ready, result = workdir / f"{role}-{n}.ready", workdir / f"{role}-{n}.json"
    env = {**os.environ, f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
        {"conn_type": "kfp", "host": stand_in.host, "extra": {"token_path": str(stand_in.token_file)}})}
    with (workdir / f"{role}-{n}.log").open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, __file__, "--role", role, "--runs", str(n), "--poll-interval", str(poll_interval),
             "--host", stand_in.host, "--token", stand_in.token, "--ready", str(ready), "--result", str(result)],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT), text=True,
        )
        while not ready.exists():
            if child.poll() is not None:
                raise RuntimeError(f"{role} child exited early; see {workdir / f'{role}-{n}.log'}")
            time.sleep(0.2)
        run_ids = make_runs()
        server_cpu0 = stand_in.cpu_seconds()
        assert child.stdin is not None
        child.stdin.write(json.dumps(run_ids) + "\n")
        child.stdin.flush()
        if child.wait() != 0:
            raise RuntimeError(f"{role} child failed; see {workdir / f'{role}-{n}.log'}")
    out = json.loads(result.read_text())
    out["server_cpu_s"] = stand_in.cpu_seconds() - server_cpu0
    return out


# ----- figures ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def figures(raw: dict[str, Any], finished: dict[str, float], poll_interval: float) -> dict[str, Any]:
    latencies = [raw["seen"][r] - finished[r] for r in raw["seen"] if r in finished]
    followed = sum(raw["seen"].get(r, raw["begun"][r] + raw["window_s"]) - raw["begun"][r] for r in raw["begun"])
    polls = followed / poll_interval
    api = sum(count for route, count in raw["requests"]["requests"].items() if " /apis/" in route)
    return {
        "detect_p50_s": statistics.median(latencies) if latencies else float("nan"),
        "detect_p99_s": percentile(latencies, 0.99),
        "detect_max_s": max(latencies, default=float("nan")),
        "per_run_per_poll": api / polls if polls else float("nan"),
        "api_requests": api,
        "requests": raw["requests"]["requests"],
        "cpu_pct": 100.0 * raw["cpu_s"] / raw["window_s"],
        "server_cpu_pct": 100.0 * raw["server_cpu_s"] / raw["window_s"],
        "window_s": raw["window_s"],
        "missed": len(raw["begun"]) - len(latencies),
        "bad_events": len(raw["bad_events"]),
    }


def measure(n: int, poll_interval: float, duration: float, jitter: float, workdir: Path) -> dict[str, Any]:
    side = workdir / f"n{n}"
    side.mkdir(parents=True, exist_ok=True)
    stand_in = StandIn(side)
    load_before = os.getloadavg()
    try:
        client_http = stand_in.http
        with PIPELINE.open("rb") as package:
            uploaded = client_http.post("/apis/v2beta1/pipelines/upload", params={"name": f"bench-{n}"},
                                        files={"uploadfile": ("iris.yaml", package, "application/octet-stream")})
        uploaded.raise_for_status()
        pipeline_id = uploaded.json()["pipeline_id"]
        versions = client_http.get(f"/apis/v2beta1/pipelines/{pipeline_id}/versions").json()["pipeline_versions"]
        version = (pipeline_id, versions[0]["pipeline_version_id"])
        experiment_id = client_http.post("/apis/v2beta1/experiments", json={"display_name": f"bench-{n}"}).json()[
            "experiment_id"]
        stand_in.admin("POST", "synthetic", {"enabled": True, "duration_seconds": duration, "jitter_seconds": jitter,
                                             "seed": n})
        results = {}
        for role in ("triggerer", "baseline"):
            raw = run_child(role, stand_in, side, n, poll_interval,
                            lambda: create_runs(stand_in, n, version, experiment_id))
            finished = stand_in.admin("GET", "synthetic/finished")["finished"]
            results[role] = figures(raw, finished, poll_interval)
            if role == "triggerer":
                results[role]["rss_mib"] = raw["rss_mib"]
    finally:
        stand_in.stop()
    return {"runs": n, "poll_interval": poll_interval, "duration": duration, "jitter": jitter,
            "load_before": load_before, "load_after": os.getloadavg(), **results}


def last_line(r: dict[str, Any]) -> str:
    t, b = r["triggerer"], r["baseline"]
    return (f"runs={r['runs']} detect_p99_s={t['detect_p99_s']:.2f} "
            f"api_requests_per_run_per_poll={t['per_run_per_poll']:.3f} triggerer_cpu_pct={t['cpu_pct']:.1f} "
            f"rss_mib={t['rss_mib']:.0f} baseline_cpu_pct={b['cpu_pct']:.1f}")


def detail_line(r: dict[str, Any]) -> str:
    t, b = r["triggerer"], r["baseline"]
    return (f"# N={r['runs']} S={r['poll_interval']:g}: triggers p50={t['detect_p50_s']:.2f}s max={t['detect_max_s']:.2f}s "
            f"requests={t['api_requests']} server_cpu={t['server_cpu_pct']:.1f}% missed={t['missed']} "
            f"bad_events={t['bad_events']} | baseline p99={b['detect_p99_s']:.2f}s "
            f"req/run/poll={b['per_run_per_poll']:.3f} requests={b['api_requests']} "
            f"server_cpu={b['server_cpu_pct']:.1f}% missed={b['missed']} failures={b['bad_events']} | "
            f"load1 {r['load_before'][0]:.1f}->{r['load_after'][0]:.1f}")


# ----- docs ------------------------------------------------------------------------------------------


def write_section(name: str, body: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, keeping the rest."""
    report.write_section(DOCS, name, body, preamble=(
        "# Benchmarks\n\nGenerated by the scripts in `benchmarks/` (`make bench`; `--write-docs` rewrites a section). "
        "Figures are what the scripts printed on the machine named in each section.\n"))


def docs_section(results: list[dict[str, Any]], command: str) -> str:
    rows = []
    for r in results:
        t, b = r["triggerer"], r["baseline"]
        rows.append(
            f"| {r['runs']} | {t['detect_p99_s']:.2f} | {t['per_run_per_poll']:.4f} | {t['cpu_pct']:.1f} | "
            f"{t['rss_mib']:.0f} | {b['detect_p99_s']:.2f} | {b['per_run_per_poll']:.3f} | {b['cpu_pct']:.1f} | "
            f"{t['server_cpu_pct']:.0f} / {b['server_cpu_pct']:.0f} | "
            f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f} |"
        )
    s = results[0]["poll_interval"]
    return "\n".join([
        "## Triggerer scale (`benchmarks/triggerer_scale.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine_facts()}. Command: `{command}`.",
        f"Poll interval S = {s:g} s; synthetic runs of {results[0]['duration']:g} s + up to {results[0]['jitter']:g} s.",
        "Triggers: `KfpRunTrigger`s in one asyncio process, coalesced by the shared poller (ListRuns, IN on run_id, "
        "200 per page). Baseline: one thread per run in `kfp.Client.wait_for_run_completion(sleep_duration=S)`.",
        f"Targets at N=1000: detect p99 ≤ S + 2 = {s + 2:g} s, requests/run/poll < 0.2 (coalesced), "
        "triggerer CPU ≤ 10 % of one core.",
        "",
        "| N | detect p99 s | req/run/poll | triggerer CPU % | RSS MiB | baseline p99 s | baseline req/run/poll "
        "| baseline CPU % | server CPU % (trig / base) | load1 before → after |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "CPU is user+system time of the process over the measured window (all followers started → last one done), "
        "as % of one core. Detection latency = when the follower saw the final state − the run's exact terminal time "
        "on the server. The load column is the 1-minute load average: other work on the machine inflates CPU and "
        "latency figures. A baseline req/run/poll below 1 means its threads could not keep up the poll rate "
        "(GIL and server saturation), which is also why its detection latency grows with N.",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0, help="synthetic run length, seconds")
    parser.add_argument("--jitter", type=float, default=30.0, help="extra random run length, up to this many seconds")
    parser.add_argument("--sweep", action="store_true", help=f"measure N in {SWEEP}, then print the --runs line last")
    parser.add_argument("--write-docs", action="store_true", help="rewrite this table in docs/benchmarks.md")
    parser.add_argument("--workdir", help="keep state, logs and raw results here (default: a temp dir)")
    parser.add_argument("--role", choices=("triggerer", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "triggerer":
        role_triggerer(args)
        return 0
    if args.role == "baseline":
        role_baseline(args)
        return 0

    sizes = sorted(set(SWEEP) | {args.runs}) if args.sweep else [args.runs]
    with tempfile.TemporaryDirectory(prefix="kfp-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        results = []
        for n in sizes:
            result = measure(n, args.poll_interval, args.duration, args.jitter, workdir)
            (workdir / f"result-{n}.json").write_text(json.dumps(result, indent=1))
            results.append(result)
            print(detail_line(result), flush=True)
            print(last_line(result), flush=True)
    if args.write_docs:
        command = "python benchmarks/triggerer_scale.py " + " ".join(sys.argv[1:])
        write_section("triggerer_scale", docs_section(results, command))
    if args.sweep:
        print(last_line(next(r for r in results if r["runs"] == args.runs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
