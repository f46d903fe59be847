from __future__ import annotations

import re

import pytest

from kfp_bridge.utils.run_tags import instance_name, parse_run_tag, run_tag, task_identity


def test_round_trip_with_slashes_plus_and_unicode_in_run_id():
    tag = run_tag("train", "fit", "manual__2026/11/25+00:00 ü%~", 3, "prod")
    assert parse_run_tag(tag) == {
        "instance": "prod", "dag_id": "train", "task_id": "fit", "run_id": "manual__2026/11/25+00:00 ü%~", "map_index": "3",
    }


def test_tag_survives_kfp_second_unescape_and_stays_readable():
    # fidelity.md K1: the real server URL-unescapes the filter again; "+" would become a space.
    tag = run_tag("etl", "train", "scheduled__2026-01-01T00:00:00+00:00", None, "prod")
    assert not re.search(r"[+% ]", tag)
    assert tag.startswith("airflow/prod/etl/train/-1/scheduled__2026-01-01T00:00:00~2B00:00/")


def test_tags_differ_per_map_index_run_instance_and_case():
    assert run_tag("d", "t", "r", 0, "i") != run_tag("d", "t", "r", 1, "i")
    assert run_tag("d", "t", "r1", 0, "i") != run_tag("d", "t", "r2", 0, "i")
    assert run_tag("d", "t", "r", 0, "staging") != run_tag("d", "t", "r", 0, "production")
    # MySQL compares case-insensitively (K10): the hash must differ in more than case.
    assert run_tag("d", "t", "Run", 0, "i").lower() != run_tag("d", "t", "run", 0, "i").lower()


def test_unmapped_task_index_is_minus_one_in_both_formats():
    identity = task_identity("d", "t", "r", None, "i")
    assert identity.map_index == -1
    assert identity.legacy_tag == "airflow-task:dag_id=d/task_id=t/run_id=r/map_index=-1"
    assert parse_run_tag(identity.legacy_tag) == {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": "-1"}


def test_foreign_or_tampered_descriptions_are_not_tags():
    assert parse_run_tag("nightly training") is None
    assert parse_run_tag(None) is None
    tag = run_tag("d", "t", "r", 0, "i")
    assert parse_run_tag(tag.replace("/r/", "/s/")) is None  # the hash no longer matches


def test_instance_name_from_config_then_base_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW__KFP_BRIDGE__INSTANCE_NAME", "staging")
    assert instance_name() == "staging"
    monkeypatch.delenv("AIRFLOW__KFP_BRIDGE__INSTANCE_NAME")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.prod.example.com/")
    assert instance_name() == "airflow.prod.example.com"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080")
    assert instance_name() == "default"  # a developer's stack: tags match the test process's
