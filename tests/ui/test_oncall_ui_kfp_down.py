"""Acceptance 2 and 3 of issue 13 on a real Airflow stack (plugins/ loaded) and the KFP stand-in.

2. With the KFP API down, the "KFP run" tab answers within 10 s (p95 over 20 requests) with
   "KFP unavailable", and the api-server keeps answering Airflow's own endpoints meanwhile. Three
   outages: connection refused (KFP stopped), 503 from a gateway (Istio with no healthy upstream)
   and hung (a TCP listener that accepts and never answers: the case that holds api-server
   threads). The tab requests go out 5 at a time, as 5
   open tabs refreshing would; a monitor thread samples Airflow's endpoints while they are in
   flight. The figures are printed (``pytest -s``) for docs/oncall-ui.md.
3. A refused retry (viewer, 403) and a failed retry (KFP answers 500 to the retry call) each leave
   a row in Airflow's audit log, and neither changes the task or the run.

The module sorts after test_oncall_ui.py on purpose: that test asserts the whole stack's retry audit
log, unfiltered, and these tests add rows for their own DAG to it.

The task's kfp connection lives in Airflow's database (REST API), so the test can point it at the
outage and back without restarting the stack. The only fault injected from the test side is the 500:
a forwarding proxy in front of the real stand-in that answers the retry call itself with KFP's error
shape (the stand-in's faults cannot single out one route).
"""

from __future__ import annotations

import json
import math
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import httpx
import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.conftest import explain, kfp_runs
from tests.ui.conftest import DAGS

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("ui")]

DAG_ID = "oncall_ui_kfp_down"
CONN_ID = "kfp_oncall_down"  # the DAG's kfp_conn_id
TASK_ID = "train"
RUN_TIMEOUT = 180
AUDIT_EVENT = "kfp_bridge.retry_failed_steps"

TAB_REQUESTS = 20
OPEN_TABS = 5  # concurrent tab requests
TAB_P95_SECONDS = 10.0  # issue 13, acceptance 2
# A tab request that takes this long has failed the target three times over: stop sending more.
TAB_CLIENT_TIMEOUT = 30.0
# Airflow's own endpoints while the tab requests are in flight. They are served by the same
# api-server worker and thread pool as the plugin's sync routes; a request that had to wait for a
# thread (or an event loop) held by a KFP call would take at least one KFP attempt: ~3.5 s refused
# (SHORT_POLICY's backoffs), 8 s hung (its request timeout). 2 s sits below both and well above the
# ~50-300 ms these take on the shared 2-core test machine.
AIRFLOW_P95_SECONDS = 2.0
AIRFLOW_ENDPOINTS = ("/api/v2/monitor/health", "/api/v2/dags?limit=1")
MONITOR_INTERVAL = 0.25
MIN_MONITOR_SAMPLES = 10  # per endpoint, taken while tab requests were in flight


# ----- the recorded task instance -----------------------------------------------------------------
@dataclass(frozen=True)
class DownTask:
    """A failed KfpRunOperator task instance whose KFP run (FAILED) is recorded, on connection CONN_ID."""

    run_id: str
    kfp_run_id: str
    kfp_host: str
    token_path: str

    def path(self, kind: str) -> str:
        parts = "/".join(quote(p, safe="") for p in (DAG_ID, self.run_id, TASK_ID))
        return {
            "tab": f"/kfp-bridge/ti/{parts}?map_index=-1",
            "dag-run": f"/kfp-bridge/dag-run/{quote(DAG_ID, safe='')}/{quote(self.run_id, safe='')}",
            "json": f"/kfp-bridge/api/ti/{parts}?map_index=-1",
            "retry": f"/kfp-bridge/api/ti/{parts}/retry-failed-steps?map_index=-1",
        }[kind]


def _connection(host: str, token_path: str) -> dict:
    return {
        "connection_id": CONN_ID,
        "conn_type": "kfp",
        "host": host,
        "extra": json.dumps({"token_path": token_path}),
    }


def point_connection(stack: AirflowStack, task: DownTask, host: str) -> None:
    response = stack.patch(f"/api/v2/connections/{CONN_ID}", _connection(host, task.token_path))
    assert response.status_code == 200, response.text


@contextmanager
def connection_at(stack: AirflowStack, task: DownTask, host: str) -> Iterator[None]:
    """CONN_ID points at ``host`` inside the block, back at the stand-in after it."""
    point_connection(stack, task, host)
    try:
        yield
    finally:
        point_connection(stack, task, task.kfp_host)


