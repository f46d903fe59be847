"""The shared KFP run poller's bookkeeping: schedule, pages, filter, detail fetches, subscriptions."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from kfp_bridge.triggers import kfp_poller
from kfp_bridge.triggers.kfp import KfpRunTrigger
from kfp_bridge.triggers.kfp_poller import PollSchedule, needs_details, pages, run_id_filter


def test_a_new_run_waits_the_join_delay_then_follows_its_interval():
    schedule = PollSchedule(join_delay=1.0)
    schedule.add("a", 10.0, now=0.0)
    assert schedule.due(0.5) == []
    assert schedule.next_wake() == 1.0
    assert schedule.due(1.0) == ["a"]
    schedule.polled(["a"], 1.0)
    assert schedule.due(10.9) == []
    assert schedule.due(11.0) == ["a"]


def test_runs_registered_apart_merge_into_one_round():
    schedule = PollSchedule(join_delay=1.0, align_fraction=0.5)
    schedule.add("a", 10.0, now=0.0)
    schedule.polled(schedule.due(1.0), 1.0)  # a: next at 11
    schedule.add("b", 10.0, now=2.0)
    schedule.polled(schedule.due(3.0), 3.0)  # b alone (a is 8 s away): next at 13
    # At 11 a is due and b is due within half an interval: both go in one request from now on.
    assert sorted(schedule.due(11.0)) == ["a", "b"]
    schedule.polled(["a", "b"], 11.0)
    assert schedule.due(20.9) == []
    assert sorted(schedule.due(21.0)) == ["a", "b"]


def test_a_run_followed_twice_uses_the_shorter_interval_until_its_last_follower_leaves():
    schedule = PollSchedule(join_delay=0.0)
    schedule.add("a", 30.0, now=0.0)
    schedule.add("a", 5.0, now=0.0)
    assert len(schedule) == 1
    schedule.polled(schedule.due(0.0), 0.0)
    assert schedule.next_wake() == 5.0
    schedule.remove("a", 5.0)
    assert "a" in schedule
    schedule.polled(["a"], 5.0)
    assert schedule.next_wake() == 35.0
    schedule.remove("a", 30.0)
    assert "a" not in schedule and schedule.next_wake() is None and schedule.due(100.0) == []


def test_a_round_of_several_pages_spreads_them_over_the_next_interval():
    schedule = PollSchedule(join_delay=0.0, page_size=2)
    for i in range(5):
        schedule.add(f"r{i}", 10.0, now=0.0)
    first = schedule.due(0.0)
    assert len(first) == 5
    schedule.polled(first, 0.0)  # pages [r0 r1] [r2 r3] [r4]: next due after 1/3, 2/3, 3/3 of 10 s
    rounds = []
    now = 0.0
    while now < 40.0:
        now = schedule.next_wake()
        due = schedule.due(now)
        schedule.polled(due, now)
        rounds.append((round(now, 2), len(due)))
    # From then on one page per round, evenly apart, and no run waits longer than its interval.
    assert rounds[:6] == [(3.33, 2), (6.67, 2), (10.0, 2), (13.33, 2), (16.67, 2), (20.0, 2)], rounds
    assert all(size <= 2 for _, size in rounds)


def test_runs_due_soon_only_fill_the_last_page():
    schedule = PollSchedule(join_delay=0.0, align_fraction=0.5, page_size=3)
    schedule.add("a", 10.0, now=0.0)
    schedule.add("b", 10.0, now=0.0)
    for name, at in (("c", 1.0), ("d", 2.0), ("e", 3.0)):
        schedule.add(name, 10.0, now=at)
    schedule.polled(["a", "b"], 0.0)  # next at 10
    schedule.polled(["c"], 1.0)
    schedule.polled(["d"], 2.0)
    schedule.polled(["e"], 3.0)
    # At 10: a and b are due; c (11) fills the page; d and e wait for their own time.
    assert schedule.due(10.0) == ["a", "b", "c"]


def test_pages_hold_at_most_200_ids_and_the_filter_is_an_in_predicate_on_run_id():
    ids = [f"r{i}" for i in range(450)]
    assert [len(p) for p in pages(ids)] == [200, 200, 50]
    assert sum(pages(ids), []) == ids
    flt = run_id_filter(["x", "y"])
    assert flt == {"predicates": [{"operation": "IN", "key": "run_id", "string_values": {"values": ["x", "y"]}}]}
    json.dumps(flt)  # sent as the JSON 'filter' query parameter


def test_details_are_fetched_only_when_a_listed_run_lacks_them_and_its_state_changed():
    bare = {"run_id": "a", "state": "RUNNING"}
    full = {**bare, "run_details": {"task_details": [{"display_name": "t", "state": "RUNNING"}]}}
    assert needs_details(bare, None)
    assert needs_details(bare, "PENDING")
    assert not needs_details(bare, "RUNNING")
    assert not needs_details(full, None)


class _FakeHook:
    """Answers ListRuns from a dict and records calls; stands in for the HTTP hook in pure tests."""

    def __init__(self, runs: dict[str, dict], *, list_status: int | None = None, retries: int = 0) -> None:
        self.runs = runs
        self.list_status = list_status
        self.retries = retries  # transient failures the "hook" retries before each list answers
        self.calls: list[tuple[str, object]] = []
        self.closed = False
        self.on_transient_failure = None

    async def alist_runs(self, *, filter_, page_size, page_token=""):
        from kfp_bridge.hooks.kfp import KfpApiError

        ids = filter_["predicates"][0]["string_values"]["values"]
        self.calls.append(("list", len(ids)))
        for _ in range(self.retries):
            self.on_transient_failure("list runs: HTTPStatusError HTTP 503")
            await asyncio.sleep(0.01)
        if self.list_status:
            raise KfpApiError("list runs", self.list_status, "filter not supported")
        return {"runs": [self.runs[i] for i in ids if i in self.runs]}

    async def aget_run(self, run_id):
        from kfp_bridge.hooks.kfp import KfpApiError

        self.calls.append(("get", run_id))
        if run_id not in self.runs:
            raise KfpApiError(f"get run {run_id}", 404, f"Run {run_id} not found")
        return {**self.runs[run_id], "run_details": {"task_details": [{"display_name": "t", "state": "RUNNING"}]}}

    async def aclose(self):
        self.closed = True


def _run_poller(hook: _FakeHook, run_ids: list[str]) -> tuple[dict[str, object], kfp_poller.RunPoller]:
    async def main():
        poller = kfp_poller.RunPoller(("c", "h", ""), lambda: hook, schedule=PollSchedule(join_delay=0.0))
        subs = [poller.register(r, 30.0) for r in run_ids]  # one round only
        results: dict[str, object] = {}
        for sub in subs:
            try:
                results[sub.run_id] = await asyncio.wait_for(sub.next(), 5)
            except Exception as exc:  # noqa: BLE001 - the error itself is the result under test
                results[sub.run_id] = exc
        for sub in subs:
            sub.close()
        await asyncio.sleep(0.05)
        return results, poller

    return asyncio.run(main())


def test_one_list_serves_every_run_and_a_missing_run_gets_its_own_404():
    runs = {f"r{i}": {"run_id": f"r{i}", "state": "SUCCEEDED", "run_details": {"task_details": [{"state": "SUCCEEDED"}]}}
            for i in range(3)}
    hook = _FakeHook(runs)
    results, poller = _run_poller(hook, ["r0", "r1", "r2", "gone"])
    assert [results[f"r{i}"]["state"] for i in range(3)] == ["SUCCEEDED"] * 3
    assert getattr(results["gone"], "status", None) == 404
    assert hook.calls == [("list", 4), ("get", "gone")]
    assert poller.requests == 2
    assert hook.closed  # the last subscriber leaving stops the poller and closes its hook


def test_each_page_reaches_its_triggers_without_waiting_for_the_rest_of_the_round():
    runs = {f"r{i}": {"run_id": f"r{i}", "state": "SUCCEEDED", "run_details": {"task_details": [{"state": "SUCCEEDED"}]}}
            for i in range(kfp_poller.PAGE_SIZE + 1)}
    last = f"r{kfp_poller.PAGE_SIZE}"  # alone on the second page

    class _SlowSecondPage(_FakeHook):
        release = asyncio.Event()

        async def alist_runs(self, *, filter_, page_size, page_token=""):
            if last in filter_["predicates"][0]["string_values"]["values"]:
                await self.release.wait()  # the second page is still on the wire
            return await super().alist_runs(filter_=filter_, page_size=page_size, page_token=page_token)

    async def main():
        hook = _SlowSecondPage(runs)
        poller = kfp_poller.RunPoller(("c", "h", ""), lambda: hook, schedule=PollSchedule(join_delay=0.0))
        subs = {r: poller.register(r, 30.0) for r in runs}
        first = await asyncio.wait_for(subs["r0"].next(), 5)
        later = asyncio.ensure_future(subs[last].next())
        await asyncio.sleep(0.05)
        last_done_before_release = later.done()
        hook.release.set()
        second = await asyncio.wait_for(later, 5)
        for sub in subs.values():
            sub.close()
        return first, last_done_before_release, second, hook.calls

    first, last_done_before_release, second, calls = asyncio.run(main())
    assert first["run_id"] == "r0" and not last_done_before_release and second["run_id"] == last
    assert sorted(calls) == [("list", 1), ("list", kfp_poller.PAGE_SIZE)]


def test_a_server_rejecting_the_filter_switches_to_per_run_gets():
    hook = _FakeHook({"a": {"run_id": "a", "state": "RUNNING"}}, list_status=400)
    results, poller = _run_poller(hook, ["a"])
    assert results["a"]["state"] == "RUNNING"
    assert results["a"]["run_details"]["task_details"]  # fetched by GET
    assert not poller.use_list
    assert hook.calls == [("list", 1), ("get", "a")]


def test_a_transient_list_failure_reaches_the_subscriber_without_a_get():
    hook = _FakeHook({"a": {"run_id": "a", "state": "RUNNING"}}, list_status=503)
    results, poller = _run_poller(hook, ["a"])
    assert getattr(results["a"], "status", None) == 503
    assert poller.use_list
    assert hook.calls == [("list", 1)]


def test_retries_reach_every_subscriber_as_a_delay_then_the_run_arrives():
    hook = _FakeHook({"a": {"run_id": "a", "state": "RUNNING"}, "b": {"run_id": "b", "state": "RUNNING"}}, retries=3)

    async def main():
        poller = kfp_poller.RunPoller(("c", "h", ""), lambda: hook, schedule=PollSchedule(join_delay=0.0))
        subs = [poller.register(r, 30.0) for r in ("a", "b")]
        seen: dict[str, list[str]] = {}

        async def follow(sub):  # as each trigger does, concurrently
            outcomes = seen.setdefault(sub.run_id, [])
            while True:
                try:
                    run = await asyncio.wait_for(sub.next(), 5)
                except kfp_poller.ApiDelayed as delayed:
                    outcomes.append(f"delayed: {delayed}")
                    continue
                outcomes.append(run["state"])
                return

        await asyncio.gather(*(follow(sub) for sub in subs))
        for sub in subs:
            sub.close()
        return seen

    seen = asyncio.run(main())
    for run_id in ("a", "b"):
        assert seen[run_id][0] == "delayed: list runs: HTTPStatusError HTTP 503", seen
        assert seen[run_id][-1] == "RUNNING", seen
    assert hook.calls[0] == ("list", 2)  # one shared look, however many subscribers were told


def test_a_delay_never_hides_a_result_waiting_to_be_read():
    async def main():
        sub = kfp_poller.Subscription(poller=None, run_id="a", interval=1.0)  # type: ignore[arg-type]
        sub.deliver({"run_id": "a", "state": "SUCCEEDED"})
        sub.delay("list runs: HTTP 503")
        first = await sub.next()
        sub.delay("list runs: HTTP 503")
        with pytest.raises(kfp_poller.ApiDelayed):
            await sub.next()
        return first

    assert asyncio.run(main())["state"] == "SUCCEEDED"


class _ScriptedSubscription:
    """Plays back poller outcomes to one trigger: exceptions are raised, dicts are returned."""

    def __init__(self, outcomes: list) -> None:
        self.outcomes = outcomes

    async def next(self):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self):
        pass


def test_the_trigger_logs_an_outage_once_and_its_end_once(caplog, capfd):
    from kfp_bridge.hooks.kfp import KfpApiError

    running = {"run_id": "r-1", "state": "RUNNING"}
    trigger = KfpRunTrigger(run_id="r-1", kfp_conn_id="kfp_x", poll_interval=1.0)
    trigger._subscription = _ScriptedSubscription([
        kfp_poller.ApiDelayed("list runs: HTTPStatusError HTTP 503"),
        kfp_poller.ApiDelayed("list runs: HTTPStatusError HTTP 503"),
        KfpApiError("list runs", 503, "unavailable"),  # the hook's budget ran out: still an outage
        running,
        running,
        kfp_poller.ApiDelayed("list runs: ConnectError"),
        {"run_id": "r-1", "state": "SUCCEEDED"},
    ])

    async def main():
        return [await trigger.poll_once() for _ in range(7)]

    with caplog.at_level(logging.INFO):
        payloads = asyncio.run(main())
    assert payloads[:-1] == [None] * 6
    assert payloads[-1]["status"] == "success"
    text = caplog.text + capfd.readouterr().out  # Airflow's trigger loggers print through structlog
    assert text.count("KFP API unavailable") == 2, text  # two outages, each said once
    assert "KFP API unavailable (list runs: HTTPStatusError HTTP 503); still waiting for run r-1" in text
    assert text.count("KFP API answering again") == 2, text


def test_the_trigger_serializes_to_json_primitives_that_rebuild_it():
    trigger = KfpRunTrigger(run_id="r-1", kfp_conn_id="kfp_x", poll_interval=7.5, deadline=123.0, deferred_at=100.5)
    path, kwargs = trigger.serialize()
    assert path == "kfp_bridge.triggers.kfp.KfpRunTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs == {"run_id": "r-1", "kfp_conn_id": "kfp_x", "poll_interval": 7.5, "deadline": 123.0, "deferred_at": 100.5}
    again = KfpRunTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
