"""Run execution: one child process per run attempt, in its own session, watched by a thread.

The driver thread waits for a free slot, starts ``python -m kfp_bridge.local.kfp.child`` with
``start_new_session=True`` (so ``os.killpg`` reaches every component process), tails the child's
JSON-lines events into the run document, and finishes the run when the child exits. Nothing here
runs on the server's event loop.

Every change to a run goes through :meth:`Executor._commit`, which also rebuilds the run's Argo
nodes (``task_details``) and writes its pods. A terminated run ends FAILED, as on KFP 2.17 (fidelity
K2): ``TerminateRun`` sets ``activeDeadlineSeconds=0`` and Argo fails the workflow
(``backend/src/apiserver/resource/resource_manager.go``, ``common/util/workflow.go`` ``IsTerminating``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp_bridge.local.kfp import progress, specs
from kfp_bridge.local.kfp.pods import PodWriter
from kfp_bridge.local.kfp.store import Store
from kfp_bridge.local.kfp.synthetic import SyntheticRuns

ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELING")
KILL_GRACE_SECONDS = 1.0
TERMINATED_MESSAGE = "the run was terminated (activeDeadlineSeconds=0)"
_log = logging.getLogger(__name__)


@dataclass
class _Active:
    attempt: int
    cancel: bool = False
    proc: subprocess.Popen[bytes] | None = None


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _belongs_to_run(pid: int, run_id: str) -> bool:
    """Guard against pid reuse before killing a process group left over from a dead server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return run_id.encode() in cmdline and b"kfp_bridge.local.kfp.child" in cmdline


