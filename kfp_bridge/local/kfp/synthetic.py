"""Synthetic runs: runs that go PENDING → RUNNING → final on a timer instead of executing.

Only reachable with ``--admin`` (``POST /_admin/synthetic``, see :mod:`~kfp_bridge.local.kfp.admin`)
and off by default. Benchmarks need hundreds of runs of a known duration, and executing them with
kfp.local would need hundreds of child processes. A synthetic run still walks its pipeline's root
tasks one after another (so per-step progress has something to show, as the same Argo nodes a real
run reports: argo_nodes.py) and gets a real ``finished_at``; the exact terminal time (the wire format has whole seconds) is kept for
``GET /_admin/synthetic/finished``.

One scheduler thread drives every synthetic run from a heap of due steps, so a thousand runs cost a
thousand heap entries rather than a thousand threads.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kfp_bridge.local.kfp import progress, specs
from kfp_bridge.local.kfp.store import Store
from kfp_bridge.local.kfp.wire import bad_request

FINAL_STATES = ("SUCCEEDED", "FAILED")
# A synthetic run waits this long in PENDING, like a real run waiting for its first pod.
PENDING_SECONDS = 0.2


@dataclass
class Settings:
    enabled: bool = False
    duration_seconds: float = 5.0
    jitter_seconds: float = 0.0
    outcomes: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "duration_seconds": self.duration_seconds,
                "jitter_seconds": self.jitter_seconds, "outcomes": dict(self.outcomes)}


def plan(run_id: str, tasks: list[str], start: float, duration: float) -> list[tuple[float, str, int]]:
    """The (time, run_id, step) schedule of one run: step 0 starts it, step i>0 ends task i-1.

    Tasks run one after another and share the duration evenly; the last step ends the run.
    """
    slots = max(1, len(tasks))
    running_at = start + min(PENDING_SECONDS, duration / 2)
    per_task = (start + duration - running_at) / slots
    return [(running_at, run_id, 0)] + [(running_at + per_task * (i + 1), run_id, i + 1) for i in range(slots)]


class SyntheticRuns:
    """:param store: where run documents live. :param clock: wall time (injected for tests)."""

    _FIELDS = {"enabled", "duration_seconds", "jitter_seconds", "outcomes", "seed"}

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Condition()
        self._settings = Settings()
        self._random = random.Random()
        self._heap: list[tuple[float, str, int]] = []
        self._active: dict[str, str] = {}  # run id -> the final state it will reach
        self._specs: dict[str, dict[str, Any]] = {}
        self._finished: dict[str, float] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ----- settings (admin endpoint) -----

    def configure(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request('synthetic settings must be a JSON object such as {"enabled": true, "duration_seconds": 30}')
        unknown = set(body) - self._FIELDS
        if unknown:
            raise bad_request(f"unknown synthetic settings {sorted(unknown)}; use {sorted(self._FIELDS)}")
        try:
            enabled = bool(body.get("enabled", True))
            duration = float(body.get("duration_seconds", 5.0))
            jitter = float(body.get("jitter_seconds", 0.0))
        except (TypeError, ValueError) as exc:
            raise bad_request(f"duration_seconds and jitter_seconds must be numbers: {exc}") from exc
        if duration <= 0 or jitter < 0:
            raise bad_request("duration_seconds must be positive and jitter_seconds not negative")
        outcomes = body.get("outcomes") or {}
        if not isinstance(outcomes, dict) or any(v not in FINAL_STATES for v in outcomes.values()):
            raise bad_request(f"outcomes maps a run display_name to one of {list(FINAL_STATES)}, e.g. {{\"r1\": \"FAILED\"}}")
        with self._lock:
            self._settings = Settings(enabled, duration, jitter, {str(k): v for k, v in outcomes.items()})
            self._random = random.Random(body.get("seed"))
        return self.describe()

    def disable(self) -> None:
        with self._lock:
            self._settings = Settings()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**self._settings.describe(), "active_runs": len(self._active)}

    @property
    def enabled(self) -> bool:
        with self._lock:
            return self._settings.enabled

    def finished_times(self) -> dict[str, float]:
        """Exact terminal times (Unix seconds) of synthetic runs that ended."""
        with self._lock:
            return dict(self._finished)

    # ----- run control (executor) -----

    def start(self, run_id: str) -> None:
        doc = self._store.get("runs", run_id) or {}
        stored = (self._store.get("specs", run_id) or {}).get("spec") or {}
        spec = specs.inner_spec(stored) if stored else {}
        tasks = specs.root_task_names(spec)
        with self._lock:
            self._specs[run_id] = spec
            settings = self._settings
            duration = settings.duration_seconds + self._random.uniform(0, settings.jitter_seconds)
            self._active[run_id] = settings.outcomes.get(doc.get("display_name", ""), "SUCCEEDED")
            for step in plan(run_id, tasks, self._clock(), duration):
                heapq.heappush(self._heap, step)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="kfp-synthetic", daemon=True)
                self._thread.start()
            self._lock.notify()

    def owns(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._active

    def terminate(self, run_id: str) -> bool:
        """Terminate a synthetic run at once (it ends FAILED, as KFP 2.17 does); False when it is not one."""
        with self._lock:
            if self._active.pop(run_id, None) is None:
                return False
        self._close(run_id, "FAILED", "the run was terminated")
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()

    # ----- scheduler thread -----

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and (not self._heap or self._heap[0][0] > self._clock()):
                    self._lock.wait(timeout=None if not self._heap else max(0.0, self._heap[0][0] - self._clock()))
                if self._stopping:
                    return
                _, run_id, step = heapq.heappop(self._heap)
                if run_id not in self._active:
                    continue  # terminated or deleted meanwhile
            try:
                self._advance(run_id, step)
            except Exception:  # a bad document must not stop every other synthetic run
                with self._lock:
                    self._active.pop(run_id, None)

    def _update(self, run_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        spec = self._specs.get(run_id) or {}
        now = self._clock()

        def apply(d: dict[str, Any]) -> None:
            change(d)
            try:
                progress.refresh(d, spec, now)
            except Exception:  # a node-building bug must not stop the run's own state from moving
                logging.getLogger(__name__).exception("could not build the Argo nodes of run %s", run_id)

        self._store.update("runs", run_id, apply)

    def _advance(self, run_id: str, step: int) -> None:
        now = self._clock()
        doc = self._store.get("runs", run_id)
        if doc is None:
            with self._lock:
                self._active.pop(run_id, None)
                self._specs.pop(run_id, None)
            return
        tasks = specs.root_task_names(self._specs.get(run_id) or {})
        if step == 0:
            def begin(d: dict[str, Any]) -> None:
                if d["state"] == "PENDING":
                    progress.transition(d, "RUNNING", now)
                if tasks:
                    progress.apply_event(d, {"type": "task_started", "path": tasks[0], "time": now})

            self._update(run_id, begin)
            return
        with self._lock:
            outcome = self._active.get(run_id, "SUCCEEDED")
        last = step >= max(1, len(tasks))
        if tasks:
            path = tasks[step - 1]
            failed = last and outcome == "FAILED"
            event: dict[str, Any] = {"type": "task_finished", "path": path, "time": now,
                                     "state": "FAILED" if failed else "SUCCEEDED"}

            def end_task(d: dict[str, Any]) -> None:
                progress.apply_event(d, event)
                if not last:
                    progress.apply_event(d, {"type": "task_started", "path": tasks[step], "time": now})

            self._update(run_id, end_task)
        if last:
            with self._lock:
                if self._active.pop(run_id, None) is None:
                    return
            message = "" if outcome == "SUCCEEDED" else f"step '{tasks[-1] if tasks else 'run'}' failed: synthetic failure"
            self._close(run_id, outcome, message)

    def _close(self, run_id: str, state: str, message: str) -> None:
        now = self._clock()
        self._update(run_id, lambda d: progress.finish(d, state, now, message))
        with self._lock:
            self._finished[run_id] = now
            self._specs.pop(run_id, None)

