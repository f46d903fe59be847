"""Test hooks under ``/_admin/`` (only with ``--admin``; 404 otherwise).

* ``GET /_admin/stats`` → ``{"total": n, "requests": {"GET /apis/v2beta1/runs/{run_id}": n, ...}}``:
  requests to ``/apis/`` counted by method and route template (faulted and rejected ones too);
  ``POST /_admin/stats/reset`` zeroes the counters.
* ``POST /_admin/faults`` with ``{"error_rate": 0.3, "error_status": 503, "latency_seconds": 0.0,
  "outage_seconds": 0, "seed": 1}`` (all optional): each ``/apis/`` request is delayed by
  ``latency_seconds`` and fails with ``error_status`` at ``error_rate``; ``outage_seconds`` refuses
  every ``/apis/`` request with 503 for that long from now. ``DELETE /_admin/faults`` clears them.
  ``GET /_admin/faults`` shows the current settings.
* Admin paths are never subject to faults, but they do need the bearer token when
  ``--token-file`` is set, like every other path; with ``--multi-user`` they need any valid
  identity (a token or ``kubeflow-userid`` the users file knows, :mod:`~kfp_bridge.local.kfp.auth`).
* ``POST /_admin/synthetic`` with ``{"enabled": true, "duration_seconds": 30, "jitter_seconds": 5,
  "outcomes": {"<run display_name>": "FAILED"}, "seed": 1}`` (all optional): runs created from now on
  are not executed but go PENDING → RUNNING → SUCCEEDED (or the outcome named for their
  display_name) on a timer of ``duration_seconds`` plus up to ``jitter_seconds``, walking their
  root tasks one after another (:mod:`~kfp_bridge.local.kfp.synthetic`). Terminate cancels them.
  Off by default; ``DELETE /_admin/synthetic`` switches it off again (runs already simulated carry
  on). ``GET /_admin/synthetic`` shows the settings; ``GET /_admin/synthetic/finished`` →
  ``{"finished": {run_id: unix_seconds}}`` gives exact terminal times (``finished_at`` on the wire
  has whole seconds, as on the real server).
* Response recording: with ``--admin`` and the environment variable ``KFP_BRIDGE_RECORD_RESPONSES``
  set to a file path, every ``/apis/`` response is appended there as a JSON line
  ``{"method", "route", "path", "status", "body"}`` so tests can check each one against the
  kfp_server_api models.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kfp_bridge.local.kfp.synthetic import SyntheticRuns
from kfp_bridge.local.kfp.wire import bad_request

RECORD_ENV = "KFP_BRIDGE_RECORD_RESPONSES"


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def record(self, label: str) -> None:
        with self._lock:
            self._counts[label] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"total": sum(self._counts.values()), "requests": dict(self._counts)}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class Faults:
    _FIELDS = {"error_rate", "error_status", "latency_seconds", "outage_seconds", "seed"}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.error_rate = 0.0
            self.error_status = 503
            self.latency_seconds = 0.0
            self.outage_until = 0.0
            self._random = random.Random()

    def configure(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("faults must be a JSON object such as {\"error_rate\": 0.3, \"error_status\": 503}")
        unknown = set(body) - self._FIELDS
        if unknown:
            raise bad_request(f"unknown fault settings {sorted(unknown)}; use {sorted(self._FIELDS)}")
        try:
            rate = float(body.get("error_rate", 0.0))
            status = int(body.get("error_status", 503))
            latency = float(body.get("latency_seconds", 0.0))
            outage = float(body.get("outage_seconds", 0.0))
        except (TypeError, ValueError) as exc:
            raise bad_request(f"fault settings must be numbers: {exc}") from exc
        if not 0.0 <= rate <= 1.0:
            raise bad_request(f"error_rate {rate} must be between 0 and 1")
        if not 400 <= status <= 599:
            raise bad_request(f"error_status {status} must be an HTTP error status (400-599)")
        if latency < 0 or outage < 0:
            raise bad_request("latency_seconds and outage_seconds must not be negative")
        with self._lock:
            self.error_rate, self.error_status, self.latency_seconds = rate, status, latency
            self.outage_until = time.monotonic() + outage if outage else 0.0
            self._random = random.Random(body.get("seed"))
        return self.describe()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            remaining = max(0.0, self.outage_until - time.monotonic())
            return {"error_rate": self.error_rate, "error_status": self.error_status,
                    "latency_seconds": self.latency_seconds, "outage_seconds": remaining}

    def decide(self) -> tuple[float, int | None, str]:
        """(delay, HTTP status to fail with or None, reason) for one /apis request."""
        with self._lock:
            if self.outage_until and time.monotonic() < self.outage_until:
                return self.latency_seconds, 503, "injected outage (/_admin/faults outage_seconds)"
            if self.error_rate and self._random.random() < self.error_rate:
                return self.latency_seconds, self.error_status, "injected fault (/_admin/faults error_rate)"
            return self.latency_seconds, None, ""


class ResponseRecorder:
    """Appends API responses to a JSON-lines file (see module docstring)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, method: str, route: str, path: str, status: int, body: bytes) -> None:
        if self.path is None:
            return
        # Bodies are JSON already; splicing them in unparsed keeps recording cheap for big lists.
        head = json.dumps({"method": method, "route": route, "path": path, "status": status})
        text = body.decode("utf-8", "replace").strip() if body else "null"
        if not text.startswith(("{", "[")):
            text = json.dumps(text)
        line = head[:-1] + ', "body": ' + text + "}"
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


async def _json_object(request: Request, what: str) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise bad_request(f"{what} body is not JSON: {exc}") from exc


def admin_router(stats: Stats, faults: Faults, synthetic: SyntheticRuns | None = None) -> APIRouter:
    router = APIRouter(prefix="/_admin")

    @router.get("/stats")
    def get_stats() -> JSONResponse:
        return JSONResponse(stats.snapshot())

    @router.post("/stats/reset")
    def reset_stats() -> JSONResponse:
        stats.reset()
        return JSONResponse({})

    @router.get("/faults")
    def get_faults() -> JSONResponse:
        return JSONResponse(faults.describe())

    @router.post("/faults")
    async def set_faults(request: Request) -> JSONResponse:
        return JSONResponse(faults.configure(await _json_object(request, "faults")))

    @router.delete("/faults")
    def clear_faults() -> JSONResponse:
        faults.clear()
        return JSONResponse({})

    if synthetic is not None:

        @router.get("/synthetic")
        def get_synthetic() -> JSONResponse:
            return JSONResponse(synthetic.describe())

        @router.post("/synthetic")
        async def set_synthetic(request: Request) -> JSONResponse:
            return JSONResponse(synthetic.configure(await _json_object(request, "synthetic")))

        @router.delete("/synthetic")
        def disable_synthetic() -> JSONResponse:
            synthetic.disable()
            return JSONResponse({})

        @router.get("/synthetic/finished")
        def synthetic_finished() -> JSONResponse:
            return JSONResponse({"finished": synthetic.finished_times()})

    return router
