"""The ``kfp`` connection: its fields, their validation, and where the bearer token comes from.

Kept apart from the hook so the form metadata, the provider info and the hook read one definition,
and so it can be unit-tested without a server.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The PodDefault pattern: a projected service-account token with audience pipelines.kubeflow.org.
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
DEFAULT_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "token_path": {
        "label": "Token file",
        "description": (
            "Projected service-account token file, re-read on every request. Default: "
            f"${TOKEN_PATH_ENV}, then {DEFAULT_TOKEN_PATH} when it exists."
        ),
        "schema": {"type": ["string", "null"]},
    },
    "namespace": {
        "label": "Namespace",
        "description": "Kubeflow profile namespace for experiments and runs (multi-user KFP).",
        "schema": {"type": ["string", "null"]},
    },
    "ui_host": {
        "label": "KFP UI URL",
        "description": "Base URL for links to runs; default: the API host.",
        "schema": {"type": ["string", "null"], "format": "url"},
    },
    "verify_ssl": {
        "label": "Verify TLS",
        "description": "Verify the server certificate (default true).",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_cert": {
        "label": "CA bundle path",
        "description": "PEM file with the CA that signed the KFP endpoint's certificate.",
        "schema": {"type": ["string", "null"]},
    },
    "allow_insecure_token": {
        "label": "Allow token over plain http",
        "description": (
            "Send the bearer token over http:// to a host that is neither loopback nor a cluster-local "
            "service name (default false: such a connection is refused; use https)."
        ),
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "multi_user": {
        "label": "Multi-user KFP",
        "description": "The server needs a namespace (fail before any side effect when none is set).",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "KFP API URL", "password": "Static bearer token (optional)"},
    "placeholders": {
        "host": "https://kubeflow.example.com/pipeline",
        "password": "leave empty to use the projected token file",
    },
}


class KfpConnectionError(ValueError):
    """The connection cannot be used as configured; the message names the fix."""


@dataclass(frozen=True)
class TokenSource:
    """Where the bearer token comes from. Never holds a file's token in memory between calls."""

    static_token: str | None = None
    token_path: str | None = None

    @property
    def kind(self) -> str:
        if self.static_token:
            return "static token (connection password)"
        if self.token_path:
            return f"token file {self.token_path}"
        return "no authentication"

    def read(self) -> str | None:
        """The token to send now; a file is read every time because projected tokens rotate."""
        if self.static_token:
            return self.static_token
        if self.token_path:
            try:
                return Path(self.token_path).read_text().strip()
            except OSError as exc:
                raise KfpConnectionError(
                    f"Cannot read the KFP token file {self.token_path} ({exc.strerror}). Mount the "
                    "projected token (see deploy/poddefault.yaml) or set the connection extra 'token_path'."
                ) from None
        return None

    @property
    def rotates(self) -> bool:
        """A token file can change between reading it and the server checking what was read."""
        return not self.static_token and bool(self.token_path)


def token_fingerprint(token: str | None) -> str:
    """Tells two tokens apart without keeping either in memory."""
    return hashlib.sha256((token or "").encode()).hexdigest()


@dataclass(frozen=True)
class KfpSettings:
    conn_id: str
    host: str
    ui_host: str
    namespace: str | None
    verify_ssl: bool
    ca_cert: str | None
    token: TokenSource
    multi_user: bool = False  # extra 'multi_user': the server needs a namespace (else found out by asking)

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_host}/#/runs/details/{run_id}"


def _extras(extra: Any) -> dict[str, Any]:
    if isinstance(extra, dict):
        return extra
    if not extra:
        return {}
    try:
        value = json.loads(extra)
    except ValueError:
        raise KfpConnectionError("The connection's extra field is not valid JSON.") from None
    if not isinstance(value, dict):
        raise KfpConnectionError("The connection's extra field must be a JSON object.")
    return value


def _extra(extras: dict[str, Any], name: str) -> Any:
    # Airflow 2-era forms stored extras with an "extra__kfp__" prefix; accept both.
    return extras.get(name, extras.get(f"extra__kfp__{name}"))


