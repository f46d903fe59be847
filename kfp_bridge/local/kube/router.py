"""The ingress: path-based URLs that stand in for KServe's per-service hostnames.

Layout (there is no DNS here, so names go in the path):
  ``/serving/<ns>/<name>/<path>``           traffic-split by the status ``traffic`` percentages
  ``/serving/<ns>/<name>/tag/<tag>/<path>`` one tagged target (``prev``; ``latest`` with tag routing)
``<path>`` is passed unchanged to the revision's KServe model server (``v1/models/<name>:predict``,
``v2/models/<name>/infer``, ``v2/models/<name>/ready``, ...). Every response carries
``x-kfp-bridge-revision`` naming the revision (Standard mode: the deployment) that answered.
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

    return router
