from __future__ import annotations

import logging

import pytest

from kfp_bridge.hooks.kserve import WATCH_WINDOW, InferenceServiceNotFound, WatchCursor, watch_window


def _obj(rv: str) -> dict:
    return {"metadata": {"name": "isvc", "resourceVersion": rv}}


@pytest.fixture
def cursor() -> WatchCursor:
    return WatchCursor("isvc", "ns", "10", logging.getLogger("test_kserve_watch"))


def test_watch_window_stays_within_one_second_and_the_renewal_window():
    assert watch_window(0.2) == 1
    assert watch_window(12.9) == 12
    assert watch_window(10 * WATCH_WINDOW) == WATCH_WINDOW


def test_watch_resumes_from_the_cursor(cursor):
    assert cursor.watch_kwargs(30) == {
        "field_selector": "metadata.name=isvc",
        "resource_version": "10",
        "timeout_seconds": 30,
    }


@pytest.mark.parametrize("kind", ["ADDED", "MODIFIED"])
def test_a_change_brings_the_object_and_moves_the_cursor(cursor, kind):
    obj = _obj("11")
    assert cursor.changed({"type": kind, "object": obj}) is obj
    assert cursor.watch_kwargs(1)["resource_version"] == "11"


def test_a_bookmark_moves_the_cursor_without_a_change(cursor):
    assert cursor.changed({"type": "BOOKMARK", "object": _obj("15")}) is None
    assert cursor.resource_version == "15"


def test_a_deletion_ends_the_wait(cursor):
    with pytest.raises(InferenceServiceNotFound, match="ns/isvc does not exist"):
        cursor.changed({"type": "DELETED", "object": _obj("12")})


def test_only_a_410_re_lists_and_it_says_so(cursor, caplog):
    with caplog.at_level(logging.INFO, logger="test_kserve_watch"):
        assert not cursor.must_relist(500)
        assert cursor.must_relist(410)
    assert [r.getMessage() for r in caplog.records] == [
        "Watch of ns/isvc: resourceVersion 10 expired (410); re-listing"
    ]


def test_a_broken_connection_says_where_it_resumes(cursor, caplog):
    with caplog.at_level(logging.INFO, logger="test_kserve_watch"):
        cursor.broke(ConnectionResetError("reset by peer"))
    assert caplog.records[0].getMessage() == (
        "Watch of ns/isvc broke (ConnectionResetError: reset by peer); resuming from resourceVersion 10"
    )
