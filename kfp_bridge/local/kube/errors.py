"""Kubernetes ``Status`` error bodies (contracts D.3), raised as one exception type."""

from __future__ import annotations

from typing import Any

GROUP = "serving.kserve.io"
PLURAL = "inferenceservices"
RESOURCE = f"{PLURAL}.{GROUP}"


class KubeApiError(Exception):
    """An API failure that renders as a ``kind: Status`` body with the matching HTTP code.

    :param code: HTTP status code.
    :param reason: Kubernetes ``StatusReason`` (``NotFound``, ``Conflict``, ...).
    :param message: human text; says what to do where the caller can fix it.
    :param details: ``details`` of the Status (name, group, kind, causes).
    """

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _details(name: str | None, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"group": extra.pop("group", GROUP), "kind": extra.pop("plural", PLURAL)}
    if name:
        details["name"] = name
    details.update(extra)
    return details


def not_found(name: str, *, group: str = GROUP, plural: str = PLURAL) -> KubeApiError:
    resource = f"{plural}.{group}" if group else plural
    return KubeApiError(404, "NotFound", f'{resource} "{name}" not found', _details(name, group=group, plural=plural))


def already_exists(name: str) -> KubeApiError:
    return KubeApiError(409, "AlreadyExists", f'{RESOURCE} "{name}" already exists', _details(name))


def conflict(name: str) -> KubeApiError:
    return KubeApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {RESOURCE} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(name),
    )


def invalid(name: str | None, field: str, message: str, value: Any = None) -> KubeApiError:
    cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {value!r}: {message}", "field": field}
    text = f'InferenceService.{GROUP} "{name or ""}" is invalid: {field}: {cause["message"]}'
    return KubeApiError(422, "Invalid", text, _details(name, kind="InferenceService", causes=[cause]))


def bad_request(message: str) -> KubeApiError:
    return KubeApiError(400, "BadRequest", message)


def unsupported_media_type(content_type: str) -> KubeApiError:
    if "apply-patch" in content_type:
        # The stand-in has no field managers: server-side apply is refused (kubectl then says
        # "Server-side apply not available on the server"); client-side apply works.
        return KubeApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json-patch+json, application/merge-patch+json (got {content_type!r}: the local "
            "stand-in does not implement server-side apply; use client-side apply (kubectl apply without "
            "--server-side) or a merge patch)",
        )
    return KubeApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json (got {content_type!r}; custom "
        "resources do not support strategic merge patch)",
    )


def expired(requested: int, oldest: int) -> KubeApiError:
    return KubeApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def unauthorized(message: str = "Unauthorized") -> KubeApiError:
    return KubeApiError(401, "Unauthorized", message)


def forbidden(user: str, verb: str, resource: str, subresource: str, group: str, namespace: str | None, name: str = "") -> KubeApiError:
    """The RBAC denial as the apiserver words it (``endpoints/handlers/responsewriters/errors.go``)."""
    res = f"{resource}/{subresource}" if subresource else resource
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = f'User "{user}" cannot {verb} resource "{res}" in API group "{group}"{where}'
    qualified = f"{resource}.{group}" if group else resource
    head = f'{qualified} "{name}" is forbidden' if name else f"{qualified} is forbidden"
    details: dict[str, Any] = {"group": group, "kind": resource}
    if name:
        details["name"] = name
    return KubeApiError(403, "Forbidden", f"{head}: {message}", details)
