"""Filters, sorting and paging of the KFP stand-in (pure functions; contracts.md A.7, fidelity K1/K10)."""

from __future__ import annotations

import json
import urllib.parse

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


# ----- fidelity K1: the second URL decoding (list_request_util.go parseAPIFilter) -----


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [("a+b", "a b"), ("a%2Bb", "a+b"), ("%7B%22x%22%3A1%7D", '{"x":1}'), ("caf%C3%A9", "café"), ("plain", "plain")],
)
def test_query_unescape_is_gos(raw, decoded):
    assert query.query_unescape(raw) == decoded


@pytest.mark.parametrize(("raw", "escape"), [("%zz", "%zz"), ("100%", "%"), ("x%4", "%4"), ("%a\u00e9", "%a\\xc3")])
def test_a_bad_escape_is_a_400_quoting_like_go(raw, escape):
    with pytest.raises(ApiError) as info:
        query.parse_filter(raw, "runs")
    assert info.value.http_status == 400
    assert info.value.external == f'failed to parse valid filter from "{raw}": invalid URL escape "{escape}"'
    assert info.value.message == f"Invalid input error: {info.value.external}"


def test_a_plus_in_a_plain_json_filter_becomes_a_space():
    doc = {"run_id": "r", "description": "t+00:00"}
    plain = query.parse_list_query("runs", filter_text=_filter({"operation": 1, "key": "description", "string_value": "t+00:00"}))
    assert query.apply(plain, [doc])[1] == 0
    encoded = query.parse_list_query(
        "runs", filter_text=_filter({"operation": 1, "key": "description", "string_value": "t%2B00:00"}))
    assert query.apply(encoded, [doc])[1] == 1


# ----- fidelity K10: MySQL semantics (filter.go AddToSelect, list.go AddSortingToSelect) -----


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("a_c", {"abc", "a_c", "xxAbCxx"}),
        ("a%c", {"abc", "a_c", "ac", "xxAbCxx", "a-long-c"}),
        ("a\\_c", {"a_c"}),
        ("A", {"abc", "a_c", "ac", "xxAbCxx", "a-long-c"}),
    ],
)
def test_is_substring_is_a_case_insensitive_like(pattern, matches):
    docs = [{"run_id": n, "display_name": n} for n in ("abc", "a_c", "ac", "xxAbCxx", "a-long-c", "zzz")]
    # The pattern travels URL-encoded once, as it must (K1), so '%' and '\\' survive.
    text = _filter({"operation": "IS_SUBSTRING", "key": "display_name", "string_value": pattern})
    q = query.parse_list_query("runs", filter_text=urllib.parse.quote(text))
    page, _, _ = query.apply(q, docs)
    assert {d["run_id"] for d in page} == matches


def test_string_comparisons_ignore_case_and_accents():
    docs = [{"run_id": "1", "display_name": "École"}, {"run_id": "2", "display_name": "ecole"},
            {"run_id": "3", "display_name": "other"}]
    q = query.parse_list_query("runs", filter_text=_filter({"operation": "EQUALS", "key": "display_name", "string_value": "ECOLE"}))
    assert _ids(query.apply(q, docs)[0]) == ["1", "2"]
    q = query.parse_list_query("runs", filter_text=_filter(
        {"operation": "IN", "key": "state", "string_values": {"values": ["succeeded"]}}))
    assert _ids(query.apply(q, RUNS)[0]) == ["r0", "r3"]


def test_in_compares_numbers_with_a_text_column_as_text_and_timestamps_as_seconds():
    docs = [{"run_id": "7", "display_name": "7", "created_at": 7.9}, {"run_id": "8", "display_name": "x", "created_at": 8.2}]
    q = query.parse_list_query("runs", filter_text=_filter(
        {"operation": "IN", "key": "display_name", "int_values": {"values": [7, 9]}}))
    assert _ids(query.apply(q, docs)[0]) == ["7"]
    q = query.parse_list_query("runs", filter_text=_filter(
        {"operation": "IN", "key": "created_at", "long_values": {"values": [8]}}))
    assert _ids(query.apply(q, docs)[0]) == ["8"]


def test_in_over_many_ids_selects_exactly_those_runs():
    docs = [{"run_id": f"Run-{i}"} for i in range(1000)]
    wanted = [f"run-{i}" for i in range(0, 1000, 5)]  # ids compare case-insensitively, as in MySQL
    q = query.parse_list_query("runs", page_size=200, filter_text=_filter(
        {"operation": "IN", "key": "run_id", "string_values": {"values": wanted}}))
    page, total, token = query.apply(q, docs)
    assert total == 200 and token == "" and sorted(_ids(page)) == sorted(f"Run-{i}" for i in range(0, 1000, 5))


def test_is_substring_needs_a_string_value():
    with pytest.raises(ApiError, match="IS_SUBSTRING needs a 'string_value'"):
        query.parse_filter(_filter({"operation": "IS_SUBSTRING", "key": "display_name", "int_value": 3}), "runs")


def test_sort_uses_whole_seconds_then_the_id_in_the_same_direction():
    docs = [{"run_id": "b", "created_at": 100.9}, {"run_id": "a", "created_at": 100.1},
            {"run_id": "c", "created_at": 100.5}, {"run_id": "d", "created_at": 99.99}]
    asc = query.apply(query.parse_list_query("runs", sort_by="created_at"), docs)[0]
    assert _ids(asc) == ["d", "a", "b", "c"]  # 100.1, 100.9 and 100.5 are all second 100: by id
    desc = query.apply(query.parse_list_query("runs", sort_by="Created_At DESC"), docs)[0]
    assert _ids(desc) == ["c", "b", "a", "d"]


def test_string_sort_is_case_insensitive():
    docs = [{"run_id": "1", "display_name": "beta"}, {"run_id": "2", "display_name": "Alpha"},
            {"run_id": "3", "display_name": "alpha"}]
    page = query.apply(query.parse_list_query("runs", sort_by="display_name"), docs)[0]
    assert _ids(page) == ["2", "3", "1"]
