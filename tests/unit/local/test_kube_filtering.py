"""labelSelector / fieldSelector parsing of the kube stand-in."""

from __future__ import annotations

import pytest

from kfp_bridge.local.kube.errors import KubeApiError
from kfp_bridge.local.kube.filtering import field_selector, label_selector


def _obj(name="a", ns="default", **labels):
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}}


@pytest.mark.parametrize(
    ("selector", "matching"),
    [
        ("", {"x", "y", "z"}),
        ("app=web", {"x", "y"}),
        ("app==web,tier=front", {"x"}),
        ("app!=web", {"z"}),
        ("tier", {"x"}),
        ("!tier", {"y", "z"}),
        ("app in (web, db)", {"x", "y", "z"}),
        ("app notin (web)", {"z"}),
        ("app in (db),tier", set()),
    ],
)
def test_label_selector(selector, matching):
    objects = {"x": _obj("x", app="web", tier="front"), "y": _obj("y", app="web"), "z": _obj("z", app="db")}
    match = label_selector(selector)
    assert {name for name, obj in objects.items() if match(obj)} == matching


def test_field_selector_name_and_namespace():
    match = field_selector("metadata.name=a,metadata.namespace!=kube-system")
    assert match(_obj("a", "default"))
    assert not match(_obj("a", "kube-system"))
    assert not match(_obj("b", "default"))


def test_unsupported_field_names_the_supported_ones():
    with pytest.raises(KubeApiError) as err:
        field_selector("status.url=x")
    assert err.value.code == 400 and "metadata.name" in err.value.message


def test_bad_label_requirement_is_400():
    with pytest.raises(KubeApiError) as err:
        label_selector("a=b,=c")
    assert err.value.code == 400
