"""The HTTP side of the KFP v2beta1 stand-in: FastAPI routes, the gateway middleware, ``serve()``.

Routes follow contracts.md A.4 (gRPC custom verbs such as ``/runs/{run_id}:terminate`` are literal
path suffixes). Handlers parse the request on the event loop and do the work in a worker thread,
so the loop never waits on SQLite or a subprocess. Errors use the grpc-gateway body
``{code, message, details}``; the two multipart upload endpoints answer with
``{error_message, error_details}`` as the real server does.

The gateway middleware runs before routing: the single-user bearer-token check (``--token-file``,
see :mod:`~kfp_bridge.local.kfp.auth`), request counting and fault injection for ``/apis/`` (see
:mod:`~kfp_bridge.local.kfp.admin`, only with ``--admin``) and optional response recording.
With ``--admin``, ``/_admin/synthetic`` can also make new runs finish on a timer instead of
executing (:mod:`~kfp_bridge.local.kfp.synthetic`; off by default).

With ``--multi-user --users FILE`` nothing is checked at the door, as on the real server: each
call checks access itself (service.py), and calls addressed by id run
:meth:`~kfp_bridge.local.kfp.service.KfpService.check_access` first, wrapped in the messages of
the upstream RPC (apiserver/server/run_server.go, experiment_server.go, pipeline_server.go).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfp_bridge.local.kfp import wire
from kfp_bridge.local.kfp.admin import RECORD_ENV, Faults, ResponseRecorder, Stats, admin_router
from kfp_bridge.local.kfp.auth import CALLER, Caller, MultiUser, TokenCheck
from kfp_bridge.local.kfp.executor import Executor
from kfp_bridge.local.kfp.service import KfpService
from kfp_bridge.local.kfp.store import Store
from kfp_bridge.local.kfp.synthetic import SyntheticRuns
from kfp_bridge.local.kfp.wire import API, ApiError

log = logging.getLogger(__name__)
UPLOAD_ROUTES = (f"{API}/pipelines/upload", f"{API}/pipelines/upload_version")


def _json_error(code: int, message: str, http_status: int | None = None, external: str | None = None) -> JSONResponse:
    return JSONResponse(wire.error_body(code, message, external), status_code=http_status or wire.HTTP_STATUS.get(code, 500))


async def _json_body(request: Request) -> Any:
    """The JSON body, or None when there is none (body-less POSTs still say Content-Type: json)."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise wire.bad_request(f"the request body is not valid JSON: {exc}") from exc


class Gateway:
    """Pure ASGI middleware: auth, stats, faults and recording around the routed app."""

    def __init__(self, app: ASGIApp, *, auth: TokenCheck, stats: Stats | None, faults: Faults | None,
                 recorder: ResponseRecorder, routes: Callable[[], list[Any]],
                 policy: MultiUser | None = None) -> None:
        self.app = app
        self.auth = auth
        self.policy = policy
        self.stats = stats
        self.faults = faults
        self.recorder = recorder
        self.routes = routes

    def _route_template(self, scope: Scope) -> str:
        partial = None
        for route in self.routes():
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
            if match == Match.PARTIAL and partial is None:
                partial = route.path
        return partial or "(unmatched)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        is_api = path.startswith("/apis/")
        route = self._route_template(scope) if is_api else ""
        captured: dict[str, Any] = {"status": 0, "body": bytearray()}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        out = recording_send if (is_api and self.recorder.path) else send
        try:
            if is_api and self.stats is not None:
                self.stats.record(f"{method} {route}")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            problem = self.auth.problem(headers.get("authorization"))
            if problem is None and self.policy is not None and path.startswith("/_admin"):
                pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
                if not self.policy.authenticated(Caller.from_headers(pairs)):
                    problem = "/_admin needs a valid identity in multi-user mode (a bearer token from the users file)"
            if problem:
                await _json_error(wire.UNAUTHENTICATED, problem)(scope, receive, out)
                return
            if is_api and self.faults is not None:
                delay, fail_status, reason = self.faults.decide()
                if delay:
                    await asyncio.sleep(delay)
                if fail_status:
                    code = wire.GRPC_CODE_FOR_HTTP.get(fail_status, wire.UNKNOWN)
                    await _json_error(code, reason, fail_status)(scope, receive, out)
                    return
            await self.app(scope, receive, out)
        finally:
            if out is recording_send:
                await run_in_threadpool(
                    self.recorder.record, method, route, path, captured["status"], bytes(captured["body"])
                )