def _normalise_host(conn_id: str, host: str | None, what: str) -> str:
    if not host:
        raise KfpConnectionError(
            f"Connection '{conn_id}' has no host. Set it to the KFP API URL, e.g. "
            "http://ml-pipeline.kubeflow.svc.cluster.local:8888 or https://kubeflow.example.com/pipeline."
        )
    text = host.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KfpConnectionError(
            f"Connection '{conn_id}' {what} {host!r} is not an http(s) URL. Use the form "
            "https://host[:port][/path], e.g. http://127.0.0.1:8888."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise KfpConnectionError(f"Connection '{conn_id}' {what} {host!r} has an invalid port.") from None
    return text


def _as_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def is_private_endpoint(hostname: str) -> bool:
    """Loopback, or a name that resolves only inside the cluster (``svc``, ``svc.cluster.local``, one label).

    Decided from the name alone, before any DNS lookup or connection: the point is that no request
    carrying the token leaves for a host where it would travel in clear.
    """
    name = hostname.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
        # 0.0.0.0 / :: connect to this host (what `kfp-bridge local up --host 0.0.0.0` prints)
        return address.is_loopback or address.is_unspecified or bool(mapped and mapped.is_loopback)
    return "." not in name or name.endswith(".svc") or name.endswith(".svc.cluster.local")


def check_token_transport(conn_id: str, host: str, token: TokenSource, allow_insecure: bool) -> None:
    """Refuse a bearer token over plain http to a host outside loopback/the cluster (issue 13 item 2)."""
    if token.kind == "no authentication" or allow_insecure:
        return
    parts = urlsplit(host)
    if parts.scheme != "http" or is_private_endpoint(parts.hostname or ""):
        return
    what = "its password (static token)" if token.static_token else f"the token file {token.token_path}"
    raise KfpConnectionError(
        f"Connection '{conn_id}' would send the bearer token from {what} over plain http to "
        f"{parts.hostname}, which is neither loopback nor a cluster-local service name: anyone on the path "
        "can read it. Use an https:// host, or, if the network is trusted (e.g. a service mesh with mTLS), "
        "set the extra 'allow_insecure_token': true deliberately."
    )


def default_token_path(environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    if env.get(TOKEN_PATH_ENV):
        return env[TOKEN_PATH_ENV]
    return DEFAULT_TOKEN_PATH if Path(DEFAULT_TOKEN_PATH).exists() else None


def settings_from_connection(conn: Any, environ: dict[str, str] | None = None) -> KfpSettings:
    """Validate a ``kfp`` connection and turn it into settings; raises KfpConnectionError."""
    conn_id = conn.conn_id
    # The raw text first: Airflow's extra_dejson logs a JSON error and returns {}, which would drop
    # token_path/namespace silently and send requests without them.
    raw = getattr(conn, "extra", None)
    extras = _extras(raw if isinstance(raw, str) or not hasattr(conn, "extra_dejson") else conn.extra_dejson)
    host = conn.host or ""
    # Airflow splits "http://h:p/path" URIs into schema/host/port; put them back together.
    if host and "://" not in host and conn.schema in ("http", "https"):
        host = f"{conn.schema}://{host}"
    if host and conn.port and "://" in host and not urlsplit(host).port:
        parts = urlsplit(host)
        host = f"{parts.scheme}://{parts.hostname}:{conn.port}{parts.path}"
    api_host = _normalise_host(conn_id, host, "host")
    ui_host = _extra(extras, "ui_host")
    ui = _normalise_host(conn_id, ui_host, "extra 'ui_host'") if ui_host else api_host
    ca_cert = _extra(extras, "ca_cert") or None
    if ca_cert and not Path(ca_cert).is_file():
        raise KfpConnectionError(f"Connection '{conn_id}' extra 'ca_cert' points at {ca_cert}, which is not a file.")
    token_path = _extra(extras, "token_path") or None
    static = conn.password or None
    token = TokenSource(static_token=static) if static else TokenSource(token_path=token_path or default_token_path(environ))
    allow_insecure = _extra(extras, "allow_insecure_token")
    if not isinstance(allow_insecure, bool) and str(allow_insecure or "").lower() not in ("true", "false", ""):
        raise KfpConnectionError(
            f"Connection '{conn_id}' extra 'allow_insecure_token' must be true or false, got {allow_insecure!r}."
        )
    check_token_transport(conn_id, api_host, token, _as_bool(allow_insecure, False))
    return KfpSettings(
        conn_id=conn_id,
        host=api_host,
        ui_host=ui,
        namespace=_extra(extras, "namespace") or None,
        verify_ssl=_as_bool(_extra(extras, "verify_ssl"), True),
        ca_cert=ca_cert,
        token=token,
        multi_user=_as_bool(_extra(extras, "multi_user"), False),
    )
