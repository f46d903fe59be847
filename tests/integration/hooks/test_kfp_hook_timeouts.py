"""A KFP that accepts connections and never answers (a hung API server or a stuck proxy).

kfp_server_api's REST client ignores a float ``_request_timeout`` (it honours an int or a
(connect, read) tuple) and urllib3 repeats a failed request three times on its own, so the hook's
sync calls used to have no timeout at all against such a server. Each request must now end after the
policy's read timeout, and the whole call within the policy's budget plus one request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from kfp_bridge.hooks.kfp import KfpHook
from kfp_bridge.utils.retry import RetryPolicy

pytestmark = pytest.mark.integration

POLICY = RetryPolicy(initial_backoff=0.2, max_backoff=0.5, total_budget=1.0, request_timeout=2.0)


class HungServer:
    """Accepts every connection, reads nothing back, answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by close()
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture
def hung(monkeypatch: pytest.MonkeyPatch) -> Iterator[HungServer]:
    server = HungServer()
    conn = {"conn_type": "kfp", "host": f"http://127.0.0.1:{server.port}", "password": "t"}
    monkeypatch.setenv("AIRFLOW_CONN_KFP_HUNG", json.dumps(conn))
    yield server
    server.close()


def test_a_sync_call_to_a_hung_kfp_ends_within_the_policy(hung: HungServer) -> None:
    hook = KfpHook("kfp_hung", retry_policy=POLICY)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        hook.get_run("0b5f6c1e-0000-4000-8000-000000000000")
    elapsed = time.monotonic() - started
    # First request 2 s, retries start only within the 1 s budget: at most two requests (~4 s).
    assert elapsed < POLICY.total_budget + 2 * POLICY.request_timeout + 1.5, elapsed
    assert hung.accepted <= 2, f"{hung.accepted} connections: urllib3 retried behind the policy's back"
    assert "timed out" in str(info.value).lower() or "timeout" in type(info.value).__name__.lower(), info.value