@pytest.fixture(scope="module")
def down_task(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DownTask]:
    work = tmp_path_factory.mktemp("oncall-kfp-down")
    token_path = str(kfp_stand_in.token_file)
    ui_stack.request("DELETE", f"/api/v2/connections/{CONN_ID}")  # a rerun on the same stack
    created = ui_stack.post("/api/v2/connections", _connection(kfp_stand_in.host, token_path))
    assert created.status_code == 201, created.text
    try:
        ui_stack.add_dag_file(DAGS / f"{DAG_ID}.py")
        ui_stack.wait_dag_parsed(DAG_ID, 120, file_name=f"{DAG_ID}.py")
        (work / "down.flag").write_text("fail\n")
        run_id = ui_stack.trigger_dag(DAG_ID, conf={"work": str(work)})
        assert ui_stack.wait_dag_run(DAG_ID, run_id, RUN_TIMEOUT) == "failed", explain(
            ui_stack, DAG_ID, run_id
        )
        [kfp_run] = kfp_runs(kfp_stand_in, dag_id=DAG_ID, run_id=run_id, task_id=TASK_ID)
        assert kfp_run.state == "FAILED"
        task = DownTask(run_id, kfp_run.run_id, kfp_stand_in.host, token_path)

        # Control: with KFP up the tab shows the run, so "KFP unavailable" later is the outage's doing.
        view = ui_stack.get(task.path("json")).json()
        assert (view["kfp_run_id"], view["retryable"]) == (kfp_run.run_id, True), view
        tab = ui_stack.get(task.path("tab"))
        assert tab.status_code == 200 and "KFP unavailable" not in tab.text
        assert 'data-kfp="ok"' in tab.text
        yield task
    finally:
        ui_stack.request("DELETE", f"/api/v2/connections/{CONN_ID}")


# ----- outages --------------------------------------------------------------------------------------
class HungKfp:
    """A TCP listener that accepts every connection and never reads or answers (a wedged KFP or a
    blackholing proxy); closing it resets the held connections, which frees whoever waits on them."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="hung-kfp", daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    def __enter__(self) -> HungKfp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        for conn in self.accepted:
            conn.close()
        self._thread.join(5)


class Answers503:
    """What KFP behind Istio answers while ml-pipeline is down: 503 "no healthy upstream" to every
    request, which the test counts."""

    def __init__(self) -> None:
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                outer.requests += 1
                body = b"no healthy upstream"
                self.send_response(503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="kfp-503", daemon=True)

    def __enter__(self) -> Answers503:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def refused_port() -> int:
    """A port nobody listens on: what the connection sees once KFP's server has stopped."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return port


@contextmanager
def kfp_down(kind: str) -> Iterator[tuple[str, HungKfp | None]]:
    if kind == "refused":
        yield f"http://127.0.0.1:{refused_port()}", None
        return
    if kind == "503":
        with Answers503() as gateway:
            yield gateway.host, None
        return
    with HungKfp() as hung:
        yield f"http://127.0.0.1:{hung.port}", hung


# ----- measuring --------------------------------------------------------------------------------------
def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (the 19th of 20)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def figures(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"n={len(values)} p50={statistics.median(values):.2f}s p95={p95(values):.2f}s max={max(values):.2f}s"
    )


@dataclass
class Sample:
    started: float
    seconds: float
    status: int | None  # None: no answer within the client timeout
    text: str = ""


@dataclass
class Load:
    tabs: list[Sample] = field(default_factory=list)
    airflow: dict[str, list[Sample]] = field(default_factory=dict)

    def in_flight(self, endpoint: str) -> list[Sample]:
        """The endpoint's samples taken while at least one tab request was in flight."""
        windows = [(s.started, s.started + s.seconds) for s in self.tabs]
        return [s for s in self.airflow[endpoint] if any(a <= s.started <= b for a, b in windows)]


def _timed(client: httpx.Client, path: str) -> Sample:
    started = time.monotonic()
    try:
        response = client.get(path)
    except httpx.TimeoutException:
        return Sample(started, time.monotonic() - started, None)
    return Sample(started, time.monotonic() - started, response.status_code, response.text)


