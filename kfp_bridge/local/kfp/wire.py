"""How resources look on the wire: snake_case keys, enum names, RFC 3339 times, empty fields omitted.

Stored documents keep times as epoch-second floats so they sort precisely; everything else is
already in API shape. Each ``render_*`` function lists its fields explicitly, so a response can
never carry a field the kfp_server_api models do not know (the stand-in must not invent fields).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

API = "/apis/v2beta1"

# google.rpc.Code values; the HTTP mapping is grpc-gateway v2's (contracts A.8).
INVALID_ARGUMENT = 3
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
FAILED_PRECONDITION = 9
ABORTED = 10
UNAUTHENTICATED = 16
INTERNAL = 13
UNAVAILABLE = 14
UNKNOWN = 2
HTTP_STATUS = {
    INVALID_ARGUMENT: 400,
    FAILED_PRECONDITION: 400,
    UNAUTHENTICATED: 401,
    PERMISSION_DENIED: 403,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    ABORTED: 409,
    INTERNAL: 500,
    UNKNOWN: 500,
    UNAVAILABLE: 503,
}
# Used when something (fault injection) picks the HTTP status first.
GRPC_CODE_FOR_HTTP = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 501: 12, 503: 14, 504: 4}

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})


class ApiError(Exception):
    """An error the API answers with the grpc-gateway body ``{code, message, details}``.

    :param message: the body's ``message``; on the real server the internal error chain
        (``UserError.GRPCStatus`` in backend/src/common/util/error.go).
    :param external: the user-facing message in ``details[0].message``; defaults to ``message``.
    """

    def __init__(self, code: int, message: str, external: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.external = message if external is None else external

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def wrap(self, context: str) -> ApiError:
        """``util.Wrap``: the chain gains a prefix, the code and the user-facing message stay."""
        return ApiError(self.code, f"{context}: {self.message}", self.external)


# The upstream error constructors (backend/src/common/util/error.go). Each builds the same
# internal chain (``message``) and user-facing message (``external``) the Go function does.
def invalid_input_error(message: str) -> ApiError:
    """``NewInvalidInputError`` → InvalidArgument (400)."""
    return ApiError(INVALID_ARGUMENT, f"Invalid input error: {message}", message)


def bad_request_error(cause: str, message: str) -> ApiError:
    """``NewBadRequestError`` → **Aborted (409)**, despite the name."""
    return ApiError(ABORTED, f"BadRequestError: {message}: {cause}", message)


def internal_server_error(cause: str, message: str) -> ApiError:
    """``NewInternalServerError`` → Internal (500); the user-facing message says nothing more."""
    return ApiError(INTERNAL, f"InternalServerError: {message}: {cause}", "Internal Server Error")


def unauthenticated_error(cause: str, message: str) -> ApiError:
    """``NewUnauthenticatedError`` → Unauthenticated (401)."""
    return ApiError(UNAUTHENTICATED, f"Unauthenticated: {message}: {cause}", message)


def permission_denied_error(cause: str, message: str) -> ApiError:
    """``NewPermissionDeniedError`` → PermissionDenied (403)."""
    return ApiError(PERMISSION_DENIED, f"PermissionDenied: {message}: {cause}", message)


def resource_not_found_error(kind: str, ident: str) -> ApiError:
    """``NewResourceNotFoundError`` → NotFound (404)."""
    return ApiError(NOT_FOUND, f"ResourceNotFoundError: {kind} {ident} not found", f"{kind} {ident} not found")


def go_quote(text: str | bytes) -> str:
    """Go's ``%q`` / ``strconv.Quote``: double quotes, backslash escapes, printable runes kept.

    Bytes that are not UTF-8 (or lone surrogates from ``surrogateescape``) come out as ``\\xHH``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    out = ['"']
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char == " " or (char.isprintable() and code != 0x7F):
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def bad_request(message: str) -> ApiError:
    return ApiError(INVALID_ARGUMENT, message)


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(NOT_FOUND, f"{kind} {ident} not found")


def error_body(code: int, message: str, external: str | None = None) -> dict[str, Any]:
    """grpc-gateway's body: the chain in ``message``, the user-facing text in the Status detail."""
    detail = message if external is None else external
    return {
        "code": code,
        "message": message,
        "details": [{"@type": "type.googleapis.com/google.rpc.Status", "code": code, "message": detail}],
    }


def status(code: int, message: str) -> dict[str, Any]:
    """A google.rpc.Status value for ``error`` fields of runs and tasks."""
    return {"code": code, "message": message}


def rfc3339(ts: float | None) -> str:
    # The real server stores seconds; unset times render as the epoch, as it does.
    seconds = int(ts or 0)
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"timestamp {text!r} is not RFC 3339; use e.g. '2026-01-01T00:00:00Z'") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _pick(doc: dict[str, Any], fields: tuple[str, ...], times: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = doc.get(name)
        if name in times:
            if value is not None:
                out[name] = rfc3339(value)
        elif not _is_empty(value):
            out[name] = value
    return out


def render_experiment(doc: dict[str, Any]) -> dict[str, Any]:
    return _pick(
        doc,
        ("experiment_id", "display_name", "description", "created_at", "namespace", "storage_state",
         "last_run_created_at"),
        times=("created_at", "last_run_created_at"),
    )


def render_pipeline(doc: dict[str, Any]) -> dict[str, Any]:
    return _pick(
        doc,
        ("pipeline_id", "display_name", "name", "description", "created_at", "namespace", "tags"),
        times=("created_at",),
    )


def render_version(doc: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    out = _pick(
        doc,
        ("pipeline_id", "pipeline_version_id", "display_name", "name", "description", "created_at",
         "package_url", "code_source_url", "tags"),
        times=("created_at",),
    )
    if spec is not None:
        out["pipeline_spec"] = spec
    return out


def render_status(entry: dict[str, Any]) -> dict[str, Any]:
    return _pick(entry, ("update_time", "state", "error"), times=("update_time",))


def render_task(task: dict[str, Any]) -> dict[str, Any]:
    out = _pick(
        task,
        ("run_id", "task_id", "display_name", "create_time", "start_time", "end_time", "state", "error",
         "parent_task_id", "pod_name"),
        times=("create_time", "start_time", "end_time"),
    )
    if task.get("state_history"):
        out["state_history"] = [render_status(s) for s in task["state_history"]]
    if task.get("child_tasks"):
        # toApiPipelineTaskDetail (apiserver/server/api_converter.go) sets the oneof's pod_name to
        # the child node id, never task_id (fidelity K3).
        out["child_tasks"] = [{"pod_name": child} for child in task["child_tasks"]]
    return out


def render_run(doc: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    out = _pick(
        doc,
        ("experiment_id", "run_id", "display_name", "description", "storage_state",
         "pipeline_version_reference", "runtime_config", "service_account", "created_at", "scheduled_at",
         "finished_at", "state", "error"),
        times=("created_at", "scheduled_at", "finished_at"),
    )
    if spec is not None and not doc.get("pipeline_version_reference"):
        out["pipeline_spec"] = spec
    tasks = doc.get("task_details") or []
    if tasks:
        out["run_details"] = {"task_details": [render_task(t) for t in tasks]}
    if doc.get("state_history"):
        out["state_history"] = [render_status(s) for s in doc["state_history"]]
    return out


def render_list(items_key: str, items: list[dict[str, Any]], total: int, next_token: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if items:
        out[items_key] = items
    if total:
        out["total_size"] = total
    if next_token:
        out["next_page_token"] = next_token
    return out
