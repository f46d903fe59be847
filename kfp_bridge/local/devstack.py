"""``make up`` / ``make down``: the stand-ins and a local Airflow, detached, until stopped.

``up`` starts a supervisor process in its own session and returns once everything is healthy:

* the KFP stand-in and the Kubernetes/KServe stand-in, both requiring the bearer token in
  ``STATE/token`` (the projected-token pattern), with the ``iris`` InferenceService the demo uses;
* Airflow 3 (api-server, scheduler, dag-processor, triggerer on SQLite, LocalExecutor) reading this
  repository's ``dags/`` and ``plugins/``, with ``kfp_default`` and ``kubernetes_default`` pointing
  at the stand-ins.

The supervisor keeps them in the foreground (the same context managers the demo and the tests
use) and writes ``STATE/state.json``; ``down`` asks it to stop, then looks for any process whose
environment still carries ``KFP_BRIDGE_DEVSTACK=<state dir>`` (every process the stack started
inherits it: services, task runners, KFP steps, model servers) and kills what is left.

Configuration: ``--state-dir`` (or ``KFP_BRIDGE_DEVSTACK_DIR``, default ``.devstack/`` in the
repository) and ``--port`` (or ``KFP_BRIDGE_DEVSTACK_PORT``, default 8080; a busy 8080 falls back
to a free port). Development only: fixed dev secrets, the password is the user name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER_VAR = "KFP_BRIDGE_DEVSTACK"
STATE_FILE = "state.json"
LOG_FILE = "devstack.log"
DEFAULT_PORT = 8080
UP_TIMEOUT_S = float(os.environ.get("KFP_BRIDGE_DEVSTACK_TIMEOUT", "420"))
STOP_TIMEOUT_S = 90.0
LOGIN = ("admin", "admin")  # kfp_bridge.local.airflow.USERS: dev-only, password = user name


# ---- state ---------------------------------------------------------------------------------------
def default_state_dir() -> Path:
    return Path(os.environ.get("KFP_BRIDGE_DEVSTACK_DIR") or ROOT / ".devstack").resolve()


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_state(state_dir: Path, **values: Any) -> None:
    state = {**(read_state(state_dir) or {}), **values}
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)


def stack_processes(state_dir: Path) -> list[Any]:
    """Every live process (not this one) whose environment names this stack's state directory."""
    import psutil

    marker = str(state_dir)
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARKER_VAR) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---- the supervisor (runs detached; everything below lives in its `with`) -------------------------
def serve(state_dir: Path, port: int) -> int:
    """Run the stand-ins and Airflow until SIGTERM/SIGINT; report progress in state.json."""
    from kfp_bridge.demo import ISVC, _create_initial_service, _custom_objects
    from kfp_bridge.local.airflow import AirflowStack
    from kfp_bridge.local.launch import run_stand_in
    from kfp_bridge.local.up import connection_lines, kubernetes_extra

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # kfp.Client may write ~/.config/kfp; keep the developer's HOME out of it (as `make demo` does).
    os.environ["HOME"] = str(state_dir / "home")
    token_file = state_dir / "token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(24))
        token_file.chmod(0o600)
    _write_state(state_dir, status="starting", supervisor_pid=os.getpid(), marker=str(state_dir))
    try:
        with ExitStack() as stack:
            kfp = stack.enter_context(run_stand_in("kfp", state_dir / "kfp", token_file=token_file))
            kube = stack.enter_context(run_stand_in("kube", state_dir / "kube", token_file=token_file,
                                                    kube_options={"KFP_STATE_DIR": str(state_dir / "kfp")}))
            kubeconfig = state_dir / "kube" / "kubeconfig"
            print(f"KFP stand-in {kfp.url}; Kubernetes stand-in {kube.url}", flush=True)
            env = {
                "AIRFLOW_CONN_KFP_DEFAULT": json.dumps(
                    {"conn_type": "kfp", "host": kfp.url, "extra": {"token_path": str(token_file)}}
                ),
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                    {"conn_type": "kubernetes", "extra": kubernetes_extra(kubeconfig, kube.ingress_url)}
                ),
                # Scheduled runs start only when someone unpauses a DAG (the official compose default).
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            }
            airflow = AirflowStack(
                home=state_dir / "airflow", dags_folder=ROOT / "dags", plugins_folder=ROOT / "plugins",
                env=env, port=port,
            )
            stack.enter_context(airflow)  # starts the four services; health is awaited below
            _write_state(
                state_dir, url=airflow.base_url, kfp_url=kfp.url, kube_url=kube.url,
                kubeconfig=str(kubeconfig), token_file=str(token_file), airflow_home=str(airflow.home),
                connections=connection_lines(kfp.url, kubeconfig, token_file, kube.ingress_url),
            )
            # The InferenceService the platform team would already run (model server start-up
            # overlaps Airflow's).
            isvc = _create_initial_service(_custom_objects(kubeconfig), state_dir / "models" / "initial")
            print(f"InferenceService {ISVC} ready at {isvc['status']['url']}", flush=True)
            airflow.wait_ready(240)
            dags = _wait_dags_parsed(airflow, timeout=120)
            _write_state(state_dir, status="ready", inference_service=ISVC, dags=dags,
                         ready_s=round(airflow.timings.get("ready_s", 0.0), 1))
            print(f"ready: Airflow {airflow.base_url}, DAGs {dags}", flush=True)
            stop.wait()
            print("stopping ...", flush=True)
    except BaseException as exc:
        _write_state(state_dir, status="failed", error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    _write_state(state_dir, status="stopped")
    return 0


def _wait_dags_parsed(airflow: Any, timeout: float) -> list[str]:
    """Wait until every DAG file in dags/ is either serialized or reported as an import error."""
    expected = {p.name for p in (ROOT / "dags").glob("*.py")}
    deadline = time.monotonic() + timeout
    while True:
        dags = airflow.list_dags()
        seen = {Path(d.get("fileloc") or "").name for d in dags}
        seen |= {Path(str(e.get("filename", ""))).name for e in airflow.import_errors()}
        if expected <= seen or time.monotonic() > deadline:
            return sorted(d["dag_id"] for d in dags)
        time.sleep(1)


# ---- up / down -----------------------------------------------------------------------------------
def up(state_dir: Path, port: int | None, timeout: float = UP_TIMEOUT_S) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(state_dir)
    if state and state.get("status") == "ready" and _alive(state.get("supervisor_pid"), state_dir):
        _print_ready(state, already=True)
        return 0
    leftovers = stack_processes(state_dir)
    if leftovers:
        print(f"a previous stack under {state_dir} is still running (pids {[p.pid for p in leftovers]}); "
              "stopping it first", flush=True)
        down(state_dir)
    port = port or DEFAULT_PORT
    if not _port_free(port):
        from kfp_bridge.local.airflow import free_port

        fallback = free_port()
        print(f"port {port} is busy; the Airflow UI uses {fallback} instead", flush=True)
        port = fallback
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    log = state_dir / LOG_FILE
    env = {**os.environ, MARKER_VAR: str(state_dir), "PYTHONUNBUFFERED": "1"}
    print(f"starting the KFP and KServe stand-ins and Airflow (log: {log}) ...", flush=True)
    with log.open("ab") as out:
        # Own session and no inherited pipes: `make up` (and a test reading its output) returns
        # while the stack keeps running.
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "kfp_bridge.local.devstack", "_serve", "--state-dir", str(state_dir),
             "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(state_dir) or {}
        if state.get("status") == "ready":
            _print_ready(state)
            return 0
        failed = state.get("status") == "failed" or supervisor.poll() is not None
        if failed or time.monotonic() > deadline:
            reason = state.get("error") or (
                f"supervisor exited {supervisor.returncode}" if supervisor.poll() is not None
                else f"not ready within {timeout:.0f}s (status {state.get('status')!r})")
            print(f"make up FAILED: {reason}\n--- {log} (last lines) ---\n{_tail(log)}", flush=True)
            down(state_dir, quiet=True)
            return 1
        time.sleep(0.5)


def down(state_dir: Path, *, quiet: bool = False) -> int:
    import psutil

    state = read_state(state_dir) or {}
    pid = state.get("supervisor_pid")
    if _alive(pid, state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # the supervisor stops Airflow, then the stand-ins
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(STOP_TIMEOUT_S)
    leftovers = stack_processes(state_dir)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)
    remaining = stack_processes(state_dir)
    if remaining:
        print(f"make down: processes still running: {[p.pid for p in remaining]}", flush=True)
        return 1
    if state:
        _write_state(state_dir, status="stopped")
    if not quiet:
        if state or leftovers:
            killed = f" ({len(leftovers)} leftover process(es) killed)" if leftovers else ""
            print(f"stopped the local stack under {state_dir}{killed}; no process left", flush=True)
        else:
            print(f"no local stack was running under {state_dir}", flush=True)
    return 0


def _print_ready(state: dict[str, Any], *, already: bool = False) -> None:
    head = "already running" if already else "ready"
    lines = [
        f"kfp-bridge local stack {head}:",
        f"  Airflow UI:     {state['url']}   (login {LOGIN[0]} / {LOGIN[1]})",
        f"  KFP API:        {state['kfp_url']}",
        f"  Kubernetes API: {state['kube_url']} (kubeconfig {state['kubeconfig']})",
        f"  InferenceService {state.get('inference_service', 'iris')} in namespace default",
        f"  DAGs:           {', '.join(state.get('dags') or []) or '(none parsed yet)'} (paused; unpause or trigger in the UI)",
        "  To point another Airflow at these stand-ins:",
        *(f"    {line}" for line in state.get("connections") or []),
        "Stop everything with: make down",
    ]
    print("\n".join(lines), flush=True)


def _alive(pid: Any, state_dir: Path) -> bool:
    """Whether ``pid`` is this stack's live supervisor (a reused pid carries no marker)."""
    import psutil

    if not isinstance(pid, int):
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(MARKER_VAR) == str(state_dir)
    except psutil.Error:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kfp_bridge.local.devstack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "_serve"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--state-dir", type=Path, default=None, help="default: $KFP_BRIDGE_DEVSTACK_DIR or .devstack/")
        if name != "down":
            env_port = os.environ.get("KFP_BRIDGE_DEVSTACK_PORT")
            cmd.add_argument("--port", type=int, default=int(env_port) if env_port else None,
                             help=f"Airflow UI port (default {DEFAULT_PORT}; $KFP_BRIDGE_DEVSTACK_PORT)")
    args = parser.parse_args(argv)
    state_dir = (args.state_dir or default_state_dir()).resolve()
    if args.command == "up":
        return up(state_dir, args.port)
    if args.command == "down":
        return down(state_dir)
    return serve(state_dir, args.port or DEFAULT_PORT)


if __name__ == "__main__":
    sys.exit(main())
