"""The FastAPI app the plugin mounts on the Airflow api-server (under ``URL_PREFIX``).

Routes (``{dag_id}/{dag_run_id}/{task_id}`` address a task instance, ``?map_index=`` a mapped one):

* ``GET  /ti/...``: the on-call page of a task instance (the "KFP run" tab of the task instance page).
* ``GET  /dag-run/{dag_id}/{dag_run_id}``: the KFP runs of a DAG run (the "KFP runs" tab of a DAG run).
* ``GET  /api/ti/...``: the same data as JSON.
* ``POST /api/ti/.../retry-failed-steps``: KFP retry of the run, then clear the task so it follows it.
* ``POST /api/ti/.../terminate-kfp-run``: terminate the KFP run of a task that stopped while its run
  did not.

Authorization is Airflow's own: reading needs GET on the DAG's task instances, the action needs PUT
(what clearing a task needs), so anonymous callers get 401 and read-only users 403. The action is a
POST with a JSON body only: a cross-site form cannot send that without a CORS preflight, the session
cookie is SameSite=Lax, and a request whose Origin is not this server (or ``null``) is refused.

Every response carries ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``;
every HTML response a ``Content-Security-Policy`` with a fresh nonce (:class:`SecurityHeaders`).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import MutableHeaders

from kfp_bridge.plugins import page, service
from kfp_bridge.plugins.service import OnCallError, TaskRef

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

URL_PREFIX = "/kfp-bridge"
NONCE_KEY = "kfp_bridge.csp_nonce"
# same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with the page's own
# POST, which json_post_only refuses.
COMMON_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin"}
HTML_HEADERS = {"cache-control": "no-store", "x-frame-options": "SAMEORIGIN"}

can_read = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE))
require_edit = requires_access_dag(method="PUT", access_entity=DagAccessEntity.TASK_INSTANCE)
can_edit = Depends(require_edit)
MapIndex = Annotated[str, Query(description="map index; empty or -1 for an unmapped task")]


def parse_map_index(value: str | None) -> int:
    """``-1`` for an unmapped task (the UI leaves ``{MAP_INDEX}`` unreplaced there)."""
    try:
        index = int(value) if value not in (None, "") else -1
    except ValueError:
        return -1
    return index if index >= 0 else -1


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins(request: Request) -> set[str]:
    """This server as the browser addressed it, and ``[api] base_url`` (Airflow's public URL).

    X-Forwarded-Host is never read: Airflow trusts proxy headers only when the api-server runs with
    ``--proxy-headers`` (uvicorn then rewrites the scheme from X-Forwarded-Proto for trusted
    ``FORWARDED_ALLOW_IPS``, already in ``request.url``), and even then never the host. Behind a proxy
    that rewrites Host, set ``[api] base_url``, as Airflow itself requires.
    """
    from airflow.configuration import conf

    allowed = {_origin(str(request.url))}
    base_url = conf.get("api", "base_url", fallback="") or ""
    if urlsplit(base_url).netloc:
        allowed.add(_origin(base_url))
    return allowed


def json_post_only(request: Request) -> None:
    """CSRF guard for state-changing calls: JSON body, and no foreign or opaque (``null``) Origin."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "Send this action as a JSON POST (Content-Type: application/json).",
        )
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser (curl, scripts with a bearer token): nothing to forge
    if origin.strip().lower() == "null":
        # Sent by sandboxed frames without allow-same-origin, file: and data: pages: never this UI.
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Request with Origin: null (a sandboxed, file: or data: page) refused: "
            "use the KFP run tab in the Airflow UI.",
        )
    if _origin(origin) not in allowed_origins(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Cross-origin request from {origin} refused.")


def guarded_action(event: str) -> Any:
    """Airflow's PUT permission on the task instance, then the CSRF guard; a refusal is audited.

    Every attempt of an action is in Airflow's audit log with the user and the outcome (the service
    records the ones that reach it); an anonymous caller (401) has no name to record.
    """

    def guard(request: Request, user: GetUserDep) -> None:
        try:
            require_edit(request, user)
            json_post_only(request)
        except HTTPException as err:
            params = request.path_params
            ref = TaskRef(
                params["dag_id"],
                params["dag_run_id"],
                params["task_id"],
                parse_map_index(request.query_params.get("map_index")),
            )
            extra = {"outcome": "refused", "status": err.status_code, "reason": str(err.detail)}
            service.record_audit(ref, user.get_name(), extra, event)
            raise

    return Depends(guard)


class SecurityHeaders:
    """ASGI middleware: a per-request CSP nonce for the page, and the security headers on the way out.

    Done here rather than per route so that no HTML response (error pages included) goes out without
    its CSP; a route reads the nonce with :func:`csp_nonce`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = scope[NONCE_KEY] = secrets.token_urlsafe(18)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers[name] = value
                if headers.get("content-type", "").lower().startswith("text/html"):
                    headers["content-security-policy"] = page.content_security_policy(nonce)
                    for name, value in HTML_HEADERS.items():
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csp_nonce(request: Request) -> str:
    return request.scope[NONCE_KEY]


def _prefix(request: Request) -> str:
    # root_path is where Airflow mounted this app (plus any base_url path in front of Airflow).
    return (request.scope.get("root_path") or URL_PREFIX).rstrip("/")


def _error(err: OnCallError) -> JSONResponse:
    return JSONResponse({"detail": err.reason}, status_code=err.status_code)


def _error_page(request: Request, title: str, err: OnCallError) -> HTMLResponse:
    return HTMLResponse(page.error_page(title, err.reason, nonce=csp_nonce(request)), err.status_code)


def create_app() -> FastAPI:
    app = FastAPI(
        title="kfp-bridge on-call",
        description="Per-step KFP run status and 'Retry failed steps' for KfpRunOperator task instances.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(SecurityHeaders)

    @app.get("/ti/{dag_id}/{dag_run_id}/{task_id}", response_class=HTMLResponse, dependencies=[can_read])
    def task_instance_page(
        dag_id: str, dag_run_id: str, task_id: str, request: Request, map_index: MapIndex = "-1"
    ):
        ref = TaskRef(dag_id, dag_run_id, task_id, parse_map_index(map_index))
        try:
            view = service.build_view(ref)
        except OnCallError as err:
            return _error_page(request, "KFP run", err)
        return HTMLResponse(page.ti_page(view, prefix=_prefix(request), nonce=csp_nonce(request)))

    @app.get("/dag-run/{dag_id}/{dag_run_id}", response_class=HTMLResponse, dependencies=[can_read])
    def dag_run_page(dag_id: str, dag_run_id: str, request: Request):
        try:
            views = service.build_views(service.kfp_task_instances(dag_id, dag_run_id))
        except OnCallError as err:  # a task instance gone between listing and reading
            return _error_page(request, "KFP runs", err)
        html = page.dag_run_page(
            views, dag_id=dag_id, run_id=dag_run_id, prefix=_prefix(request), nonce=csp_nonce(request)
        )
        return HTMLResponse(html)

    @app.get("/api/ti/{dag_id}/{dag_run_id}/{task_id}", dependencies=[can_read])
    def task_instance_json(dag_id: str, dag_run_id: str, task_id: str, map_index: MapIndex = "-1"):
        try:
            return service.build_view(
                TaskRef(dag_id, dag_run_id, task_id, parse_map_index(map_index))
            ).as_dict()
        except OnCallError as err:
            return _error(err)

    @app.post(
        "/api/ti/{dag_id}/{dag_run_id}/{task_id}/retry-failed-steps",
        dependencies=[guarded_action(service.AUDIT_EVENT)],
    )
    def retry_failed_steps(
        dag_id: str, dag_run_id: str, task_id: str, user: GetUserDep, map_index: MapIndex = "-1"
    ):
        ref = TaskRef(dag_id, dag_run_id, task_id, parse_map_index(map_index))
        try:
            return service.retry_failed_steps(ref, user_name=user.get_name()).as_dict()
        except OnCallError as err:
            return _error(err)

    @app.post(
        "/api/ti/{dag_id}/{dag_run_id}/{task_id}/terminate-kfp-run",
        dependencies=[guarded_action(service.TERMINATE_AUDIT_EVENT)],
    )
    def terminate_kfp_run(
        dag_id: str, dag_run_id: str, task_id: str, user: GetUserDep, map_index: MapIndex = "-1"
    ):
        ref = TaskRef(dag_id, dag_run_id, task_id, parse_map_index(map_index))
        try:
            return service.terminate_kfp_run(ref, user_name=user.get_name()).as_dict()
        except OnCallError as err:
            return _error(err)

    return app


app = create_app()
