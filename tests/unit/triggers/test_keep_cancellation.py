"""keep_cancellation: a trigger cancelled while Airflow reads a connection still sees the cancel message.

The triggerer calls a trigger's on_kill only when the CancelledError carries its user-action
message; Airflow reads connections through asgiref's sync_to_async, which loses that message.
Both halves run the real asgiref.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from kfp_bridge.triggers.base import keep_cancellation

USER_ACTION = "__airflow_user_action__"  # airflow.jobs.triggerer_job_runner._USER_ACTION_CANCEL_MSG


def _slow_read(release: threading.Event) -> str:
    release.wait(5)
    return "connection"


async def _cancel_during(read_in_trigger) -> tuple[str, object]:
    """Run ``read_in_trigger`` as a trigger task, cancel it as the triggerer does mid-read."""
    release = threading.Event()
    started = asyncio.Event()

    async def trigger() -> str:
        started.set()
        return await read_in_trigger(sync_to_async(_slow_read)(release))

    task = asyncio.ensure_future(trigger())
    await started.wait()
    await asyncio.sleep(0.1)  # the read is in its thread now
    task.cancel(USER_ACTION)
    await asyncio.sleep(0.2)
    release.set()
    try:
        return "returned", await task
    except asyncio.CancelledError as err:
        return "cancelled", err.args


async def _plain(awaitable):
    return await awaitable


def test_sync_to_async_loses_the_cancel_message_which_is_why_the_helper_exists():
    # asgiref lets the blocking read finish, then re-raises a CancelledError without the message
    # (or, when the read finished first, returns): either way the triggerer would skip on_kill.
    outcome, value = asyncio.run(_cancel_during(_plain))
    assert (outcome, value) != ("cancelled", (USER_ACTION,))


def test_keep_cancellation_raises_the_cancel_with_its_message():
    outcome, value = asyncio.run(_cancel_during(keep_cancellation))
    assert (outcome, value) == ("cancelled", (USER_ACTION,))


def test_keep_cancellation_returns_the_result_and_raises_the_error_when_not_cancelled():
    async def fails():
        raise LookupError("no such connection")

    async def main():
        assert await keep_cancellation(asyncio.sleep(0, "value")) == "value"
        with pytest.raises(LookupError):
            await keep_cancellation(fails())

    asyncio.run(main())
