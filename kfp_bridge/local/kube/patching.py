"""PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

Custom resources accept exactly these two; strategic merge patch and anything else is 415, as on
a real API server.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from kfp_bridge.local.kube import errors

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes a key, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(obj: dict[str, Any], raw_body: bytes, content_type: str) -> dict[str, Any]:
    """Apply a PATCH request body to ``obj`` (not modified) and return the patched copy."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in (MERGE_PATCH, JSON_PATCH):
        raise errors.unsupported_media_type(content_type)
    try:
        body = json.loads(raw_body or b"null")
    except ValueError as exc:
        raise errors.bad_request(f"the patch body is not valid JSON: {exc}") from exc
    if media_type == MERGE_PATCH:
        if not isinstance(body, dict):
            # kubernetes 30.1 sends JSON-patch lists as merge-patch unless the header is overridden.
            raise errors.bad_request(
                f"a merge patch must be a JSON object, got {type(body).__name__}; to send RFC 6902 "
                "operations set Content-Type: application/json-patch+json "
                "(api_client.set_default_header('Content-Type', 'application/json-patch+json'))"
            )
        return merge_patch(obj, body)
    if not isinstance(body, list):
        raise errors.bad_request(
            f"a JSON patch must be a list of operations, got {type(body).__name__}; send an object as "
            "application/merge-patch+json instead"
        )
    try:
        return jsonpatch.apply_patch(obj, body, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise errors.KubeApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
