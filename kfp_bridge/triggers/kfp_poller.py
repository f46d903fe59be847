"""Coalesced polling of KFP runs: one poller per (connection, host, namespace) in the triggerer.

A triggerer can host hundreds of :class:`~kfp_bridge.triggers.kfp.KfpRunTrigger` s. Polling each
run with its own ``GET /runs/{id}`` costs one request per run per interval; instead every trigger
registers its run id with the poller for its connection, and that poller lists all registered runs
with ``ListRuns`` and an ``IN`` filter on ``run_id`` (a filter the real v2beta1 API supports,
contracts A.7), up to :data:`PAGE_SIZE` runs per request, and hands each trigger its run's
snapshot as soon as its page is in. So N runs cost about N/200 requests per interval, sent one
page at a time spread over the interval (:class:`PollSchedule`).

Fallbacks keep the trigger's behaviour whatever the server returns:

* a run the list did not return (deleted, or another namespace) is fetched with ``GET``, so the
  trigger sees the same 404 it would have seen alone;
* ``ListRuns`` need not carry ``run_details`` (newer KFP servers return task details only from
  ``GetRun`` unless asked), so when a listed run has none, its details are fetched with ``GET``
  only when its state changed, which keeps per-step progress and the failure message;
* a server that rejects the filter (400/404/501) puts the poller into per-run ``GET`` mode.

While the API fails transiently the poller's hook retries, and each retry reaches every
subscriber as :class:`ApiDelayed`, so each trigger can say so in its own task's log. The poller's
task runs in an empty :mod:`contextvars` context: the triggerer routes log lines to a task's log
by context variables, and the poller belongs to no task.

Why not Airflow's shared streams (``BaseEventTrigger.shared_stream_key`` / ``open_shared_stream``,
Airflow 3.3): they serve event-driven scheduling triggers, the stream is opened from one trigger's
kwargs and cannot learn which run ids its subscribers want, and a subscribed trigger's own ``run``
(deadline, timeout handling) never runs. A module-level poller inside the triggerer's event loop
keeps the task-deferral contract intact.

The schedule (:class:`PollSchedule`) is pure bookkeeping over an injected clock; the I/O lives in
:class:`RunPoller`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfp_bridge.hooks.kfp import KfpHook

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # the real server caps page_size at 200 (contracts A.7)
# A new registration waits this long for its first look, so a burst of deferrals shares requests.
JOIN_DELAY_SECONDS = 1.0
# Runs due within this fraction of the shortest interval are polled early with the due ones (as far
# as they fill the round's last page), so runs registered at different times share requests.
ALIGN_FRACTION = 0.5
# Pages of one round in flight at once: a round over 2000 runs should not take 10 round trips.
CONCURRENT_PAGES = 4
# Statuses that mean "this server cannot list by run_id IN (...)": fall back to per-run GET.
LIST_UNSUPPORTED_STATUSES = frozenset({400, 404, 501})

PollerKey = tuple[str, str, str]  # (kfp_conn_id, host, namespace)


@dataclass
class _Tracked:
    intervals: list[float] = field(default_factory=list)
    next_due: float = 0.0

    @property
    def interval(self) -> float:
        return min(self.intervals)


class PollSchedule:
    """When each registered run is next looked at, and which runs one round covers.

    Runs due soon join a round only as far as they fill its last page, and a round of several pages
    spreads them over the next interval (page i of k comes due after (i+1)/k of it). So N runs
    settle into about N/page_size rounds of one full page each, evenly apart: the same requests as
    one big round, but the runs that ended are handed back a few at a time instead of all at once
    (a burst of resumed tasks queues in Airflow's scheduler and executor).

    :param join_delay: seconds a newly added run waits for its first round.
    :param align_fraction: runs due within this fraction of the shortest interval may join a round.
    :param page_size: run ids per ListRuns request.
    """

    def __init__(self, *, join_delay: float = JOIN_DELAY_SECONDS, align_fraction: float = ALIGN_FRACTION,
                 page_size: int = PAGE_SIZE) -> None:
        self.join_delay = join_delay
        self.align_fraction = align_fraction
        self.page_size = page_size
        self._runs: dict[str, _Tracked] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def add(self, run_id: str, interval: float, now: float) -> None:
        tracked = self._runs.get(run_id)
        if tracked is None:
            self._runs[run_id] = _Tracked([interval], now + self.join_delay)
        else:
            tracked.intervals.append(interval)
            tracked.next_due = min(tracked.next_due, now + tracked.interval)

    def remove(self, run_id: str, interval: float) -> None:
        tracked = self._runs.get(run_id)
        if tracked is None:
            return
        if interval in tracked.intervals:
            tracked.intervals.remove(interval)
        if not tracked.intervals:
            del self._runs[run_id]

    def shortest_interval(self) -> float | None:
        return min((t.interval for t in self._runs.values()), default=None)

    def next_wake(self) -> float | None:
        """The clock time of the next round (None when nothing is registered)."""
        return min((t.next_due for t in self._runs.values()), default=None)

    def due(self, now: float) -> list[str]:
        """Runs to look at now: nothing unless one is due; then every due run, and the runs due
        soonest (alignment) while they fill the last page."""
        wake = self.next_wake()
        if wake is None or wake > now:
            return []
        horizon = now + self.align_fraction * (self.shortest_interval() or 0.0)
        due_now: list[str] = []
        soon: list[tuple[float, str]] = []
        for run_id, t in self._runs.items():
            if t.next_due <= now:
                due_now.append(run_id)
            elif t.next_due <= horizon:
                soon.append((t.next_due, run_id))
        soon.sort()
        room = -len(due_now) % self.page_size
        return due_now + [run_id for _, run_id in soon[:room]]

    def pages(self, run_ids: list[str]) -> list[list[str]]:
        return pages(run_ids, self.page_size)

    def polled(self, run_ids: list[str], now: float) -> None:
        """The round over ``run_ids`` (in :meth:`pages` order) was looked at ``now``."""
        round_pages = self.pages(run_ids)
        for index, page in enumerate(round_pages):
            share = (index + 1) / len(round_pages)  # 1 for a round of one page
            for run_id in page:
                tracked = self._runs.get(run_id)
                if tracked is not None:
                    tracked.next_due = now + tracked.interval * share


def pages(run_ids: list[str], size: int = PAGE_SIZE) -> list[list[str]]:
    return [run_ids[i : i + size] for i in range(0, len(run_ids), size)]


def run_id_filter(run_ids: list[str]) -> dict[str, Any]:
    return {"predicates": [{"operation": "IN", "key": "run_id", "string_values": {"values": list(run_ids)}}]}


def needs_details(run: dict[str, Any], previous_state: str | None) -> bool:
    """A listed run without task details is fetched in full only when its state changed."""
    has_details = bool((run.get("run_details") or {}).get("task_details"))
    return not has_details and run.get("state") != previous_state


class ApiDelayed(Exception):
    """The poller's look at the run is being retried: the API fails transiently, the wait goes on."""


class Subscription:
    """One trigger's interest in one run; ``next()`` waits for the poller's next look at it."""

    def __init__(self, poller: RunPoller, run_id: str, interval: float) -> None:
        self.poller = poller
        self.run_id = run_id
        self.interval = interval
        self._ready = asyncio.Event()
        self._run: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._delay: str | None = None

    def deliver(self, run: dict[str, Any]) -> None:
        self._run, self._error, self._delay = run, None, None
        self._ready.set()

    def fail(self, error: BaseException) -> None:
        self._run, self._error, self._delay = None, error, None
        self._ready.set()

    def delay(self, reason: str) -> None:
        """The look is being retried; never hides a result that is already waiting to be read."""
        if self._run is None and self._error is None:
            self._delay = reason
            self._ready.set()

    async def next(self) -> dict[str, Any]:
        """The run as of the next look; raises what that look raised (e.g. ``KfpApiError``), or
        :class:`ApiDelayed` while the look is being retried."""
        await self._ready.wait()
        self._ready.clear()
        run, error, delay = self._run, self._error, self._delay
        self._run = self._error = self._delay = None
        if error is not None:
            raise error
        if run is not None:
            return run
        raise ApiDelayed(delay)

    def close(self) -> None:
        self.poller.unregister(self)


class RunPoller:
    """Looks at every registered run of one connection in shared ``ListRuns`` requests.

    :param key: (kfp_conn_id, host, namespace).
    :param hook_factory: builds the poller's own hook (the triggers' hooks close with them).
    :param clock: monotonic time, injected for tests.
    """

    def __init__(self, key: PollerKey, hook_factory: Callable[[], KfpHook], *,
                 clock: Callable[[], float] = time.monotonic, schedule: PollSchedule | None = None) -> None:
        self.key = key
        self._hook_factory = hook_factory
        self._clock = clock
        self.schedule = schedule or PollSchedule()
        self._subscribers: dict[str, set[Subscription]] = {}
        self._states: dict[str, str | None] = {}
        self._details: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.use_list = True
        self.requests = 0  # API requests this poller sent (benchmarks and tests read it)

    # ----- registration -----

    def register(self, run_id: str, interval: float) -> Subscription:
        subscription = Subscription(self, run_id, interval)
        self._subscribers.setdefault(run_id, set()).add(subscription)
        self.schedule.add(run_id, interval, self._clock())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"kfp-poller-{self.key[0]}", context=contextvars.Context()
            )
        self._wake.set()
        return subscription

    def unregister(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.run_id)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.discard(subscription)
        self.schedule.remove(subscription.run_id, subscription.interval)
        if not subscribers:
            del self._subscribers[subscription.run_id]
            self._states.pop(subscription.run_id, None)
            self._details.pop(subscription.run_id, None)
        if not self._subscribers:
            _forget(self)
            if self._task is not None and not self._task.done():
                self._task.cancel()

    @property
    def run_count(self) -> int:
        return len(self._subscribers)

    # ----- the loop -----

    async def _loop(self) -> None:
        hook = self._hook_factory()
        hook.on_transient_failure = self._report_delay
        try:
            while self._subscribers:
                now = self._clock()
                due = self.schedule.due(now)
                if due:
                    self.schedule.polled(due, now)
                    await self._look(hook, due)
                    continue
                wake = self.schedule.next_wake()
                self._wake.clear()
                timeout = None if wake is None else max(0.0, wake - now)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave triggers waiting forever
            log.exception("KFP run poller %s stopped", self.key[:2])
            for subscribers in list(self._subscribers.values()):
                for subscription in list(subscribers):
                    subscription.fail(exc)
        finally:
            await hook.aclose()

    async def _look(self, hook: KfpHook, run_ids: list[str]) -> None:
        """One round: each page's runs reach their triggers as soon as that page is in."""
        from kfp_bridge.hooks.kfp import KfpApiError

        unlisted: list[str] = []  # runs to GET one by one: the server cannot list by run_id
        if not self.use_list:
            unlisted = list(run_ids)
        else:
            gate = asyncio.Semaphore(CONCURRENT_PAGES)

            async def one_page(page: list[str]) -> None:
                async with gate:
                    if not self.use_list:
                        unlisted.extend(page)
                        return
                    try:
                        listed = await self._list(hook, page)
                    except KfpApiError as err:
                        if err.status in LIST_UNSUPPORTED_STATUSES:
                            log.warning("KFP ListRuns with an IN filter on run_id failed (%s); polling runs one by one", err)
                            self.use_list = False
                            unlisted.extend(page)
                        else:
                            self._fail(page, err)  # failed, not missing: no GET fallback
                        return
                    to_get = []
                    for run_id in page:
                        run = listed.get(run_id)
                        if run is None or needs_details(run, self._states.get(run_id)):
                            to_get.append(run_id)  # missing from the list, or its steps are needed
                        else:
                            self._deliver(run_id, run)
                    await self._get_each(hook, to_get)

            await asyncio.gather(*(one_page(page) for page in self.schedule.pages(run_ids)))
        await self._get_each(hook, unlisted)

    async def _get_each(self, hook: KfpHook, run_ids: list[str]) -> None:
        from kfp_bridge.hooks.kfp import KfpApiError

        for run_id in run_ids:
            if run_id not in self._subscribers:
                continue
            try:
                self.requests += 1
                run = await hook.aget_run(run_id)
            except KfpApiError as err:
                self._fail([run_id], err)
                continue
            self._deliver(run_id, run)

    async def _list(self, hook: KfpHook, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        token = ""
        while True:
            self.requests += 1
            body = await hook.alist_runs(filter_=run_id_filter(run_ids), page_size=PAGE_SIZE, page_token=token)
            for run in body.get("runs") or []:
                if run.get("run_id") in self._subscribers:
                    found[run["run_id"]] = run
            token = body.get("next_page_token") or ""
            if not token:
                return found

    def _deliver(self, run_id: str, run: dict[str, Any]) -> None:
        details = run.get("run_details") or {}
        if details.get("task_details"):
            self._details[run_id] = details
        elif run_id in self._details:
            # A listed run without details, state unchanged: the steps are as last fetched.
            run = {**run, "run_details": self._details[run_id]}
        self._states[run_id] = run.get("state")
        for subscription in list(self._subscribers.get(run_id, ())):
            subscription.deliver(run)

    def _report_delay(self, reason: str) -> None:
        # One host serves every registered run: an outage delays them all.
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.delay(reason)

    def _fail(self, run_ids: Iterable[str], error: BaseException) -> None:
        for run_id in run_ids:
            for subscription in list(self._subscribers.get(run_id, ())):
                subscription.fail(error)


# One registry per event loop: the triggerer has one, tests start many.
_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[PollerKey, RunPoller]] = weakref.WeakKeyDictionary()


def _forget(poller: RunPoller) -> None:
    for pollers in _pollers.values():
        if pollers.get(poller.key) is poller:
            del pollers[poller.key]


def poller_for(key: PollerKey, hook_factory: Callable[[], KfpHook]) -> RunPoller:
    """The running loop's poller for ``key``, created on first use."""
    pollers = _pollers.setdefault(asyncio.get_running_loop(), {})
    poller = pollers.get(key)
    if poller is None:
        poller = pollers[key] = RunPoller(key, hook_factory)
    return poller


def subscribe(key: PollerKey, hook_factory: Callable[[], KfpHook], run_id: str, interval: float) -> Subscription:
    return poller_for(key, hook_factory).register(run_id, interval)


def active_pollers() -> list[RunPoller]:
    """The running loop's pollers (for benchmarks and tests)."""
    return list(_pollers.get(asyncio.get_running_loop(), {}).values())