def tab_load(stack: AirflowStack, tab_path: str) -> Load:
    """TAB_REQUESTS tab requests, OPEN_TABS at a time, while a monitor samples AIRFLOW_ENDPOINTS."""
    headers = {"Authorization": f"Bearer {stack.token('admin')}"}
    load = Load(airflow={endpoint: [] for endpoint in AIRFLOW_ENDPOINTS})
    queue = list(range(TAB_REQUESTS))
    lock = threading.Lock()
    stop = threading.Event()
    gave_up = threading.Event()

    def tab() -> None:
        with httpx.Client(base_url=stack.base_url, headers=headers, timeout=TAB_CLIENT_TIMEOUT) as client:
            while not gave_up.is_set():
                with lock:
                    if not queue:
                        return
                    queue.pop()
                sample = _timed(client, tab_path)
                load.tabs.append(sample)
                if sample.status is None:
                    gave_up.set()  # the target is missed already; do not pin more server threads

    def monitor() -> None:
        with httpx.Client(base_url=stack.base_url, headers=headers, timeout=TAB_CLIENT_TIMEOUT) as client:
            while not stop.is_set():
                for endpoint in AIRFLOW_ENDPOINTS:
                    load.airflow[endpoint].append(_timed(client, endpoint))
                stop.wait(MONITOR_INTERVAL)

    watcher = threading.Thread(target=monitor, name="airflow-monitor")
    tabs = [threading.Thread(target=tab, name=f"tab-{n}") for n in range(OPEN_TABS)]
    watcher.start()
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join()
    stop.set()
    watcher.join()
    return load


def baseline(stack: AirflowStack, samples: int = 10) -> dict[str, list[float]]:
    headers = {"Authorization": f"Bearer {stack.token('admin')}"}
    out: dict[str, list[float]] = {endpoint: [] for endpoint in AIRFLOW_ENDPOINTS}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=TAB_CLIENT_TIMEOUT) as client:
        for _ in range(samples):
            for endpoint in AIRFLOW_ENDPOINTS:
                sample = _timed(client, endpoint)
                assert sample.status == 200, sample.text
                out[endpoint].append(sample.seconds)
    return out


# ----- acceptance 2 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("outage", ["refused", "503", "hung"])
def test_tab_says_kfp_unavailable_within_10s_and_airflow_keeps_answering(
    ui_stack: AirflowStack, down_task: DownTask, outage: str
) -> None:
    before = baseline(ui_stack)
    with kfp_down(outage) as (host, hung), connection_at(ui_stack, down_task, host):
        load = tab_load(ui_stack, down_task.path("tab"))
        reached = len(hung.accepted) if hung else None

    tab_seconds = [s.seconds for s in load.tabs]
    print(f"\n[{outage}] tab ({OPEN_TABS} at a time): {figures(tab_seconds)}")
    for endpoint in AIRFLOW_ENDPOINTS:
        during = [s.seconds for s in load.in_flight(endpoint)]
        print(
            f"[{outage}] {endpoint}: idle {figures(before[endpoint])}; "
            f"during the tab requests {figures(during)}"
        )
    if hung:
        print(f"[{outage}] connections the hung KFP accepted: {reached}")

    unanswered = [s for s in load.tabs if s.status is None]
    assert not unanswered, (
        f"{len(unanswered)} tab request(s) got no answer within {TAB_CLIENT_TIMEOUT:.0f} s "
        f"(stopped after {len(load.tabs)} of {TAB_REQUESTS}): {figures(tab_seconds)}"
    )
    assert len(load.tabs) == TAB_REQUESTS
    for sample in load.tabs:
        assert sample.status == 200, sample.text[:500]
        assert "KFP unavailable" in sample.text, sample.text[:2000]
        assert 'data-kfp="unavailable"' in sample.text  # what backs the page's refresh off
        assert CONN_ID in sample.text  # the reason names the connection to look at
    assert p95(tab_seconds) <= TAB_P95_SECONDS, figures(tab_seconds)
    if hung:
        assert reached, "the plugin never reached the hung KFP: this measured something else"

    for endpoint in AIRFLOW_ENDPOINTS:
        during = load.in_flight(endpoint)
        assert len(during) >= MIN_MONITOR_SAMPLES, f"{endpoint}: only {len(during)} samples in flight"
        assert all(s.status == 200 for s in during), [
            (s.status, s.text[:200]) for s in during if s.status != 200
        ]
        seconds = [s.seconds for s in during]
        assert p95(seconds) <= AIRFLOW_P95_SECONDS, f"{endpoint}: {figures(seconds)}"

    # KFP is back: the same tab shows the run again (nothing was cached from the outage).
    view = ui_stack.get(down_task.path("json")).json()
    assert view["kfp_run_id"] == down_task.kfp_run_id and view.get("problem") is None, view


