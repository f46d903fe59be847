"""``kfp-bridge local kube``: the Kubernetes API + KServe controller stand-in in one process.

Two listeners, as a cluster has: the API server over HTTPS (:mod:`.api`, its own CA from
:mod:`.tls`, bearer tokens, RBAC from :mod:`.rbac` when a policy is given, and with ``--admin``
the test hooks of :mod:`.admin`) and the ingress gateway over plain HTTP (:mod:`.router`, routed
by Host header). Writes ``<state-dir>/kubeconfig`` (server URL, ``certificate-authority-data``,
token) and ``<state-dir>/ingress.json`` (``{"url", "domain"}``) once listening; SIGTERM/SIGINT stop
it and every model server it started.

Options beyond the CLI's come as keyword arguments of :func:`serve` or environment variables
(``KFP_BRIDGE_KUBE_*``, see :class:`Options`), so tests can shorten the realistic timings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kfp_bridge.local.kube import admin, api, deployments, errors, rbac, router, tls
from kfp_bridge.local.kube.controller import Controller
from kfp_bridge.local.kube.pods import PodSource
from kfp_bridge.local.kube.store import DEFAULT_WATCH_WINDOW_S, Store

log = logging.getLogger(__name__)
UNAUTHENTICATED_PREFIXES = ("/healthz", "/readyz", "/livez")
ADMIN_IDENTITY = rbac.identity_for("kubernetes-admin", [rbac.MASTERS])


def _env(name: str, default: Any, cast: Any = str) -> Any:
    value = os.environ.get(f"KFP_BRIDGE_KUBE_{name}")
    return cast(value) if value not in (None, "") else default


@dataclass(frozen=True)
class Options:
    """Realistic defaults; each has an environment variable ``KFP_BRIDGE_KUBE_<NAME>``.

    :param domain: ingress domain of ``status.url`` (``DOMAIN``; KServe's default ``example.com``).
    :param bookmark_interval_s: watch bookmarks (``BOOKMARK_INTERVAL_S``; the apiserver: ~60 s).
    :param watch_window_s: how long watch history is kept before 410 (``WATCH_WINDOW_S``; 75 s).
    :param progress_deadline_s: Standard-mode Deployments' deadline (``PROGRESS_DEADLINE_S``; 600).
    :param rbac_policy: a :mod:`.rbac` policy file: RBAC enforced (``RBAC_POLICY``; off when unset).
    :param kfp_state_dir: serve the KFP stand-in's executor pods from here (``KFP_STATE_DIR``).
    :param ingress_port: the ingress listener's port (``INGRESS_PORT``; 0 picks a free one).
    """

    domain: str = "example.com"
    bookmark_interval_s: float = 60.0
    watch_window_s: float = DEFAULT_WATCH_WINDOW_S
    progress_deadline_s: int = deployments.DEFAULT_PROGRESS_DEADLINE_S
    rbac_policy: str | None = None
    kfp_state_dir: str | None = None
    ingress_port: int = 0

    @classmethod
    def from_env(cls, **given: Any) -> Options:
        defaults = cls()
        values = {
            "domain": _env("DOMAIN", defaults.domain),
            "bookmark_interval_s": _env("BOOKMARK_INTERVAL_S", defaults.bookmark_interval_s, float),
            "watch_window_s": _env("WATCH_WINDOW_S", defaults.watch_window_s, float),
            "progress_deadline_s": _env("PROGRESS_DEADLINE_S", defaults.progress_deadline_s, int),
            "rbac_policy": _env("RBAC_POLICY", defaults.rbac_policy),
            "kfp_state_dir": _env("KFP_STATE_DIR", defaults.kfp_state_dir),
            "ingress_port": _env("INGRESS_PORT", defaults.ingress_port, int),
        }
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)


def kubeconfig(
    server_url: str, token: str | None, namespace: str = "default", ca_pem: bytes | None = None
) -> dict[str, Any]:
    """contracts D.6: one cluster, one user, one context named ``local``; the CA inline."""
    cluster: dict[str, Any] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "u", "namespace": namespace}}],
        "current-context": "local",
        "users": [{"name": "u", "user": {"token": token} if token else {}}],
    }


def _read_token(token_file: str) -> str | None:
    try:
        return Path(token_file).read_text().strip() or None
    except OSError:
        return None


class AuthAndCount:
    """Bearer-token check (the file is re-read per request, so tests can rotate it), RBAC when a
    policy is given, and request counters."""

    def __init__(self, app, token_file: str | None, counts: Counter, policy: rbac.Policy | None = None):
        self.app = app
        self.token_file = token_file
        self.counts = counts
        self.policy = policy

    def _identity(self, sent: str) -> rbac.Identity | None:
        token = sent.removeprefix("Bearer ").strip() if sent.startswith("Bearer ") else None
        expected = _read_token(self.token_file) if self.token_file else None
        if token is not None and token == expected:
            return ADMIN_IDENTITY
        if self.policy is not None and token is not None:
            return self.policy.identities.get(token)
        return None

    async def _deny(self, scope, receive, send, error: errors.KubeApiError) -> None:
        self.counts["unauthorized" if error.code == 401 else "forbidden"] += 1
        await JSONResponse(error.body(), status_code=error.code)(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode().lower()
        kind = (
            "watch"
            if "watch=true" in query or "watch=1" in query
            else "serving"
            if path.startswith("/serving/")
            else "api"
        )
        self.counts[f"{scope['method']} {kind}"] += 1
        if (self.token_file or self.policy) and not path.startswith(UNAUTHENTICATED_PREFIXES):
            headers = dict(scope.get("headers") or [])
            who = self._identity(headers.get(b"authorization", b"").decode())
            if who is None:
                message = (
                    "Unauthorized: send 'Authorization: Bearer <token>' with the token from the stand-in's "
                    "--token-file (the generated kubeconfig carries it) or one of the RBAC policy's identities"
                )
                await self._deny(scope, receive, send, errors.unauthorized(message))
                return
            if self.policy is not None:
                attrs = rbac.request_attributes(scope["method"], path, scope.get("query_string", b"").decode())
                try:
                    self.policy.check(who, attrs)
                except errors.KubeApiError as exc:
                    await self._deny(scope, receive, send, exc)
                    return
        await self.app(scope, receive, send)


def create_app(
    state_dir: Path,
    *,
    token_file: str | None = None,
    admin_enabled: bool = False,
    options: Options | None = None,
) -> tuple[FastAPI, FastAPI]:
    """Build (API app wrapped in auth, ingress app); the controller and model servers live in the
    API app's lifespan."""
    options = options or Options()
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir / "kube.sqlite", window_s=options.watch_window_s)
    counts: Counter = Counter()
    # asyncio primitives bind to a loop on first use (3.10+), so building this outside the loop is fine.
    controller = Controller(store, state_dir, options.domain, progress_deadline_s=options.progress_deadline_s)
    pods = PodSource(
        controller.pods, Path(options.kfp_state_dir) if options.kfp_state_dir else None, state_dir / "logs"
    )
    policy = rbac.Policy.load(Path(options.rbac_policy)) if options.rbac_policy else None
    http = httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=httpx.Limits(max_connections=200))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.get_running_loop().create_task(controller.run())
        try:
            yield
        finally:
            task.cancel()
            for queue in store.all_watchers():
                queue.put_nowait(api.DROP)
            await controller.shutdown()
            await http.aclose()
            store.close()

    app = FastAPI(
        title="kfp-bridge local Kubernetes API (KServe)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.store = store
    app.state.controller = controller
    app.state.http = http
    app.include_router(
        api.build_router(
            store, deployments=controller.deployments, pods=pods, bookmark_interval_s=options.bookmark_interval_s
        )
    )
    if admin_enabled:
        app.include_router(admin.build_router(store, controller, counts))

    @app.get("/healthz")
    @app.get("/readyz")
    @app.get("/livez")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    _error_handlers(app)
    app.state.counts = counts

    ingress = FastAPI(title="kfp-bridge local ingress", docs_url=None, redoc_url=None, openapi_url=None)
    ingress.include_router(router.build_router(controller, http))
    return AuthAndCount(app, token_file, counts, policy), ingress  # type: ignore[return-value]


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.KubeApiError)
    async def kube_error(_request, exc: errors.KubeApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
        message = (
            "the server could not find the requested resource" if exc.status_code == 404 else str(exc.detail)
        )
        return JSONResponse(errors.status_body(exc.status_code, reason, message), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            errors.status_body(400, "BadRequest", json.dumps(exc.errors(), default=str)), status_code=400
        )


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutdown; for this CLI a requested stop is a
        # normal exit (status 0), which is what supervisors and tests check.
        getattr(self, "_captured_signals", []).clear()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # readers never see a half-written file


def serve(
    *,
    host: str = "127.0.0.1",
    port: int,
    state_dir: str | Path,
    token_file: str | None = None,
    admin: bool = False,
    **options: Any,
) -> None:
    """Run until SIGTERM/SIGINT; write ``state_dir/kubeconfig`` and ``ingress.json`` once listening.

    :param options: fields of :class:`Options` (environment variables fill the rest).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proxied request is noise
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    opts = Options.from_env(**options)
    if token_file and _read_token(token_file) is None:
        raise SystemExit(
            f"--token-file {token_file} is missing or empty; write the bearer token into it first"
        )
    # Bind first so port 0 works and the kubeconfig names the real port.
    sock, ingress_sock = _bind(host, port), _bind(host, opts.ingress_port)
    client_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base_url = f"https://{client_host}:{sock.getsockname()[1]}"
    ingress_url = f"http://{client_host}:{ingress_sock.getsockname()[1]}"
    cert = tls.ensure_serving_cert(state / "pki", [client_host, host] if host else [client_host])
    app, ingress_app = create_app(state, token_file=token_file, admin_enabled=admin, options=opts)
    inner: FastAPI = app.app  # type: ignore[attr-defined]
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on", timeout_keep_alive=30,
        ssl_certfile=str(cert.cert_file), ssl_keyfile=str(cert.key_file),
    )
    server = _Server(config)
    ingress = uvicorn.Server(
        uvicorn.Config(ingress_app, log_level="warning", lifespan="off", timeout_keep_alive=30, timeout_graceful_shutdown=3)
    )

    async def main() -> None:
        controller: Controller = inner.state.controller

        async def announce_and_watch_exit() -> None:
            while not (server.started and ingress.started):
                await asyncio.sleep(0.02)
            token = _read_token(token_file) if token_file else None
            _write_atomic(state / "ingress.json", json.dumps({"url": ingress_url, "domain": opts.domain}))
            path = state / "kubeconfig"
            _write_atomic(path, yaml.safe_dump(kubeconfig(base_url, token, ca_pem=cert.ca_pem()), sort_keys=False))
            log.info("kube stand-in listening on %s (ingress %s); kubeconfig at %s", base_url, ingress_url, path)
            while not server.should_exit:
                await asyncio.sleep(0.1)
            # Open watches would hold the graceful shutdown for its whole timeout; end them now.
            for queue in inner.state.store.all_watchers():
                queue.put_nowait(api.DROP)
            ingress.should_exit = True

        watcher = asyncio.create_task(announce_and_watch_exit())
        # The ingress runs beside the API server; only the API server handles signals.
        ingress_task = asyncio.create_task(ingress._serve([ingress_sock]))
        try:
            await server.serve(sockets=[sock])
        finally:
            ingress.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ingress_task, 5)
            watcher.cancel()
            controller.kill_all_now()  # no-op after a clean lifespan shutdown

    asyncio.run(main())
