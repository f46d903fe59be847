from __future__ import annotations

from kfp_bridge.utils.run_tags import parse_run_tag, run_tag


def test_round_trip_with_slashes_in_run_id():
    tag = run_tag("train", "fit", "manual__2026/11/25", 3)
    assert parse_run_tag(tag) == {"dag_id": "train", "task_id": "fit", "run_id": "manual__2026/11/25", "map_index": "3"}


def test_unmapped_task_uses_minus_one():
    assert run_tag("d", "t", "r", None).endswith("map_index=-1")


def test_tags_differ_per_map_index_and_run():
    assert run_tag("d", "t", "r", 0) != run_tag("d", "t", "r", 1)
    assert run_tag("d", "t", "r1", 0) != run_tag("d", "t", "r2", 0)


def test_foreign_descriptions_are_not_tags():
    assert parse_run_tag("nightly training") is None
    assert parse_run_tag(None) is None