class Executor:
    """:param store: where run documents live.
    :param runs_dir: one folder per run (spec, events, logs, outputs).
    :param max_parallel: how many runs execute at once; the rest wait in PENDING.
    :param synthetic: when given and enabled (admin only), new runs are simulated instead of executed.
    """

    def __init__(self, store: Store, runs_dir: Path, max_parallel: int | None = None,
                 synthetic: SyntheticRuns | None = None) -> None:
        self._store = store
        self.synthetic = synthetic
        self._runs_dir = runs_dir
        self._slots = threading.BoundedSemaphore(max_parallel or max(4, os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._active: dict[str, _Active] = {}
        self._stopping = threading.Event()
        self.pods = PodWriter(runs_dir.parent / "pods")
        self._specs: dict[str, dict[str, Any]] = {}

    def run_dir(self, run_id: str) -> Path:
        return self._runs_dir / run_id

    # ----- public operations (called from request threads) -----

    def start(self, run_id: str, attempt: int) -> None:
        if self.synthetic is not None and self.synthetic.enabled:
            self.synthetic.start(run_id)
            return
        if attempt > 1:
            # A retried run's failed DAG nodes are Running again at once (GenerateRetryExecution).
            self._commit(run_id, lambda doc: None)
        active = _Active(attempt=attempt)
        with self._lock:
            self._active[run_id] = active
        threading.Thread(target=self._drive, args=(run_id, active), name=f"run-{run_id[:8]}", daemon=True).start()

    def terminate(self, run_id: str) -> None:
        """Kill the run's process tree; the driver thread then records FAILED (Argo's deadline verdict)."""
        if self.synthetic is not None and self.synthetic.terminate(run_id):
            return
        with self._lock:
            active = self._active.get(run_id)
            if active is None:
                proc = None
            else:
                active.cancel = True
                proc = active.proc
        if active is None:
            # No driver (should not happen for an active run): close the run right here.
            self._commit(run_id, lambda d: progress.finish(d, "FAILED", time.time(), TERMINATED_MESSAGE))
            return
        if proc is not None:
            _kill_group(proc.pid, signal.SIGTERM)
            threading.Timer(KILL_GRACE_SECONDS, _kill_group, args=(proc.pid, signal.SIGKILL)).start()

    def is_active(self, run_id: str) -> bool:
        if self.synthetic is not None and self.synthetic.owns(run_id):
            return True
        with self._lock:
            return run_id in self._active

    def recover(self) -> None:
        """At startup: runs that were executing when the server died end FAILED; pods of deleted runs go."""
        self.pods.prune({doc["run_id"] for doc in self._store.all("runs")})
        for doc in self._store.all("runs"):
            if doc.get("state") not in ACTIVE_STATES:
                continue
            run_id = doc["run_id"]
            pid = doc.get("_pid")
            if pid and _belongs_to_run(pid, run_id):
                _kill_group(pid, signal.SIGKILL)
            self._apply_events(run_id, int(doc.get("_attempt", 1)))
            now = time.time()
            if doc["state"] == "CANCELING":
                message = TERMINATED_MESSAGE
            else:
                message = progress.RESTART_MESSAGE.format(run_id=run_id)
            self._commit(run_id, lambda d, m=message, t=now: progress.finish(d, "FAILED", t, m))

    def shutdown(self) -> None:
        """Stop watching and kill every running process tree; the next start marks those runs FAILED."""
        self._stopping.set()
        if self.synthetic is not None:
            self.synthetic.shutdown()
        with self._lock:
            procs = [a.proc for a in self._active.values() if a.proc is not None]
        for proc in procs:
            _kill_group(proc.pid, signal.SIGKILL)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # ----- run documents -----

    def spec_of(self, run_id: str) -> dict[str, Any]:
        spec = self._specs.get(run_id)
        if spec is None:
            stored = (self._store.get("specs", run_id) or {}).get("spec") or {}
            spec = specs.inner_spec(stored) if stored else {}
            self._specs[run_id] = spec
        return spec

    def _commit(self, run_id: str, change: Any) -> None:
        """Apply ``change`` to the run, rebuild its Argo nodes, and write its pods."""
        spec = self.spec_of(run_id)
        nodes: list[dict[str, Any]] = []

        def apply(doc: dict[str, Any]) -> None:
            change(doc)
            try:
                nodes[:] = progress.refresh(doc, spec, time.time())
            except Exception:  # a node-building bug must not stop the run's own state from moving
                _log.exception("could not build the Argo nodes of run %s", run_id)

        doc = self._store.update("runs", run_id, apply)
        if doc is not None and nodes:
            try:
                self.pods.write(doc, nodes, self.run_dir(run_id))
            except OSError:  # pods are a debugging aid; a full disk must not stop the run
                pass

    def forget(self, run_id: str, doc: dict[str, Any]) -> None:
        """The run was deleted: drop its cached spec and its pods."""
        self._specs.pop(run_id, None)
        self.pods.remove_run(doc)

    # ----- driver thread -----

    def _prepare(self, run_id: str, attempt: int) -> Path:
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_doc = self._store.get("specs", run_id) or {}
        run = self._store.get("runs", run_id) or {}
        spec = specs.inner_spec(spec_doc.get("spec") or {})
        (run_dir / "pipeline.json").write_text(json.dumps(spec))
        params = (run.get("runtime_config") or {}).get("parameters") or {}
        (run_dir / "params.json").write_text(json.dumps(params))
        # Cross-run step cache, per pipeline name as the driver scopes it ("pipeline/<name>",
        # backend/src/v2/driver/cache.go); kfp.local computes the key from component + inputs.
        name = str((spec.get("pipelineInfo") or {}).get("name") or "pipeline").replace("/", "_")
        context = {"cache_root": str(self._runs_dir.parent / "cache" / name)}
        (run_dir / "context.json").write_text(json.dumps(context))
        return run_dir

    def _drive(self, run_id: str, active: _Active) -> None:
        acquired = False
        try:
            while not (acquired := self._slots.acquire(timeout=0.2)):
                if active.cancel or self._stopping.is_set():
                    break
            if self._stopping.is_set():
                return
            if active.cancel:
                self._commit(run_id, lambda d: progress.finish(d, "FAILED", time.time(), TERMINATED_MESSAGE))
                return
            self._execute(run_id, active)
        except Exception as exc:  # a bug here must not leave the run RUNNING forever
            message = f"the stand-in could not execute this run: {exc.__class__.__name__}: {exc}"
            self._commit(run_id, lambda d: progress.finish(d, "FAILED", time.time(), message))
        finally:
            self._specs.pop(run_id, None)
            if acquired:
                self._slots.release()
            with self._lock:
                if self._active.get(run_id) is active:
                    del self._active[run_id]

    def _execute(self, run_id: str, active: _Active) -> None:
        run_dir = self._prepare(run_id, active.attempt)
        log_path = run_dir / f"log-{active.attempt}.txt"
        with self._lock:
            if active.cancel:
                proc = None
            else:
                with log_path.open("ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "kfp_bridge.local.kfp.child", str(run_dir), str(active.attempt)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        cwd=str(run_dir),
                        start_new_session=True,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )
                active.proc = proc
        if proc is None:
            self._commit(run_id, lambda d: progress.finish(d, "FAILED", time.time(), TERMINATED_MESSAGE))
            return

        def started(doc: dict[str, Any]) -> None:
            doc["_pid"] = proc.pid
            if doc["state"] == "PENDING":
                progress.transition(doc, "RUNNING", time.time())

        self._commit(run_id, started)
        while True:
            code = proc.poll()
            self._apply_events(run_id, active.attempt)
            if code is not None:
                break
            if self._stopping.wait(0.1):
                return
        # Component processes that outlived the child must not keep running after the run ends.
        _kill_group(proc.pid, signal.SIGKILL)
        self._finish(run_id, active, code, log_path)

    def _finish(self, run_id: str, active: _Active, code: int, log_path: Path) -> None:
        now = time.time()

        def close(doc: dict[str, Any]) -> None:
            outcome = doc.pop("_outcome", None) or {}
            if active.cancel or doc["state"] == "CANCELING":
                progress.finish(doc, "FAILED", now, TERMINATED_MESSAGE)
                return
            if code == 0 and outcome.get("state") == "SUCCEEDED":
                progress.finish(doc, "SUCCEEDED", now)
                return
            failed = progress.failed_steps(doc)
            summary = f"failed steps: {', '.join(failed)}" if failed else ""
            if outcome.get("error"):
                message = outcome["error"] + (f" ({summary})" if summary else "")
            elif code < 0:
                message = f"the run's executor process was killed by signal {-code}; log: {log_path}"
            else:
                message = f"the run's executor process exited with code {code}; log: {log_path}"
            progress.finish(doc, "FAILED", now, message)

        self._commit(run_id, close)
        # KFP puts no error text on the run (fidelity K4); the stand-in's own log says why it ended.
        doc = self._store.get("runs", run_id) or {}
        if doc.get("state") == "FAILED":
            _log.info("run %s ended FAILED: %s", run_id, doc.get("_message", ""))

    def _apply_events(self, run_id: str, attempt: int) -> None:
        path = self.run_dir(run_id) / f"events-{attempt}.jsonl"
        doc = self._store.get("runs", run_id)
        if doc is None or not path.exists():
            return
        offset = int(doc.get("_event_offset") or 0)
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return  # nothing complete yet; a half-written line waits for the next poll
        lines = chunk[: end + 1].splitlines()
        events = [json.loads(line) for line in lines if line.strip()]

        def fold(d: dict[str, Any]) -> None:
            for event in events:
                progress.apply_event(d, event)
            d["_event_offset"] = offset + end + 1

        self._commit(run_id, fold)
