"""Template-method base for polling triggers: the loop, deadline, event shape and error handling.

Subclasses implement ``poll_once`` (one remote look, returning a payload when finished) and may
implement ``kill``; one whose ``poll_once`` itself waits for a shared poller's next look overrides
``wait_between_polls`` so the interval is not waited twice. Every trigger yields exactly one
event, whose payload always has ``status`` (``success`` | ``failed`` | ``error`` | ``timeout``)
and ``message``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

T = TypeVar("T")

# Airflow 3.3.2 fails a deferred task that is resumed before the scheduler has processed the exit
# of the process that deferred it ("finished with state success, but the task instance's state
# attribute is queued" / "running": apache/airflow#67287, #71580, #72716; only the "scheduled" case
# is guarded in 3.3.2). A fully cached KFP run or an InferenceService already in the wanted state
# ends the wait within seconds: such an event is handed back only this long after the deferral.
# On this loaded 2-core machine the exit reached the scheduler 5.7 s after the deferral.
RESUME_SETTLE_S = 10.0


async def settle_after_deferral(
    deferred_at: float | None,
    log: Any,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Wait until :data:`RESUME_SETTLE_S` after ``deferred_at`` (Unix time; None: no wait)."""
    if deferred_at is None:
        return
    wait = deferred_at + RESUME_SETTLE_S - clock()
    if wait > 0:
        log.info(
            "The wait ended %.1f s after the deferral; handing it back in %.1f s (Airflow's resume-after-defer race)",
            RESUME_SETTLE_S - wait, wait,
        )
        await sleep(wait)


async def keep_cancellation(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` so that cancelling this task raises here, with its message, at once.

    Airflow reads connections through asgiref's ``sync_to_async``, which on cancellation lets the
    blocking read finish and then re-raises the cancellation without its message (or returns).
    The triggerer cancels a trigger with the message ``__airflow_user_action__`` when a user marks
    the task failed or clears it, and calls ``on_kill`` only when that message arrives; a lost one
    leaves a killed task's KFP run (or rollout) going. The read goes on in its own task.
    """
    inner = asyncio.ensure_future(awaitable)
    inner.add_done_callback(_retrieve)
    return await asyncio.shield(inner)


async def outlast_cancel_requests(awaitable: Awaitable[T], budget_s: float) -> T | None:
    """Finish ``awaitable`` (an ``on_kill``'s work) although the triggerer cancels this task again.

    Airflow 3.3's triggerer keeps a killed task's trigger in ``to_cancel`` and cancels it again on
    every sync with its runner (about once a second) until the trigger has finished; those
    cancellations reach the running ``on_kill`` (``TriggerRunner.run_trigger`` swallows them and
    ends the trigger). A terminate or rollback awaited directly would be cancelled mid-request. The
    work runs in its own task in the triggerer's loop, so it completes even when ``on_kill`` is
    ended; repeated cancel requests that reach this coroutine are absorbed. After ``budget_s`` (kept
    under ``[triggerer] on_kill_timeout``) the work is cancelled and None returned. Lines the work
    logs after the trigger has ended no longer reach the task log: log what matters early.
    """
    loop = asyncio.get_running_loop()
    work = asyncio.ensure_future(awaitable)
    work.add_done_callback(_retrieve)
    deadline = loop.time() + budget_s
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            work.cancel()
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(work), remaining)
        except TimeoutError:
            work.cancel()
            return None
        except asyncio.CancelledError:
            if work.done():
                return work.result()
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # absorbed: the kill in progress is what was asked for


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A read finished after its caller was cancelled: nobody awaits it, so fetch its exception
    # here rather than have asyncio log "exception was never retrieved".
    if not task.cancelled():
        task.exception()


class PollingTrigger(BaseTrigger):
    """:param poll_interval: seconds between looks.
    :param deadline: Unix time after which the wait ends with a ``timeout`` event (None: no limit).
    :param deferred_at: Unix time of the deferral: an event sooner than :data:`RESUME_SETTLE_S`
        after it fires only then (None: at once).
    """

    def __init__(
        self, *, poll_interval: float = 10.0, deadline: float | None = None, deferred_at: float | None = None
    ) -> None:
        super().__init__()
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.deferred_at = deferred_at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self.serialize_kwargs()

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"poll_interval": self.poll_interval, "deadline": self.deadline, "deferred_at": self.deferred_at}

    async def poll_once(self) -> dict[str, Any] | None:
        """Look once; return the final event payload, or None to keep waiting."""
        raise NotImplementedError

    async def on_timeout(self) -> dict[str, Any]:
        return {"status": "timeout", "message": "gave up waiting: the timeout passed"}

    async def wait_between_polls(self) -> None:
        await asyncio.sleep(self.poll_interval)

    async def close(self) -> None:
        """Release clients; called once when the loop ends."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            payload = await self._wait()
            await settle_after_deferral(self.deferred_at, self.log)
            yield TriggerEvent(payload)
        finally:
            await self.close()

    async def _wait(self) -> dict[str, Any]:
        try:
            while True:
                payload = await self.poll_once()
                if payload is not None:
                    return payload
                if self.deadline is not None and time.time() >= self.deadline:
                    return await self.on_timeout()
                await self.wait_between_polls()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # An exception would leave the task deferred without a word; an error event fails it with the reason.
            self.log.exception("Trigger failed")
            return {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