def create_app(state_dir: Path, *, token_file: Path | None = None, admin: bool = False,
               max_parallel_runs: int | None = None, multi_user: bool = False,
               users_file: Path | None = None) -> FastAPI:
    """Build the app; the store opens and stale runs are recovered when the app starts.

    :param multi_user: KFP's multi-user mode; needs ``users_file`` (format: :mod:`~kfp_bridge.local.kfp.auth`),
        and ``token_file`` then holds a projected-style token of the file's ``token_file_user``.
    """
    policy: MultiUser | None = None
    if multi_user:
        if users_file is None:
            raise ValueError("--multi-user needs --users FILE naming who may access which namespace "
                             "(format: kfp_bridge/local/kfp/auth.py)")
        policy = MultiUser.from_file(Path(users_file), Path(token_file) if token_file else None)
    elif users_file is not None:
        raise ValueError("--users only applies with --multi-user; add --multi-user or drop --users")
    state_dir = Path(state_dir).absolute()
    store = Store(state_dir / "kfp.sqlite")
    # Synthetic runs are an admin-only benchmark aid; without --admin nothing can switch them on.
    synthetic = SyntheticRuns(store) if admin else None
    executor = Executor(store, state_dir / "runs", max_parallel=max_parallel_runs, synthetic=synthetic)
    service = KfpService(store, executor, policy)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await run_in_threadpool(executor.recover)
        await run_in_threadpool(service.ensure_default_experiment)
        try:
            yield
        finally:
            await run_in_threadpool(executor.shutdown)
            store.close()

    app = FastAPI(title="KFP v2beta1 stand-in (kfp-bridge)", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.url.path in UPLOAD_ROUTES:
            return JSONResponse({"error_message": exc.message, "error_details": exc.message}, status_code=exc.http_status)
        return _json_error(exc.code, exc.message, external=exc.external)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _json_error(wire.INVALID_ARGUMENT, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = wire.GRPC_CODE_FOR_HTTP.get(exc.status_code, wire.UNKNOWN)
        message = f"no such endpoint: {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return _json_error(code, message, exc.status_code)

    _add_routes(app, service)
    stats = faults = None
    if admin:
        stats, faults = Stats(), Faults()
        app.include_router(admin_router(stats, faults, synthetic))
    record_path = os.environ.get(RECORD_ENV) if admin else None
    recorder = ResponseRecorder(Path(record_path) if record_path else None)
    # In multi-user mode the token file is the users file's token_file_user's, checked per call.
    door = TokenCheck(Path(token_file) if token_file and policy is None else None)
    app.add_middleware(Gateway, auth=door, stats=stats, faults=faults, recorder=recorder,
                       routes=lambda: app.router.routes, policy=policy)
    return app


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _as_caller(caller: Caller, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` in this worker thread with ``caller`` as the request's identity."""
    token = CALLER.set(caller)
    try:
        return fn(*args)
    finally:
        CALLER.reset(token)


# Calls addressed by id: (kind, path parameter, RBAC verb, the upstream wrappers, innermost first).
# The wrappers are format strings over the path parameters (run_server.go, experiment_server.go,
# pipeline_server.go); only multi-user mode checks anything.
_AUTHORIZE = "Failed to authorize the request"
ACCESS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "get_run": ("run", "run_id", "get", (_AUTHORIZE, "Failed to get a run")),
    "terminate_run": ("run", "run_id", "terminate", (_AUTHORIZE, "Failed to terminate a run")),
    "retry_run": ("run", "run_id", "retry", (_AUTHORIZE, "Failed to retry a run")),
    "archive_run": ("run", "run_id", "archive", (_AUTHORIZE, "Failed to archive a run")),
    "unarchive_run": ("run", "run_id", "unarchive", (_AUTHORIZE, "Failed to unarchive a run")),
    "delete_run": ("run", "run_id", "delete", (_AUTHORIZE, "Failed to delete a run")),
    "get_experiment": ("experiment", "experiment_id", "get", (_AUTHORIZE, "Failed to fetch experiment")),
    "archive_experiment": ("experiment", "experiment_id", "archive", (_AUTHORIZE, "Failed to archive experiment")),
    "unarchive_experiment": ("experiment", "experiment_id", "unarchive",
                             (_AUTHORIZE, "Failed to unarchive experiment")),
    "delete_experiment": ("experiment", "experiment_id", "delete", (_AUTHORIZE, "Failed to delete experiment")),
    "get_pipeline": ("pipeline", "pipeline_id", "get", (
        "Failed to get a pipeline due authorization error for pipeline id {pipeline_id}",
        "Failed to get a pipeline {pipeline_id}. Check error stack")),
    "delete_pipeline": ("pipeline", "pipeline_id", "delete", (
        "Failed to delete a pipeline due authorization error for pipeline id {pipeline_id}",
        "Failed to delete pipeline {pipeline_id}. Check error stack")),
    "create_version": ("pipeline", "pipeline_id", "create", (
        "Failed to create a pipeline version due authorization error for pipeline id {pipeline_id}",
        "Failed to create a pipeline version. Check error stack")),
    "get_version": ("pipeline_version", "pipeline_version_id", "get", (
        "Failed to get a pipeline version due to authorization error for pipeline version id {pipeline_version_id}",
        "Failed to get a pipeline version {pipeline_version_id}")),
    "delete_version": ("pipeline_version", "pipeline_version_id", "delete", (
        "Failed to delete a pipeline version id {pipeline_version_id} due to authorization error for pipeline id "
        "{pipeline_id}",
        "Failed to delete a pipeline version id {pipeline_version_id} under pipeline id {pipeline_id}. Check error stack")),
}


def _add_routes(app: FastAPI, svc: KfpService) -> None:
    def guarded(access: str | None, params: dict[str, str], fn: Callable[..., Any], *args: Any) -> Any:
        """The id-addressed access check (multi-user), then the call, in one worker thread."""
        if access is not None:
            kind, key, verb, wrappers = ACCESS[access]
            try:
                svc.check_access(kind, params[key], verb)
            except ApiError as err:
                for wrapper in wrappers:
                    err = err.wrap(wrapper.format(**params))
                raise err from None
        return fn(*args)

    async def respond(request: Request, fn: Callable[..., Any], *args: Any, access: str | None = None) -> JSONResponse:
        caller = Caller.from_headers(list(request.headers.items()))
        params = dict(request.path_params)
        return JSONResponse(await run_in_threadpool(_as_caller, caller, guarded, access, params, fn, *args))

    def route(method: str, path: str, fn: Callable[..., Any], *fixed: Any, body: bool = False,
              query: bool = False, access: str | None = None) -> None:
        """Answer ``method API+path`` with ``fn(*path parameters, *fixed[, JSON body][, query])``."""

        async def handler(request: Request) -> JSONResponse:
            args = [*request.path_params.values(), *fixed]
            if body:
                args.append(await _json_body(request))
            if query:
                args.append(_query(request))
            return await respond(request, fn, *args, access=access)

        app.add_api_route(f"{API}{path}", handler, methods=[method], name=access or fn.__name__)

    @app.get(f"{API}/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(svc.healthz())

    # experiments
    route("POST", "/experiments", svc.create_experiment, body=True)
    route("GET", "/experiments", svc.list_experiments, query=True)
    route("GET", "/experiments/{experiment_id}", svc.get_experiment, access="get_experiment")
    route("POST", "/experiments/{experiment_id}:archive", svc.set_experiment_storage, "ARCHIVED",
          access="archive_experiment")
    route("POST", "/experiments/{experiment_id}:unarchive", svc.set_experiment_storage, "AVAILABLE",
          access="unarchive_experiment")
    route("DELETE", "/experiments/{experiment_id}", svc.delete_experiment, access="delete_experiment")

    # pipelines and versions
    async def _upload(request: Request) -> tuple[bytes, str]:
        try:
            form = await request.form()
        except Exception as exc:
            raise wire.bad_request(f"expected a multipart/form-data body with a file part 'uploadfile' ({exc})") from exc
        part = form.get("uploadfile")
        if part is None or isinstance(part, str):
            raise wire.bad_request("the multipart body has no file part named 'uploadfile'; send the pipeline YAML there")
        data = await part.read()
        return data, part.filename or "pipeline.yaml"

    @app.post(f"{API}/pipelines/upload")
    async def upload_pipeline(request: Request) -> JSONResponse:
        data, filename = await _upload(request)
        return await respond(request, svc.upload_pipeline, data, filename, _query(request))

    @app.post(f"{API}/pipelines/upload_version")
    async def upload_pipeline_version(request: Request) -> JSONResponse:
        data, filename = await _upload(request)
        return await respond(request, svc.upload_version, data, filename, _query(request))

    route("POST", "/pipelines/create", svc.create_pipeline_and_version, body=True)
    route("POST", "/pipelines", svc.create_pipeline, body=True)
    route("GET", "/pipelines", svc.list_pipelines, query=True)
    route("GET", "/pipelines/names/{name}", svc.get_pipeline_by_name, query=True)
    route("GET", "/pipelines/{pipeline_id}", svc.get_pipeline, access="get_pipeline")

    @app.delete(f"{API}/pipelines/{{pipeline_id}}")
    async def delete_pipeline(pipeline_id: str, request: Request) -> JSONResponse:
        cascade = request.query_params.get("cascade", "").lower() in ("true", "1")
        return await respond(request, svc.delete_pipeline, pipeline_id, cascade, access="delete_pipeline")

    route("POST", "/pipelines/{pipeline_id}/versions", svc.create_version, body=True, access="create_version")
    route("GET", "/pipelines/{pipeline_id}/versions", svc.list_versions, query=True)
    route("GET", "/pipelines/{pipeline_id}/versions/{pipeline_version_id}", svc.get_version, access="get_version")
    route("DELETE", "/pipelines/{pipeline_id}/versions/{pipeline_version_id}", svc.delete_version,
          access="delete_version")

    # runs
    route("POST", "/runs", svc.create_run, body=True)
    route("GET", "/runs", svc.list_runs, query=True)
    route("GET", "/runs/{run_id}", svc.get_run, access="get_run")
    route("POST", "/runs/{run_id}:terminate", svc.terminate_run, access="terminate_run")
    route("POST", "/runs/{run_id}:retry", svc.retry_run, access="retry_run")
    route("POST", "/runs/{run_id}:archive", svc.set_run_storage, "ARCHIVED", access="archive_run")
    route("POST", "/runs/{run_id}:unarchive", svc.set_run_storage, "AVAILABLE", access="unarchive_run")
    route("DELETE", "/runs/{run_id}", svc.delete_run, access="delete_run")


def serve(host: str, port: int, state_dir: str | os.PathLike[str], token_file: str | None = None,
          admin: bool = False, multi_user: bool = False, users_file: str | None = None) -> None:
    """Run the stand-in until SIGINT/SIGTERM (uvicorn's handlers); running runs are stopped on exit."""
    import uvicorn

    app = create_app(Path(state_dir), token_file=Path(token_file) if token_file else None, admin=admin,
                     multi_user=multi_user, users_file=Path(users_file) if users_file else None)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
