"""The polling-trigger base: an on_kill outlasts the triggerer's cancel requests; events wait out the resume settle."""

from __future__ import annotations

import asyncio

from kfp_bridge.triggers.base import (
    RESUME_SETTLE_S,
    PollingTrigger,
    outlast_cancel_requests,
    settle_after_deferral,
)

USER_ACTION = "__airflow_user_action__"  # the message Airflow's triggerer cancels with


async def _as_the_triggerer_runs_on_kill(on_kill, cancels: int, every: float) -> str:
    """Airflow 3.3's TriggerRunner on Python 3.11: on_kill under ``wait_for``, the trigger's task
    cancelled again with the user-action message on every sync while it has not finished, and a
    cancellation of on_kill swallowed. The triggerer's loop goes on afterwards (here: one second)."""
    outcome = "returned"

    async def run_trigger() -> None:
        nonlocal outcome
        try:
            await asyncio.wait_for(on_kill(), timeout=30)
        except asyncio.CancelledError:
            outcome = "cut off"

    task = asyncio.create_task(run_trigger())
    for _ in range(cancels):
        await asyncio.sleep(every)
        if task.done():
            break
        task.cancel(USER_ACTION)
    await task
    await asyncio.sleep(1)  # the triggerer keeps running its other triggers
    return outcome


def test_the_kill_goes_through_although_the_triggerer_cancels_again_and_again():
    finished: list[str] = []

    async def terminate_and_wait() -> str:
        await asyncio.sleep(0.3)
        finished.append("terminated and waited")
        return "FAILED"

    async def on_kill() -> None:
        await outlast_cancel_requests(terminate_and_wait(), budget_s=5)

    outcome = asyncio.run(_as_the_triggerer_runs_on_kill(on_kill, cancels=5, every=0.05))
    # on_kill itself is cut off (Airflow ends the trigger), but its work is not.
    assert (outcome, finished) == ("cut off", ["terminated and waited"])


def test_without_it_the_repeated_cancel_cuts_the_kill_off():
    """The failure this guards against, on the same harness (a test that can fail)."""
    finished: list[str] = []

    async def on_kill() -> None:
        await asyncio.sleep(0.3)
        finished.append("terminated and waited")

    outcome = asyncio.run(_as_the_triggerer_runs_on_kill(on_kill, cancels=5, every=0.05))
    assert (outcome, finished) == ("cut off", [])


def test_one_cancel_request_lets_on_kill_finish_and_return_the_result():
    async def terminate_and_wait() -> str:
        await asyncio.sleep(0.1)
        return "FAILED"

    results: list[object] = []

    async def on_kill() -> None:
        results.append(await outlast_cancel_requests(terminate_and_wait(), budget_s=5))

    assert asyncio.run(_as_the_triggerer_runs_on_kill(on_kill, cancels=0, every=0.05)) == "returned"
    assert results == ["FAILED"]


def test_the_budget_ends_work_that_hangs():
    cancelled: list[bool] = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> object:
        result = await outlast_cancel_requests(hangs(), budget_s=0.2)
        await asyncio.sleep(0)  # let the cancelled work see its cancellation
        return result

    assert asyncio.run(main()) is None
    assert cancelled == [True]


def test_errors_of_the_work_reach_the_caller():
    async def fails() -> None:
        raise RuntimeError("KFP said 500")

    async def main() -> None:
        await outlast_cancel_requests(fails(), budget_s=1)

    try:
        asyncio.run(main())
    except RuntimeError as exc:
        assert "KFP said 500" in str(exc)
    else:
        raise AssertionError("the work's error was swallowed")


# ----- the resume-after-defer settle --------------------------------------------------------------


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: object) -> None:
        self.lines.append(message % args)


def _settle(deferred_at: float | None, now: float) -> tuple[list[float], list[str]]:
    slept: list[float] = []
    log = _Log()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    asyncio.run(settle_after_deferral(deferred_at, log, clock=lambda: now, sleep=sleep))
    return slept, log.lines


def test_an_event_right_after_the_deferral_waits_out_the_settle_time_and_says_why():
    slept, lines = _settle(deferred_at=1000.0, now=1003.0)
    assert slept == [RESUME_SETTLE_S - 3.0]
    assert lines == [
        f"The wait ended 3.0 s after the deferral; handing it back in {RESUME_SETTLE_S - 3.0:.1f} s "
        "(Airflow's resume-after-defer race)"
    ]


def test_a_later_event_or_an_unknown_deferral_time_is_handed_back_at_once():
    assert _settle(deferred_at=1000.0, now=1000.0 + RESUME_SETTLE_S) == ([], [])
    assert _settle(deferred_at=None, now=1000.0) == ([], [])


class _DoneAtOnce(PollingTrigger):
    def __init__(self, payload: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.payload = payload

    async def poll_once(self) -> dict:
        return self.payload


async def _first_event(trigger: PollingTrigger) -> tuple[dict, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async for event in trigger.run():
        return event.payload, loop.time() - started
    raise AssertionError("no event")


def test_every_polling_trigger_event_waits_for_the_settle_time_after_the_deferral():
    import time

    almost = time.time() - RESUME_SETTLE_S + 0.3  # deferred nearly the settle time ago
    payload, took = asyncio.run(_first_event(_DoneAtOnce({"status": "success"}, deferred_at=almost)))
    assert payload == {"status": "success"} and 0.2 <= took < 2.0
    payload, took = asyncio.run(_first_event(_DoneAtOnce({"status": "failed"})))
    assert payload == {"status": "failed"} and took < 0.2
