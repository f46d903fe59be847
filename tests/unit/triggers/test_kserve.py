"""KServeRolloutTrigger: every event waits out the resume settle time, as PollingTrigger's do."""

from __future__ import annotations

import asyncio
import time

from kfp_bridge.triggers.base import RESUME_SETTLE_S
from kfp_bridge.triggers.kserve import KServeRolloutTrigger


def _first_event(trigger: KServeRolloutTrigger) -> tuple[dict, float]:
    async def first() -> tuple[dict, float]:
        started = time.monotonic()
        async for event in trigger.run():
            return event.payload, time.monotonic() - started
        raise AssertionError("no event")

    return asyncio.run(first())


def _trigger(deferred_at: float | None) -> KServeRolloutTrigger:
    # An unreadable rollout state: the trigger answers without reading a connection or a cluster.
    return KServeRolloutTrigger(
        name="iris", namespace="ml", kubernetes_conn_id="kube", condition={}, deadline=None,
        rollout={"phase": "no such phase"}, deferred_at=deferred_at,
    )


def test_an_error_event_right_after_the_deferral_is_held_for_the_settle_time_too():
    payload, took = _first_event(_trigger(deferred_at=time.time() - RESUME_SETTLE_S + 0.3))
    assert payload["status"] == "error" and "unreadable rollout state" in payload["message"]
    assert 0.2 <= took < 2.0


def test_an_event_long_after_the_deferral_or_without_its_time_is_handed_back_at_once():
    for deferred_at in (time.time() - 2 * RESUME_SETTLE_S, None):
        payload, took = _first_event(_trigger(deferred_at))
        assert payload["status"] == "error" and took < 0.2
