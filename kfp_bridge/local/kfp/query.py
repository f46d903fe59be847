"""List requests: ``filter`` predicates, ``sort_by`` and paging, as the real API server reads them.

Pure functions over stored documents (contracts A.7). Every malformed input raises a 400
:class:`~kfp_bridge.local.kfp.wire.ApiError` whose message says what to send instead.

Where the provider depends on it, this follows KFP 2.17 exactly (reference/fidelity.md K1, K10):

* ``filter`` is URL-unescaped once more after the query string was decoded
  (backend/src/apiserver/server/list_request_util.go ``parseAPIFilter`` calls Go's
  ``url.QueryUnescape``): ``+`` becomes a space, ``%XX`` a byte, and a ``%`` not followed by two
  hex digits is a 400 ``failed to parse valid filter from "<filter>": invalid URL escape "%zz"``.
  A client must therefore URL-encode the serialized filter once, as the SDK documents.
* Predicates become SQL on MySQL (backend/src/apiserver/filter/filter.go ``AddToSelect``):
  ``IS_SUBSTRING`` is ``LIKE '%<value>%'`` with the value unescaped, so ``_`` and ``%`` in it are
  wildcards (and ``\\`` escapes the next character); string comparisons follow the column
  collation (utf8mb4_0900_ai_ci): case- and accent-insensitive, approximated here by Unicode
  case folding with combining marks removed; time columns hold whole seconds.
* Sorting is ``ORDER BY <field> <dir>, <uuid> <dir>`` (backend/src/apiserver/list/list.go
  ``AddSortingToSelect``): times compare in whole seconds and the id breaks ties, so the order of
  items created within one second is by id, not by creation.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kfp_bridge.local.kfp.wire import bad_request, go_quote, invalid_input_error, parse_rfc3339

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200

# Filter and sort keys per resource (backend/src/apiserver/model/*.go APIToModelFieldMap).
KEYS: dict[str, frozenset[str]] = {
    "runs": frozenset({
        "run_id", "display_name", "created_at", "finished_at", "scheduled_at", "description",
        "storage_state", "state", "namespace", "experiment_id", "recurring_run_id", "status",
    }),
    "experiments": frozenset({
        "experiment_id", "display_name", "created_at", "last_run_created_at", "description", "namespace",
        "storage_state",
    }),
    "pipelines": frozenset({"pipeline_id", "display_name", "created_at", "description", "namespace", "name"}),
    "pipeline_versions": frozenset({
        "pipeline_version_id", "display_name", "created_at", "description", "pipeline_spec", "status", "name",
    }),
}
ID_KEY = {"runs": "run_id", "experiments": "experiment_id", "pipelines": "pipeline_id",
          "pipeline_versions": "pipeline_version_id"}
# v1 spelled the run state "status"; both read the same field.
ALIASES = {"status": "state"}
TIME_KEYS = frozenset({"created_at", "finished_at", "scheduled_at", "last_run_created_at"})

OPERATIONS = {
    "EQUALS": 1, "NOT_EQUALS": 2, "GREATER_THAN": 3, "GREATER_THAN_EQUALS": 5, "LESS_THAN": 6,
    "LESS_THAN_EQUALS": 7, "IN": 8, "IS_SUBSTRING": 9,
}
_OP_NAMES = {v: k for k, v in OPERATIONS.items()}
_SCALAR_VALUES = {
    "int_value": "int", "intValue": "int", "long_value": "long", "longValue": "long",
    "string_value": "string", "stringValue": "string", "timestamp_value": "timestamp",
    "timestampValue": "timestamp", "bool_value": "bool", "boolValue": "bool",
}
_LIST_VALUES = {
    "int_values": "int", "intValues": "int", "long_values": "long", "longValues": "long",
    "string_values": "string", "stringValues": "string",
}


@dataclass(frozen=True)
class Predicate:
    operation: str
    key: str
    value: Any


@dataclass(frozen=True)
class ListQuery:
    resource: str
    predicates: tuple[Predicate, ...]
    sort_key: str
    descending: bool
    page_size: int
    offset: int
    fingerprint: str


def _convert(kind: str, raw: Any, where: str) -> Any:
    try:
        if kind in ("int", "long"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind == "timestamp":
            return raw if isinstance(raw, (int, float)) else parse_rfc3339(str(raw))
        if kind == "bool":
            return bool(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"filter {where}: {raw!r} is not a valid {kind} value") from exc


def parse_operation(raw: Any) -> str:
    """Accept the enum name ("EQUALS") or its number (1), as the gateway does."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in _OP_NAMES:
        return _OP_NAMES[raw]
    if isinstance(raw, str):
        if raw.upper() in OPERATIONS:
            return raw.upper()
        if raw.isdigit() and int(raw) in _OP_NAMES:
            return _OP_NAMES[int(raw)]
    raise bad_request(
        f"filter operation {raw!r} is not supported; use one of {sorted(OPERATIONS)} or their numbers"
    )


