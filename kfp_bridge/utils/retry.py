"""Retry policy for calls to remote APIs: data in one place, sync and async runners.

Which failures are transient, how long to back off and the total budget are decided here and
nowhere else. The clock and the sleeper are injected so tests never sleep for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

TRANSIENT_HTTP_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff within a total time budget.

    :param initial_backoff: seconds before the first retry.
    :param max_backoff: cap of one wait.
    :param total_budget: seconds after the first attempt past which no retry starts.
    :param request_timeout: seconds one HTTP request may take (connect + read).
    """

    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    total_budget: float = 120.0
    request_timeout: float = 30.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.initial_backoff * (2 ** max(0, attempt - 1)))


DEFAULT_POLICY = RetryPolicy()


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status of an API exception from kfp_server_api, kubernetes or httpx, else None."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        return status
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def is_transient(exc: BaseException) -> bool:
    """Connection problems and 429/502/503/504 are worth retrying; any other HTTP error is not."""
    status = http_status_of(exc)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUSES
    # kfp_server_api raises ApiException(status=0) when urllib3 gave up on the connection.
    if type(exc).__name__ == "ApiException":
        return True
    transient_names = {
        "MaxRetryError",
        "NewConnectionError",
        "ProtocolError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ConnectError",
        "ReadError",
        "ConnectTimeout",
        "ReadTimeout",
        "RemoteProtocolError",
        "PoolTimeout",
        "WriteError",
    }
    return isinstance(exc, ConnectionError | TimeoutError) or type(exc).__name__ in transient_names


def next_wait(policy: RetryPolicy, exc: BaseException, attempt: int, elapsed: float) -> float | None:
    """Seconds to wait before retrying after attempt number ``attempt`` failed with ``exc``, or None.

    None means raise ``exc``: it is not transient, or the wait would end past the total budget
    (``elapsed`` counts from the first attempt).
    """
    wait = policy.backoff(attempt)
    if not is_transient(exc) or elapsed + wait > policy.total_budget:
        return None
    return wait


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            wait = next_wait(policy, exc, attempt, clock() - started)
            if wait is None:
                raise
            if on_retry:
                on_retry(exc, wait)
            sleep(wait)


async def acall_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            wait = next_wait(policy, exc, attempt, clock() - started)
            if wait is None:
                raise
            if on_retry:
                on_retry(exc, wait)
            await sleep(wait)