def test_dag_run_tab_asks_kfp_once_per_connection_during_an_outage(
    ui_stack: AirflowStack, down_task: DownTask
) -> None:
    """Two KFP tasks on one connection cost the DAG run's tab one short-policy budget, not two."""
    with Answers503() as gateway, connection_at(ui_stack, down_task, gateway.host):
        started = time.monotonic()
        tab = ui_stack.get(down_task.path("tab"))
        tab_seconds, one_task = time.monotonic() - started, gateway.requests
        started = time.monotonic()
        page = ui_stack.get(down_task.path("dag-run"))
        page_seconds, page_requests = time.monotonic() - started, gateway.requests - one_task
    print(
        f"\n[503] task tab {tab_seconds:.2f}s, {one_task} KFP requests; "
        f"DAG run tab (2 tasks) {page_seconds:.2f}s, {page_requests} KFP requests"
    )
    assert tab.status_code == 200 and "KFP unavailable" in tab.text, tab.text[:2000]
    assert one_task >= 2, "the short policy retries a 503"
    assert page.status_code == 200 and "KFP unavailable" in page.text, page.text[:2000]
    assert 'data-kfp="unavailable"' in page.text
    for task_id in (TASK_ID, "train_b"):
        assert task_id in page.text
    assert page_requests == one_task, "the second task on the connection asked KFP again"


# ----- acceptance 3 -------------------------------------------------------------------------------------
class RetryFails:
    """Forwards every request to the KFP stand-in except ``POST …:retry``, which KFP answers 500
    (grpc-gateway's error body, as KFP 2.17 sends for an internal error)."""

    BODY = {
        "error": "Internal error: injected",
        "code": 13,
        "message": "Internal error: injected",
        "details": [],
    }
    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.retries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in outer.HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST" and self.path.split("?")[0].endswith(":retry"):
                    outer.retries.append(self.path)
                    self._answer(500, json.dumps(outer.BODY).encode(), {"Content-Type": "application/json"})
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", *outer.HOP_BY_HOP)
                }
                with httpx.Client(base_url=outer.upstream, timeout=30) as client:
                    response = client.request(self.command, self.path, content=body, headers=headers)
                self._answer(response.status_code, response.content, dict(response.headers))

            do_GET = do_POST = do_DELETE = do_PATCH = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="retry-fails", daemon=True)

    def __enter__(self) -> RetryFails:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _audit_rows(stack: AirflowStack, run_id: str) -> list[tuple]:
    """(owner, task, outcome, status) of this DAG run's retry audit entries."""
    events = stack.get(
        "/api/v2/eventLogs", params={"event": AUDIT_EVENT, "dag_id": DAG_ID, "limit": 100}
    ).json()
    rows = []
    for entry in events["event_logs"]:
        if entry["run_id"] != run_id:
            continue
        extra = json.loads(entry["extra"])
        rows.append((entry["owner"], entry["task_id"], extra["outcome"], extra.get("status")))
    return rows


def test_refused_and_failed_retries_each_leave_an_audit_row(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, down_task: DownTask
) -> None:
    run_id = down_task.run_id
    audited_before = _audit_rows(ui_stack, run_id)
    ti_before = ui_stack.task_instance(DAG_ID, run_id, TASK_ID)

    refused = ui_stack.post(down_task.path("retry"), {}, user="viewer")
    assert refused.status_code == 403, refused.text

    with RetryFails(down_task.kfp_host) as proxy, connection_at(ui_stack, down_task, proxy.host):
        failed = ui_stack.post(down_task.path("retry"), {})
    assert failed.status_code == 502, failed.text
    detail = failed.json()["detail"]
    assert f"KFP refused to retry run {down_task.kfp_run_id}" in detail and "HTTP 500" in detail, detail
    assert len(proxy.retries) == 1, proxy.retries  # KFP was asked, and answered 500

    # Neither touched the task or the run.
    ti_after = ui_stack.task_instance(DAG_ID, run_id, TASK_ID)
    assert (ti_after["state"], ti_after["try_number"]) == (ti_before["state"], ti_before["try_number"])
    assert [r.state for r in kfp_runs(kfp_stand_in, dag_id=DAG_ID, run_id=run_id, task_id=TASK_ID)] == [
        "FAILED"
    ]

    new = Counter(_audit_rows(ui_stack, run_id)) - Counter(audited_before)
    assert new == Counter([("viewer", TASK_ID, "refused", 403), ("admin", TASK_ID, "failed", 502)])