def parse_predicate(raw: Any, resource: str) -> Predicate:
    if not isinstance(raw, dict):
        raise bad_request(f"filter predicate {raw!r} must be an object with 'operation', 'key' and a value")
    key = raw.get("key")
    if not key or not isinstance(key, str):
        raise bad_request(f"filter predicate {raw!r} has no 'key'")
    if key not in KEYS[resource]:
        raise bad_request(
            f"filter key {key!r} is not supported for {resource}; use one of {sorted(KEYS[resource])}"
        )
    operation = parse_operation(raw.get("operation", "EQUALS"))
    value_keys = [k for k in raw if k not in ("key", "operation")]
    if len(value_keys) != 1:
        raise bad_request(
            f"filter predicate on {key!r} needs exactly one value field "
            f"(e.g. 'string_value' or 'stringValue'), got {value_keys or 'none'}"
        )
    value_key = value_keys[0]
    where = f"predicate on {key!r}"
    if operation == "IS_SUBSTRING" and _SCALAR_VALUES.get(value_key) != "string":
        # filter.go checkPredicate: LIKE needs a string.
        raise bad_request(f"filter {where}: IS_SUBSTRING needs a 'string_value', got {value_key!r}")
    if value_key in _SCALAR_VALUES:
        if operation == "IN":
            raise bad_request(f"filter {where}: IN needs a list value such as 'string_values': {{'values': [...]}}")
        kind = _SCALAR_VALUES[value_key]
        value: Any = _convert(kind, raw[value_key], where)
    elif value_key in _LIST_VALUES:
        if operation != "IN":
            raise bad_request(f"filter {where}: {value_key!r} is only valid with the IN operation")
        holder = raw[value_key]
        values = holder.get("values") if isinstance(holder, dict) else holder
        if not isinstance(values, list):
            raise bad_request(f"filter {where}: {value_key!r} must be {{'values': [...]}}")
        kind = _LIST_VALUES[value_key]
        value = tuple(_convert(kind, v, where) for v in values)
    else:
        raise bad_request(f"filter {where}: unknown value field {value_key!r}; use e.g. 'string_value'")
    if key in TIME_KEYS and isinstance(value, str):
        value = parse_rfc3339(value)
    return Predicate(operation=operation, key=ALIASES.get(key, key), value=value)


class EscapeError(ValueError):
    """Go's ``url.EscapeError``: ``escape`` is the offending ``%`` and up to two bytes after it."""

    def __init__(self, escape: bytes) -> None:
        super().__init__(f"invalid URL escape {go_quote(escape)}")
        self.escape = escape


_HEX = frozenset(b"0123456789abcdefABCDEF")


def query_unescape(text: str) -> str:
    """Go's ``url.QueryUnescape``: ``+`` → space, ``%XX`` → that byte; raises :class:`EscapeError`."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x25:  # '%'
            if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                raise EscapeError(raw[i: i + 3])
            out.append(int(raw[i + 1: i + 3], 16))
            i += 3
            continue
        out.append(0x20 if byte == 0x2B else byte)  # '+' is a space in a query component
        i += 1
    # Go strings are bytes; protojson then rejects invalid UTF-8, which surrogateescape keeps visible.
    return out.decode("utf-8", "surrogateescape")


def decode_filter(text: str) -> str:
    """The second decoding ``parseAPIFilter`` applies, with its error message."""
    try:
        decoded = query_unescape(text)
    except EscapeError as exc:
        raise invalid_input_error(f"failed to parse valid filter from {go_quote(text)}: {exc}") from exc
    try:
        decoded.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid_input_error(
            f"failed to parse valid filter from {go_quote(text)}: proto: syntax error: invalid UTF-8"
        ) from exc
    return decoded


def parse_filter(text: str | None, resource: str) -> tuple[Predicate, ...]:
    if not text:
        return ()
    text = decode_filter(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"filter is not valid JSON ({exc.msg}); send a serialized Filter like "
            '{"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": "x"}]}'
        ) from exc
    if not isinstance(data, dict):
        raise bad_request("filter must be a JSON object with a 'predicates' list")
    unknown = set(data) - {"predicates"}
    if unknown:
        raise bad_request(f"filter has unknown fields {sorted(unknown)}; only 'predicates' is allowed")
    predicates = data.get("predicates") or []
    if not isinstance(predicates, list):
        raise bad_request("filter 'predicates' must be a list")
    return tuple(parse_predicate(p, resource) for p in predicates)


def parse_sort(text: str | None, resource: str) -> tuple[str, bool]:
    if not text or not text.strip():
        # DefaultSortField() of every listable model is "CreatedAtInSec" (model/run.go, ...), ties by id.
        return "created_at", False
    # parseSortByQueryString lower-cases the whole string first.
    parts = text.strip().lower().split()
    if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise bad_request(
            f"Received invalid sort by format {text!r}; use '<field>', '<field> asc' or '<field> desc'"
        )
    key = parts[0]
    if key not in KEYS[resource]:
        raise bad_request(f"sort_by field {key!r} is not supported for {resource}; use one of {sorted(KEYS[resource])}")
    return ALIASES.get(key, key), len(parts) == 2 and parts[1].lower() == "desc"


def parse_page_size(raw: Any) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"page_size {raw!r} is not an integer") from exc
    if size < 0:
        raise bad_request(f"page_size {size} is negative; use 0 for the default of {DEFAULT_PAGE_SIZE}")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(resource: str, predicates: tuple[Predicate, ...], sort_key: str, desc: bool, scope: str) -> str:
    text = repr((resource, predicates, sort_key, desc, scope))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode()


def decode_token(token: str, fingerprint: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, fp = int(data["o"]), data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise bad_request(
            f"page_token {token!r} is not valid; pass the next_page_token of the previous response"
        ) from exc
    if fp != fingerprint or offset < 0:
        raise bad_request(
            "page_token belongs to a different filter or sort_by; keep them unchanged while paging"
        )
    return offset


def parse_list_query(
    resource: str,
    *,
    filter_text: str | None = None,
    sort_by: str | None = None,
    page_size: Any = None,
    page_token: str | None = None,
    scope: str = "",
) -> ListQuery:
    """:param scope: extra selection the caller applies (e.g. an experiment id), bound into tokens."""
    predicates = parse_filter(filter_text, resource)
    sort_key, desc = parse_sort(sort_by, resource)
    size = parse_page_size(page_size)
    fingerprint = _fingerprint(resource, predicates, sort_key, desc, scope)
    offset = decode_token(page_token, fingerprint) if page_token else 0
    return ListQuery(resource, predicates, sort_key, desc, size, offset, fingerprint)


def fold(text: str) -> str:
    """A collation key close to MySQL's utf8mb4_0900_ai_ci: case- and accent-insensitive."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def like_pattern(value: str) -> re.Pattern[str]:
    """``LIKE '%<value>%'`` as filter.go builds it: ``%``/``_`` wildcards, ``\\`` escapes one character."""
    parts = [".*"]
    chars = iter(fold(value))
    for char in chars:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        elif char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        else:
            parts.append(re.escape(char))
    parts.append(".*")
    return re.compile("".join(parts), re.DOTALL)


