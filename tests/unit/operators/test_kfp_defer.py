"""KfpRunOperator._defer: what the trigger and the resumed task are given."""

from __future__ import annotations

import pytest
from airflow.exceptions import TaskDeferred

from kfp_bridge.operators.kfp import PIPELINE_NAMES_KEY, KfpRunOperator

NAMES = {"pipeline_name": "iris-train", "pipeline_version": "v-abc"}


class _Store(dict):
    def set(self, key, value):
        self[key] = value


def _deferral(store: _Store | None) -> TaskDeferred:
    task = KfpRunOperator(task_id="train", pipeline="/p.yaml", deferrable=True, timeout=60, poll_interval=5)
    task.clock = lambda: 1000.0
    task._store = store
    with pytest.raises(TaskDeferred) as deferred:
        task._defer("run-1", NAMES)
    return deferred.value


def test_with_a_state_store_the_names_are_kept_there_only():
    store = _Store()
    deferred = _deferral(store)
    assert store == {PIPELINE_NAMES_KEY: NAMES}
    assert not deferred.kwargs


def test_without_a_state_store_the_names_travel_as_defer_kwargs():
    assert _deferral(None).kwargs == NAMES


def test_the_trigger_gets_the_deadline_and_deferral_time_from_the_operators_clock():
    trigger = _deferral(_Store()).trigger
    assert (trigger.run_id, trigger.poll_interval) == ("run-1", 5)
    assert (trigger.deadline, trigger.deferred_at) == (1060.0, 1000.0)
    assert _deferral(None).method_name == "execute_complete"


def test_the_benchmarks_per_run_baseline_swaps_only_the_trigger():
    # benchmarks/triggerer_airflow.py's baseline: the same operator, a plain get_run-per-run trigger.
    from benchmarks.triggerer_airflow import PerRunPollKfpRunOperator, PerRunPollTrigger

    task = PerRunPollKfpRunOperator(task_id="train", pipeline="/p.yaml", deferrable=True, poll_interval=5)
    store = _Store()
    task._store = store
    with pytest.raises(TaskDeferred) as deferred:
        task._defer("run-1", NAMES)
    assert isinstance(deferred.value.trigger, PerRunPollTrigger)
    assert (deferred.value.trigger.run_id, deferred.value.method_name) == ("run-1", "execute_complete")
    assert store == {PIPELINE_NAMES_KEY: NAMES}
