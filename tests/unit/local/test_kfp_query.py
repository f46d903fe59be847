"""Filters, sorting and paging of the KFP stand-in (pure functions; contracts.md A.7)."""

from __future__ import annotations

import json

import pytest

from kfp_bridge.local.kfp import query
from kfp_bridge.local.kfp.wire import ApiError

RUNS = [
    {"run_id": f"r{i}", "display_name": f"run-{i}", "created_at": 1000.0 + i, "state": s, "storage_state": "AVAILABLE"}
    for i, s in enumerate(["SUCCEEDED", "FAILED", "RUNNING", "SUCCEEDED", "CANCELED"])
]


def _filter(*predicates: dict) -> str:
    return json.dumps({"predicates": list(predicates)})


def _ids(page: list[dict]) -> list[str]:
    return [d["run_id"] for d in page]


@pytest.mark.parametrize("operation", [1, "1", "EQUALS", "equals"])
@pytest.mark.parametrize("value_key", ["string_value", "stringValue"])
def test_equals_accepts_integer_or_name_and_both_value_spellings(operation, value_key):
    q = query.parse_list_query("runs", filter_text=_filter({"operation": operation, "key": "display_name", value_key: "run-3"}))
    page, total, token = query.apply(q, RUNS)
    assert (_ids(page), total, token) == (["r3"], 1, "")


def test_in_substring_and_timestamp_predicates_are_anded():
    q = query.parse_list_query("runs", filter_text=_filter(
        {"operation": "IN", "key": "state", "stringValues": {"values": ["SUCCEEDED", "CANCELED"]}},
        {"operation": "IS_SUBSTRING", "key": "display_name", "string_value": "run-"},
        {"operation": "GREATER_THAN", "key": "created_at", "timestamp_value": "1970-01-01T00:16:41Z"},
    ))
    page, total, _ = query.apply(q, RUNS)
    assert _ids(page) == ["r3", "r4"] and total == 2


def test_sort_desc_and_paging_cover_every_item_once():
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        q = query.parse_list_query("runs", sort_by="created_at desc", page_size=2, page_token=token)
        page, total, token = query.apply(q, RUNS)
        assert total == 5
        seen += _ids(page)
        pages += 1
        if not token:
            break
    assert seen == ["r4", "r3", "r2", "r1", "r0"] and pages == 3


@pytest.mark.parametrize(("raw", "expected"), [(None, 20), ("", 20), (0, 20), ("7", 7), (500, 200)])
def test_page_size_default_and_cap(raw, expected):
    assert query.parse_page_size(raw) == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"filter_text": "{not json"}, "not valid JSON"),
        ({"filter_text": _filter({"operation": 1, "key": "colour", "string_value": "x"})}, "'colour' is not supported"),
        ({"filter_text": _filter({"operation": 4, "key": "display_name", "string_value": "x"})}, "operation 4"),
        ({"filter_text": _filter({"operation": 1, "key": "display_name"})}, "exactly one value field"),
        ({"filter_text": _filter({"operation": "IN", "key": "state", "string_value": "x"})}, "IN needs a list"),
        ({"sort_by": "created_at sideways"}, "invalid sort by format"),
        ({"sort_by": "colour"}, "sort_by field 'colour'"),
        ({"page_size": -1}, "negative"),
        ({"page_token": "%%%garbage"}, "page_token"),
    ],
)
def test_malformed_input_is_a_400_naming_the_problem(kwargs, fragment):
    with pytest.raises(ApiError) as info:
        query.parse_list_query("runs", **kwargs)
    assert info.value.http_status == 400
    assert fragment.lower() in info.value.message.lower()


def test_page_token_is_bound_to_its_sort_order():
    q = query.parse_list_query("runs", sort_by="created_at", page_size=1)
    _, _, token = query.apply(q, RUNS)
    assert token
    with pytest.raises(ApiError, match="different filter or sort_by"):
        query.parse_list_query("runs", sort_by="display_name", page_size=1, page_token=token)


def test_keys_are_per_resource():
    query.parse_list_query("experiments", sort_by="last_run_created_at")
    with pytest.raises(ApiError, match="not supported for pipelines"):
        query.parse_list_query("pipelines", sort_by="state")
