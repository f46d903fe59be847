"""``labelSelector`` and ``fieldSelector`` query parameters, parsed once and matched per object."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kfp_bridge.local.kube import errors

Predicate = Callable[[dict[str, Any]], bool]

_SET_EXPR = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
SUPPORTED_FIELDS = ("metadata.name", "metadata.namespace")


def _split_top_level(selector: str) -> list[str]:
    """Split on commas that are not inside ``in (a,b)`` parentheses."""
    parts, depth, current = [], 0, []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _label_requirement(expr: str) -> Predicate:
    match = _SET_EXPR.match(expr)
    if match:
        key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in expr:
            key, value = (s.strip() for s in expr.split(op, 1))
            if not key:
                break
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    else:
        if expr.startswith("!"):
            key = expr[1:].strip()
            return lambda labels: key not in labels
        if re.fullmatch(r"[A-Za-z0-9./_-]+", expr):
            return lambda labels: expr in labels
    raise errors.bad_request(
        f"unable to parse requirement {expr!r} in labelSelector; use key=value, key!=value, key, !key, "
        "key in (a,b) or key notin (a,b)"
    )


def label_selector(selector: str | None) -> Predicate:
    requirements = [_label_requirement(e) for e in _split_top_level(selector or "")]
    return lambda obj: all(r((obj.get("metadata") or {}).get("labels") or {}) for r in requirements)


def field_selector(selector: str | None) -> Predicate:
    requirements: list[tuple[str, bool, str]] = []
    for expr in _split_top_level(selector or ""):
        for op in ("!=", "==", "="):
            if op in expr:
                field, value = (s.strip() for s in expr.split(op, 1))
                break
        else:
            raise errors.bad_request(
                f"invalid fieldSelector requirement {expr!r}; use field=value or field!=value"
            )
        if field not in SUPPORTED_FIELDS:
            raise errors.bad_request(
                f"field label not supported: {field} (inferenceservices support {', '.join(SUPPORTED_FIELDS)})"
            )
        requirements.append((field.split(".", 1)[1], op != "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return all((meta.get(key) == value) == equal for key, equal, value in requirements)

    return matches
