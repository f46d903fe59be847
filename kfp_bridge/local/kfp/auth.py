"""Who may call the KFP stand-in: single-user (the default) or ``--multi-user``, as KFP 2.17 decides it.

**Single-user** (reference/fidelity.md K8): KFP does no authentication at all, and neither does the
stand-in without ``--token-file``. With ``--token-file`` (a test aid standing for an authenticating
proxy) every request, ``/_admin`` included, needs ``authorization: Bearer <token>`` where
``<token>`` equals the file's current content, stripped. The file is re-read on every request and
only its current content is accepted, which is harder than a cluster (there an old projected
token stays valid until it expires): it proves a client re-reads the file.

**Multi-user** (``--multi-user --users FILE [--token-file FILE]``) follows the real API server
(backend/src/apiserver/resource/resource_manager.go ``IsAuthorized``, apiserver/auth/*):

* Nothing is checked at the door. ``/apis/v2beta1/healthz`` is open; every other call first
  validates its own input (so a list without a namespace is a 400 even without credentials), then
  asks ``IsAuthorized`` for (namespace, verb, resource). Shared pipelines (no namespace) can be
  read without credentials, as upstream.
* Identity: the ``kubeflow-userid`` header (what the Kubeflow gateway sets; no prefix), else the
  ``authorization: Bearer <token>`` header reviewed like a TokenReview. No identity → **401**
  ``Failed to check authorization. User identity is empty in the request header``.
* Authorization stands in for the SubjectAccessReview: the identity's namespaces in the users
  file. A denial → **403** ``User '<user>' is not authorized with reason:  (request: ...)``.
* A token read from ``--token-file`` belongs to ``token_file_user``. The file is re-read on every
  request; a token it held earlier stays valid until its expiry, as a rotated projected
  service-account token does: a JWT-shaped token (``header.payload.signature``, payload not
  verified) expires at its ``exp`` claim; any other token ``token_lifetime_seconds`` after the
  server first saw it. The current content is valid unless it is a JWT past its ``exp``.
* ``/_admin`` paths need any valid identity.

The users file (YAML or JSON), e.g.::

    # identity -> namespaces it may access with every verb (the SubjectAccessReview's answer);
    # "*" = every namespace. Shared-pipeline writes are checked against the namespace "kubeflow".
    namespaces:
      alice@example.com: [team-a]
      system:serviceaccount:team-a:default-editor: [team-a]
    # bearer token -> identity (the TokenReview's answer); expires_at optional (RFC 3339)
    tokens:
      tok-alice: {user: alice@example.com}
      tok-expired: {user: alice@example.com, expires_at: "2020-01-01T00:00:00Z"}
    # identity of the tokens read from --token-file, and how long an opaque one stays valid
    token_file_user: system:serviceaccount:team-a:default-editor
    token_lifetime_seconds: 3600

Tokens never appear in error messages or logs. Error texts are the upstream chains
(:mod:`~kfp_bridge.local.kfp.wire`); the TokenReview's own error text is an approximation of the
Kubernetes API server's.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kfp_bridge.local.kfp.wire import bad_request_error, permission_denied_error, unauthenticated_error

USERID_HEADER = "kubeflow-userid"
SYSTEM_NAMESPACE = "kubeflow"  # common.GetPodNamespace(): where shared-pipeline writes are authorized
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0
RBAC_GROUP = "pipelines.kubeflow.org"
RBAC_VERSION = "v1beta1"


class TokenCheck:
    """Single-user ``--token-file``: :param token_file: the expected token's file, or None for no authentication."""

    def __init__(self, token_file: Path | None) -> None:
        self.token_file = token_file

    @property
    def enabled(self) -> bool:
        return self.token_file is not None

    def problem(self, authorization: str | None) -> str | None:
        """None when the request may pass, else a message saying what to send instead."""
        if self.token_file is None:
            return None
        try:
            expected = self.token_file.read_text().strip()
        except OSError:
            return f"the server's token file {self.token_file} cannot be read; recreate it"
        if not expected:
            return f"the server's token file {self.token_file} is empty; write the expected token into it"
        if not authorization:
            return (
                "request has no 'authorization: Bearer <token>' header; pass existing_token= or "
                "credentials=ServiceAccountTokenVolumeCredentials(path) to kfp.Client"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the authorization header must be 'Bearer <token>'"
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return "the bearer token is not valid (it may have been rotated); send the current token"
        return None


# ----- multi-user -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The identity headers of one request (values as sent; None when absent)."""

    authorization: tuple[str, ...] = ()
    userid: tuple[str, ...] = ()

    @classmethod
    def from_headers(cls, items: list[tuple[str, str]]) -> Caller:
        lowered = [(k.lower(), v) for k, v in items]
        return cls(
            authorization=tuple(v for k, v in lowered if k == "authorization"),
            userid=tuple(v for k, v in lowered if k == USERID_HEADER),
        )


# The request being served; set by the server around each service call (worker thread).
CALLER: ContextVar[Caller | None] = ContextVar("kfp_stand_in_caller", default=None)


@dataclass(frozen=True)
class Access:
    """A SubjectAccessReview's ResourceAttributes (k8s.io/api authorization/v1)."""

    namespace: str
    verb: str
    resource: str
    name: str = ""

    def __str__(self) -> str:
        # The Go struct's generated String(), which %+v prints in the upstream message.
        return (
            f"&ResourceAttributes{{Namespace:{self.namespace},Verb:{self.verb},Group:{RBAC_GROUP},"
            f"Version:{RBAC_VERSION},Resource:{self.resource},Subresource:,Name:{self.name},"
            "FieldSelector:nil,LabelSelector:nil,}"
        )


class UsersFileError(ValueError):
    """The ``--users`` file is missing or malformed; the message names the fix."""


@dataclass
class _Token:
    user: str
    expires_at: float | None


def _parse_time(raw: Any, where: str) -> float:
    if isinstance(raw, dt.datetime):
        value = raw
    else:
        try:
            value = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError as exc:
            raise UsersFileError(f"{where}: {raw!r} is not an RFC 3339 time such as '2030-01-01T00:00:00Z'") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT-shaped token (signature not checked), else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


@dataclass
class MultiUser:
    """Identities and their namespaces (see the module docstring for the file format)."""

    namespaces: dict[str, frozenset[str]]
    tokens: dict[str, _Token]
    token_file: Path | None = None
    token_file_user: str = ""
    token_lifetime_seconds: float = DEFAULT_TOKEN_LIFETIME_SECONDS
    clock: Any = time.time
    _seen: dict[str, float | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_file(cls, users_file: Path, token_file: Path | None = None, clock: Any = time.time) -> MultiUser:
        """:param clock: wall time in seconds (injected by tests)."""
        try:
            data = yaml.safe_load(Path(users_file).read_text()) or {}
        except OSError as exc:
            raise UsersFileError(f"--users file {users_file} cannot be read ({exc.strerror}); create it") from exc
        except yaml.YAMLError as exc:
            raise UsersFileError(f"--users file {users_file} is not valid YAML/JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UsersFileError(f"--users file {users_file} must be a mapping with 'namespaces' and 'tokens'")
        unknown = set(data) - {"namespaces", "tokens", "token_file_user", "token_lifetime_seconds"}
        if unknown:
            raise UsersFileError(
                f"--users file {users_file} has unknown keys {sorted(unknown)}; use namespaces, tokens, "
                "token_file_user, token_lifetime_seconds"
            )
        namespaces: dict[str, frozenset[str]] = {}
        for user, allowed in (data.get("namespaces") or {}).items():
            if not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed):
                raise UsersFileError(f"--users file: namespaces of {user!r} must be a list of names, e.g. [team-a]")
            namespaces[str(user)] = frozenset(allowed)
        tokens: dict[str, _Token] = {}
        for index, (token, entry) in enumerate((data.get("tokens") or {}).items()):
            where = f"--users file: token #{index + 1}"  # never the token itself
            if isinstance(entry, str):
                entry = {"user": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("user"), str) or not entry["user"]:
                raise UsersFileError(f"{where} needs {{user: <identity>}}")
            expires = entry.get("expires_at")
            tokens[str(token)] = _Token(entry["user"], None if expires is None else _parse_time(expires, where))
        token_file_user = data.get("token_file_user") or ""
        if token_file is not None and not token_file_user:
            raise UsersFileError(
                f"--users file {users_file} needs 'token_file_user': the identity of the tokens read from --token-file"
            )
        try:
            lifetime = float(data.get("token_lifetime_seconds", DEFAULT_TOKEN_LIFETIME_SECONDS))
        except (TypeError, ValueError) as exc:
            raise UsersFileError("--users file: token_lifetime_seconds must be a number of seconds") from exc
        policy = cls(namespaces=namespaces, tokens=tokens, token_file=token_file, token_file_user=str(token_file_user),
                     token_lifetime_seconds=lifetime, clock=clock)
        if token_file is not None:
            with policy._lock:  # the token in the file at start was issued already: remember it
                policy._read_token_file(policy.clock())
        return policy

    # ----- TokenReview -----

    def _review(self, token: str) -> tuple[str | None, str]:
        """(identity, "") when the token is valid now, else (None, the review's error text)."""
        now = self.clock()
        static = self.tokens.get(token)
        if static is not None:
            if static.expires_at is not None and now >= static.expires_at:
                return None, "[invalid bearer token, service account token has expired]"
            return static.user, ""
        if self.token_file is not None:
            with self._lock:
                current = self._read_token_file(now)
                if current and hmac.compare_digest(token.encode(), current.encode()):
                    expires = self._seen.get(current)
                    if jwt_expiry(current) is not None and expires is not None and now >= expires:
                        return None, "[invalid bearer token, service account token has expired]"
                    return self.token_file_user, ""
                if token in self._seen:
                    expires = self._seen[token]
                    if expires is not None and now >= expires:
                        return None, "[invalid bearer token, service account token has expired]"
                    return self.token_file_user, ""
        return None, "[invalid bearer token, token lookup failed]"

    def _read_token_file(self, now: float) -> str:
        assert self.token_file is not None
        try:
            current = self.token_file.read_text().strip()
        except OSError:
            return ""
        if current and current not in self._seen:
            exp = jwt_expiry(current)
            self._seen[current] = exp if exp is not None else now + self.token_lifetime_seconds
        return current

    # ----- authenticators (auth/util.go, authenticator_*.go) -----

    def identify(self, caller: Caller) -> tuple[str, list[str]]:
        """(identity or "", the error chain of each authenticator that failed)."""
        errors: list[str] = []
        for header, values, prefix in ((USERID_HEADER, caller.userid, ""),
                                       ("Authorization", caller.authorization, "Bearer ")):
            if not values:
                errors.append(_IDENTITY_HEADER_MISSING)
                continue
            if len(values) != 1:
                msg = f"Request header error: unexpected number of '{header}' headers. Expect 1 got {len(values)}"
                errors.append(bad_request_error(msg, msg).message)
                continue
            value = values[0]
            if not value.startswith(prefix):
                msg = f"Header '{header}' is incorrectly formatted. Expected prefix '{prefix}'"
                errors.append(bad_request_error(msg, msg).message)
                continue
            value = value[len(prefix):]
            if header == USERID_HEADER:
                if value:
                    return value, errors
                errors.append(_IDENTITY_HEADER_MISSING)
                continue
            user, review_error = self._review(value)
            if user:
                return user, errors
            failure = unauthenticated_error(
                "Failed to authenticate token review", f"Review.Status.Authenticated is false. Error {review_error}"
            )
            errors.append(failure.wrap("Authentication failure").message)
        return "", errors

    def allowed(self, user: str, namespace: str) -> bool:
        granted = self.namespaces.get(user, frozenset())
        return "*" in granted or namespace in granted

    def authorize(self, access: Access, caller: Caller | None = None) -> None:
        """``ResourceManager.IsAuthorized``: raise the 401/403 :class:`ApiError` upstream raises."""
        user, errors = self.identify(caller or CALLER.get() or Caller())
        if not user:
            raise unauthenticated_error(
                _aggregate(errors), "Failed to check authorization. User identity is empty in the request header"
            )
        if not self.allowed(user, access.namespace):
            raise permission_denied_error(
                "Unauthorized access", f"User '{user}' is not authorized with reason:  (request: {access})"
            )

    def authenticated(self, caller: Caller) -> bool:
        return bool(self.identify(caller)[0])


_IDENTITY_HEADER_MISSING = unauthenticated_error(
    "Request header error: there is no user identity header.",
    "Request header error: there is no user identity header.",
).message


def _aggregate(messages: list[str]) -> str:
    """k8s.io/apimachinery ``utilerrors.NewAggregate(...).Error()``: de-duplicated, bracketed when several."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"