def _field(doc: dict[str, Any], key: str) -> Any:
    value = doc.get(key)
    if key in TIME_KEYS:
        # The real columns hold Unix seconds (CreatedAtInSec, ...).
        return int(float(value or 0))
    return "" if value is None else value


def _comparable(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value


@functools.lru_cache(maxsize=64)
def _in_values(p: Predicate, text_column: bool) -> frozenset[Any]:
    """IN's values as the column compares them: folded once per query, not once per row (an IN of
    200 run ids over 1000 runs folded 200,000 strings per page)."""
    values = tuple(str(v) for v in p.value) if text_column and p.key not in TIME_KEYS else p.value
    return frozenset(_comparable(v) for v in values)


def _matches(doc: dict[str, Any], p: Predicate) -> bool:
    actual = _field(doc, p.key)
    expected = p.value
    if p.operation == "IS_SUBSTRING":
        return like_pattern(str(expected)).fullmatch(fold(str(actual))) is not None
    if p.operation == "IN":
        # A string column compared with a number compares as text here (MySQL would cast).
        return _comparable(actual) in _in_values(p, isinstance(actual, str))
    if p.key in TIME_KEYS:
        expected = int(expected)
    elif isinstance(actual, str):
        expected = str(expected)
    actual = _comparable(actual)
    expected = _comparable(expected)
    try:
        return {
            "EQUALS": actual == expected,
            "NOT_EQUALS": actual != expected,
            "GREATER_THAN": actual > expected,
            "GREATER_THAN_EQUALS": actual >= expected,
            "LESS_THAN": actual < expected,
            "LESS_THAN_EQUALS": actual <= expected,
        }[p.operation]
    except TypeError as exc:
        raise bad_request(f"filter on {p.key!r}: cannot compare {actual!r} with {expected!r}") from exc


def _sort_value(doc: dict[str, Any], key: str) -> Any:
    value = _field(doc, key)
    return (0, value) if isinstance(value, (int, float)) else (1, fold(str(value)))


def apply(
    query: ListQuery, docs: Iterable[dict[str, Any]], id_of: Callable[[dict[str, Any]], str] | None = None
) -> tuple[list[dict[str, Any]], int, str]:
    """Filter, sort and page ``docs``; returns (page, total matching, next page token or "")."""
    id_key = ID_KEY[query.resource]
    ident = id_of or (lambda d: str(d.get(id_key, "")))
    selected = [d for d in docs if all(_matches(d, p) for p in query.predicates)]
    # ORDER BY <field> <dir>, <id> <dir>: the id breaks ties (list.go AddSortingToSelect), so
    # items created within the same second come back in id order, not creation order.
    selected.sort(key=lambda d: (_sort_value(d, query.sort_key), ident(d)), reverse=query.descending)
    page = selected[query.offset: query.offset + query.page_size]
    end = query.offset + len(page)
    token = encode_token(end, query.fingerprint) if end < len(selected) else ""
    return page, len(selected), token
