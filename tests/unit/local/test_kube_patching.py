"""RFC 7386 merge patch and the PATCH content-type rules of the kube stand-in."""

from __future__ import annotations

import json

import pytest

from kfp_bridge.local.kube.errors import KubeApiError
from kfp_bridge.local.kube.patching import JSON_PATCH, MERGE_PATCH, apply_patch, merge_patch


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target, patch, expected):
    assert merge_patch(target, patch) == expected


def test_merge_patch_does_not_modify_its_input():
    target = {"spec": {"predictor": {"canaryTrafficPercent": 10}}}
    merge_patch(target, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert target == {"spec": {"predictor": {"canaryTrafficPercent": 10}}}


def test_apply_merge_patch_removes_canary_with_null():
    obj = {"spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": "a"}}}}
    body = json.dumps({"spec": {"predictor": {"canaryTrafficPercent": None}}}).encode()
    assert apply_patch(obj, body, MERGE_PATCH + "; charset=utf-8") == {
        "spec": {"predictor": {"model": {"storageUri": "a"}}}
    }


def test_json_patch_ops_and_failed_test_is_422():
    obj = {"spec": {"predictor": {}}}
    ops = [
        {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 5},
        {"op": "copy", "from": "/spec", "path": "/x"},
    ]
    assert apply_patch(obj, json.dumps(ops).encode(), JSON_PATCH)["x"] == {
        "predictor": {"canaryTrafficPercent": 5}
    }
    with pytest.raises(KubeApiError) as err:
        apply_patch(obj, json.dumps([{"op": "test", "path": "/spec", "value": 1}]).encode(), JSON_PATCH)
    assert err.value.code == 422


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("application/strategic-merge-patch+json", b"{}", 415),
        ("application/apply-patch+yaml", b"{}", 415),
        ("application/json", b"{}", 415),
        (MERGE_PATCH, b'[{"op": "remove", "path": "/spec"}]', 400),
        (JSON_PATCH, b'{"spec": {}}', 400),
        (MERGE_PATCH, b"{not json", 400),
    ],
)
def test_patch_rejections(content_type, body, code):
    with pytest.raises(KubeApiError) as err:
        apply_patch({"spec": {}}, body, content_type)
    assert err.value.code == code
    assert err.value.body()["kind"] == "Status" and err.value.body()["code"] == code
