"""outlast_cancel_requests: an on_kill's work survives the triggerer's repeated cancel requests."""

from __future__ import annotations

import asyncio

from kfp_bridge.triggers.base import outlast_cancel_requests

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
