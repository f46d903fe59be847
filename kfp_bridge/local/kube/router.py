"""The ingress (its own plain-HTTP port, as the Istio/Kourier gateway's port 80).

Routed by Host header, as KServe's host names are (``status.url``):
  ``<name>.<ns>.<domain>``, ``<name>-predictor.<ns>.<domain>``   traffic-split by ``status...traffic``
  ``latest-<name>-predictor.<ns>.<domain>`` / ``prev-...``        one tagged target
  ``<name>-<ns>.<domain>``, ``<name>-predictor-<ns>.<domain>``   Standard mode (domainTemplate)
Path routing stays as an extra for clients that cannot set a Host header:
  ``/serving/<ns>/<name>/<path>``, ``/serving/<ns>/<name>/tag/<tag>/<path>``.
``<path>`` is passed unchanged to the revision's KServe model server (``v1/models/<name>:predict``,
``v2/models/<name>/infer``, ...). Every response carries ``x-kfp-bridge-revision`` naming the
revision (Standard mode: the pod template generation) that answered.
"""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from kfp_bridge.local.kube.controller import Controller, NoRoute

REVISION_HEADER = "x-kfp-bridge-revision"
_HOP_HEADERS = {
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "authorization",
    "date",
    "server",
}


def build_router(controller: Controller, client: httpx.AsyncClient) -> APIRouter:
    router = APIRouter()
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD"]

    async def forward(ns: str, name: str, tag: str | None, path: str, request: Request) -> Response:
        try:
            record = controller.choose(ns, name, tag)
            process = await controller.ensure_up(ns, name, record)
        except NoRoute as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.code)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            upstream = await client.request(
                request.method,
                f"{process.url}/{path}",
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"error": f"revision {record.name} did not answer: {type(exc).__name__}: {exc}"},
                status_code=502,
                headers={REVISION_HEADER: record.name},
            )
        passed = {
            k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS | {"content-encoding"}
        }
        passed[REVISION_HEADER] = record.name
        return Response(upstream.content, status_code=upstream.status_code, headers=passed)

    @router.api_route("/serving/{ns}/{name}/tag/{tag}/{path:path}", methods=methods)
    async def tagged(ns: str, name: str, tag: str, path: str, request: Request) -> Response:
        return await forward(ns, name, tag, path, request)

    @router.api_route("/serving/{ns}/{name}/{path:path}", methods=methods)
    async def split(ns: str, name: str, path: str, request: Request) -> Response:
        return await forward(ns, name, None, path, request)

    @router.api_route("/{path:path}", methods=methods)
    async def by_host(path: str, request: Request) -> Response:
        host = request.headers.get("host", "")
        target = controller.resolve_host(host)
        if target is None:
            # What an Istio gateway answers for a host no VirtualService claims.
            return JSONResponse(
                {
                    "error": f"no InferenceService serves host {host!r} (expected <name>.<namespace>."
                    f"{controller.domain}, latest-/prev-<name>-predictor.<namespace>.{controller.domain}; "
                    "send the status.url host name as the Host header)"
                },
                status_code=404,
            )
        ns, name, tag = target
        return await forward(ns, name, tag, path, request)

    return router
