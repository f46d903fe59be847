"""KfpRunTrigger.poll_once: a snapshot is read once, however many polls see it unchanged."""

from __future__ import annotations

import asyncio
import copy

from kfp_bridge.triggers.kfp import KfpRunTrigger

RUNNING = {
    "run_id": "r1",
    "state": "RUNNING",
    "run_details": {"task_details": [{"display_name": "train", "state": "RUNNING", "task_id": "t1"}]},
}
SUCCEEDED = {**RUNNING, "state": "SUCCEEDED"}


class _Snapshots(KfpRunTrigger):
    """The shared poller's deliveries, given in order (each one a fresh dict, as parsed JSON is)."""

    def __init__(self, snapshots: list[dict]) -> None:
        super().__init__(run_id="r1")
        self._snapshots = [copy.deepcopy(s) for s in snapshots]
        self._spec_read = True  # no pipeline spec: steps by display name

    async def _next_snapshot(self) -> dict:
        return self._snapshots.pop(0)


def _poll(trigger: KfpRunTrigger, times: int) -> list:
    async def polls() -> list:
        return [await trigger.poll_once() for _ in range(times)]

    return asyncio.run(polls())


def test_an_unchanged_snapshot_reuses_what_the_last_one_read():
    trigger = _Snapshots([RUNNING, RUNNING])
    _poll(trigger, 1)
    first = trigger._last_status
    assert _poll(trigger, 1) == [None]
    assert trigger._last_status is first


def test_a_changed_snapshot_is_read_again_and_ends_the_wait():
    trigger = _Snapshots([RUNNING, RUNNING, SUCCEEDED])
    events = _poll(trigger, 3)
    assert events[:2] == [None, None]
    assert events[2]["status"] == "success" and events[2]["state"] == "SUCCEEDED"
