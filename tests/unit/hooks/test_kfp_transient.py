"""KfpHook's async calls under transient failures: what reaches ``on_transient_failure``.

The transport is httpx's MockTransport: a keep-alive connection the server closes just as it is
reused cannot be produced on demand against a real server.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from kfp_bridge.hooks.kfp import KfpApiError, KfpHook
from kfp_bridge.utils.retry import RetryPolicy

FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, total_budget=1.0, request_timeout=5.0)


@pytest.fixture
def hook(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KFP_TRANSIENT", json.dumps({"conn_type": "kfp", "host": "http://127.0.0.1:8888"}))
    return KfpHook("kfp_transient", retry_policy=FAST)


def _answer(hook: KfpHook, failures: list[Exception]) -> tuple[dict, list[str], int]:
    told: list[str] = []
    sent = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        sent[0] += 1
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json={"run_id": "r", "state": "RUNNING"})

    async def main() -> dict:
        hook.__dict__["_async_client"] = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        hook.on_transient_failure = told.append
        try:
            return await hook.aget_run("r")
        finally:
            await hook.aclose()

    return asyncio.run(main()), told, sent[0]


def test_one_failed_attempt_that_the_retry_mends_is_not_reported(hook):
    run, told, sent = _answer(hook, [httpx.ReadError("connection closed")])
    assert run["state"] == "RUNNING" and sent == 2
    assert told == []


def test_a_retry_that_fails_too_is_reported_from_then_on(hook):
    run, told, sent = _answer(hook, [httpx.ReadError("closed"), httpx.ConnectError("refused"), httpx.ConnectError("refused")])
    assert run["state"] == "RUNNING" and sent == 4
    assert told == ["get run r: ConnectError: refused"] * 2


def test_a_non_transient_error_is_raised_without_a_report(hook):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "Run r not found", "code": 5})

    async def main() -> None:
        hook.__dict__["_async_client"] = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        told: list[str] = []
        hook.on_transient_failure = told.append
        try:
            with pytest.raises(KfpApiError) as caught:
                await hook.aget_run("r")
        finally:
            await hook.aclose()
        assert caught.value.status == 404 and told == []

    asyncio.run(main())
