"""``kfp-bridge local kube``: the Kubernetes API + KServe controller stand-in in one uvicorn process.

Serves the InferenceService API (:mod:`.api`), the ingress router (:mod:`.router`, ``/serving/...``)
and, with ``--admin``, test hooks (:mod:`.admin`). Writes ``<state-dir>/kubeconfig`` once it is
listening; SIGTERM/SIGINT stop it and every model server it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kfp_bridge.local.kube import admin, api, errors, router
from kfp_bridge.local.kube.controller import Controller
from kfp_bridge.local.kube.store import Store

log = logging.getLogger(__name__)
UNAUTHENTICATED_PREFIXES = ("/serving/", "/healthz", "/readyz", "/livez")


def kubeconfig(server_url: str, token: str | None, namespace: str = "default") -> dict[str, Any]:
    """contracts D.6: one cluster, one user, one context named ``local``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server_url}}],
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
    """Bearer-token check (the file is re-read per request, so tests can rotate it) and request counters.

    The ``/serving`` ingress is not behind the API token, as KServe inference endpoints are not.
    """

    def __init__(self, app, token_file: str | None, counts: Counter):
        self.app = app
        self.token_file = token_file
        self.counts = counts

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
        if self.token_file and not path.startswith(UNAUTHENTICATED_PREFIXES):
            expected = _read_token(self.token_file)
            headers = dict(scope.get("headers") or [])
            sent = headers.get(b"authorization", b"").decode()
            if expected is None or sent != f"Bearer {expected}":
                self.counts["unauthorized"] += 1
                message = (
                    "Unauthorized: send 'Authorization: Bearer <token>' with the token from the stand-in's "
                    "--token-file (the generated kubeconfig carries it)"
                )
                response = JSONResponse(errors.unauthorized(message).body(), status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    state_dir: Path, base_url: str, *, token_file: str | None = None, admin_enabled: bool = False
) -> FastAPI:
    """Build the app; the controller and model servers live in its lifespan."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir / "kube.sqlite")
    counts: Counter = Counter()
    # asyncio primitives bind to a loop on first use (3.10+), so building this outside the loop is fine.
    controller = Controller(store, state_dir, base_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.get_running_loop().create_task(controller.run())
        try:
            yield
        finally:
            task.cancel()
            for queue in list(store.watchers):
                queue.put_nowait(api.DROP)
            await controller.shutdown()
            await app.state.http.aclose()
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
    app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=httpx.Limits(max_connections=200))
    app.include_router(api.build_router(store))
    app.include_router(router.build_router(controller, app.state.http))
    if admin_enabled:
        app.include_router(admin.build_router(store, controller, counts))

    @app.get("/healthz")
    @app.get("/readyz")
    @app.get("/livez")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

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

    app.state.counts = counts
    return AuthAndCount(app, token_file, counts)  # type: ignore[return-value]


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutdown; for this CLI a requested stop is a
        # normal exit (status 0), which is what supervisors and tests check.
        getattr(self, "_captured_signals", []).clear()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int,
    state_dir: str | Path,
    token_file: str | None = None,
    admin: bool = False,
) -> None:
    """Run until SIGTERM/SIGINT; write ``state_dir/kubeconfig`` once listening."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proxied request is noise
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    if token_file and _read_token(token_file) is None:
        raise SystemExit(
            f"--token-file {token_file} is missing or empty; write the bearer token into it first"
        )
    # Bind first so port 0 works and the kubeconfig names the real port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    client_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base_url = f"http://{client_host}:{bound_port}"
    app = create_app(state, base_url, token_file=token_file, admin_enabled=admin)
    inner: FastAPI = app.app  # type: ignore[attr-defined]
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on", timeout_keep_alive=30
    )
    server = _Server(config)

    async def main() -> None:
        controller: Controller = inner.state.controller

        async def announce_and_watch_exit() -> None:
            while not server.started:
                await asyncio.sleep(0.02)
            token = _read_token(token_file) if token_file else None
            path = state / "kubeconfig"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(yaml.safe_dump(kubeconfig(base_url, token), sort_keys=False))
            tmp.replace(path)  # readers never see a half-written file
            log.info("kube stand-in listening on %s; kubeconfig at %s", base_url, path)
            while not server.should_exit:
                await asyncio.sleep(0.1)
            # Open watches would hold the graceful shutdown for its whole timeout; end them now.
            for queue in list(inner.state.store.watchers):
                queue.put_nowait(api.DROP)

        watcher = asyncio.create_task(announce_and_watch_exit())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()
            controller.kill_all_now()  # no-op after a clean lifespan shutdown

    asyncio.run(main())
