"""Kubernetes API routes (contracts D.1–D.5): ``serving.kserve.io/v1beta1`` InferenceServices
(read-write), the Standard-mode ``apps/v1`` Deployments and ``v1`` Pods (read-only: get, list,
watch, ``pods/log``), discovery and a minimal OpenAPI for ``kubectl``."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from kfp_bridge.local.kube import errors, filtering, openapi, patching
from kfp_bridge.local.kube.store import API_VERSION, KIND, DerivedObjects, Store

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
GROUP_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_WATCH_TIMEOUT_S = 1800  # the apiserver's --min-request-timeout
# The watch cache sends a bookmark about once a minute (cacher.go: bookmarkFrequency = time.Minute).
BOOKMARK_INTERVAL_S = 60.0
DROP, ABORT = object(), object()  # sentinels put on watcher queues by admin and shutdown
Source = Store | DerivedObjects


def parse_bool(value: str | None) -> bool:
    """The Python client sends str(True) ("True"); accept any case, and 1."""
    return (value or "").strip().lower() in ("true", "1", "yes")


class WatchResponse(StreamingResponse):
    """A chunked stream that also notices the client hanging up while idle, so watchers get cleaned up."""

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[override]
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


def _check_gv(group: str, version: str, plural: str) -> None:
    if (group, version, plural) != (GROUP, VERSION, PLURAL):
        raise errors.KubeApiError(
            404,
            "NotFound",
            f"the server could not find the requested resource ({group}/{version} {plural}); "
            f"this stand-in serves only {GROUP_VERSION} {PLURAL}",
        )


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise errors.bad_request(f"the request body is not valid JSON: {exc}") from exc


def _dry_run(request: Request) -> bool:
    return request.query_params.get("dryRun") == "All"


def _list_body(
    store: Source, items: list[dict[str, Any]], request: Request, kind: str = KIND, api_version: str = API_VERSION
) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(store.rv)}
    token = request.query_params.get("continue")
    if token:
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(token)))
        except ValueError as exc:
            raise errors.bad_request(
                "invalid continue token; start the list again without 'continue'"
            ) from exc
        items = [o for o in items if (o["metadata"]["namespace"], o["metadata"]["name"]) > after]
    limit = int(request.query_params.get("limit") or 0)
    if limit > 0 and len(items) > limit:
        last = items[limit - 1]["metadata"]
        meta["continue"] = base64.urlsafe_b64encode(
            json.dumps([last["namespace"], last["name"]]).encode()
        ).decode()
        meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": meta, "items": items}


def _event_line(event_type: str, obj: dict[str, Any]) -> bytes:
    return (json.dumps({"type": event_type, "object": obj}) + "\n").encode()


def _watch(
    store: Source, ns: str | None, request: Request, bookmark_interval_s: float = BOOKMARK_INTERVAL_S,
    kind: str = KIND, api_version: str = API_VERSION,
) -> WatchResponse:
    params = request.query_params
    label = filtering.label_selector(params.get("labelSelector"))
    field = filtering.field_selector(params.get("fieldSelector"))

    def matches(obj: dict[str, Any]) -> bool:
        return (ns is None or obj["metadata"]["namespace"] == ns) and label(obj) and field(obj)

    try:
        timeout = float(params.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_S)
    except ValueError as exc:
        raise errors.bad_request("timeoutSeconds must be an integer number of seconds") from exc
    bookmarks = parse_bool(params.get("allowWatchBookmarks"))
    rv = params.get("resourceVersion") or ""
    if rv not in ("", "0") and not rv.isdigit():
        raise errors.bad_request(
            f"resourceVersion {rv!r} is not one this server issued; omit it to start from now"
        )

    # Subscribing and taking the snapshot happen without an await in between: no event is missed.
    queue: asyncio.Queue = asyncio.Queue()
    store.watchers.add(queue)
    expired_error: errors.KubeApiError | None = None
    if rv in ("", "0"):
        initial = [("ADDED", o) for o in store.list(ns, matches)]
    else:
        try:
            replay = [(e.as_seen_by(matches), e.object) for e in store.events_since(int(rv))]
            initial = [(t, o) for t, o in replay if t is not None]
        except errors.KubeApiError as exc:
            initial, expired_error = [], exc

    async def events() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        try:
            if expired_error is not None:
                # Real apiservers report a compacted RV as an ERROR event inside a 200 stream.
                yield _event_line("ERROR", expired_error.body())
                return
            for event_type, obj in initial:
                yield _event_line(event_type, obj)
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                wait = min(remaining, bookmark_interval_s) if bookmarks else remaining
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        bookmark = {
                            "kind": kind,
                            "apiVersion": api_version,
                            "metadata": {"resourceVersion": str(store.rv)},
                        }
                        yield _event_line("BOOKMARK", bookmark)
                    continue
                if event is DROP:
                    return
                if event is ABORT:
                    raise ConnectionAbortedError("watch aborted by /_admin/drop-watches?mode=abort")
                seen_as = event.as_seen_by(matches)
                if seen_as is not None:
                    yield _event_line(seen_as, event.object)
        finally:
            store.watchers.discard(queue)

    return WatchResponse(events(), media_type="application/json")


ISVC_RESOURCES = [
    {
        "name": PLURAL,
        "singularName": "inferenceservice",
        "namespaced": True,
        "kind": KIND,
        "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
        "shortNames": ["isvc"],
        "categories": ["all"],
    },
    {"name": f"{PLURAL}/status", "singularName": "", "namespaced": True, "kind": KIND, "verbs": ["get", "patch", "update"]},
]
APPS_RESOURCES = [
    {
        "name": "deployments",
        "singularName": "deployment",
        "namespaced": True,
        "kind": "Deployment",
        "verbs": ["get", "list", "watch"],
        "shortNames": ["deploy"],
        "categories": ["all"],
    },
    {"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment", "verbs": ["get"]},
]
CORE_RESOURCES = [
    {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get", "list", "watch"],
        "shortNames": ["po"],
        "categories": ["all"],
    },
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
]


def _read_only() -> errors.KubeApiError:
    return errors.KubeApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource "
        "(the local stand-in's Deployments and Pods are written by its controller only)",
    )


def build_router(
    store: Store,
    *,
    deployments: DerivedObjects | None = None,
    pods: Any = None,
    bookmark_interval_s: float = BOOKMARK_INTERVAL_S,
) -> APIRouter:
    """:param pods: a :class:`kfp_bridge.local.kube.pods.PodSource` (controller pods + KFP executor pods)."""
    router = APIRouter()
    base = "/apis/{group}/{version}"

    # ---- discovery (D.5) ----------------------------------------------------------------------
    @router.get("/version")
    @router.get("/version/")
    async def version() -> dict[str, Any]:
        return {
            "major": "1",
            "minor": "30",
            "gitVersion": "v1.30.0",
            "gitCommit": "kfp-bridge-local",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.22.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    @router.get("/api")
    async def core_versions(request: Request) -> dict[str, Any]:
        host = request.url.netloc
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }

    @router.get("/api/v1")
    async def core_resources() -> dict[str, Any]:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": CORE_RESOURCES}

    def api_group(name: str, version: str) -> dict[str, Any]:
        gv = {"groupVersion": f"{name}/{version}", "version": version}
        return {"name": name, "versions": [gv], "preferredVersion": gv}

    groups_served = [api_group("apps", "v1"), api_group(GROUP, VERSION)]

    @router.get("/apis")
    async def groups() -> dict[str, Any]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups_served}

    @router.get("/apis/apps")
    async def apps_group() -> dict[str, Any]:
        return {"kind": "APIGroup", "apiVersion": "v1", **groups_served[0]}

    @router.get("/apis/apps/v1")
    async def apps_resources() -> dict[str, Any]:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": APPS_RESOURCES}

    @router.get(f"/apis/{GROUP}")
    async def group() -> dict[str, Any]:
        return {"kind": "APIGroup", "apiVersion": "v1", **groups_served[1]}

    @router.get(f"/apis/{GROUP_VERSION}")
    async def resources() -> dict[str, Any]:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": ISVC_RESOURCES}

    # ---- OpenAPI v3 (what kubectl's client-side apply and validation fetch) --------------------
    @router.get("/openapi/v3")
    async def openapi_root() -> dict[str, Any]:
        return {
            "paths": {
                gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={openapi.HASH}"}
                for gv in openapi.GROUP_VERSIONS
            }
        }

    @router.get("/openapi/v3/{gv:path}")
    async def openapi_doc(gv: str) -> JSONResponse:
        doc = openapi.document(gv)
        if doc is None:
            raise errors.KubeApiError(404, "NotFound", f"no OpenAPI document for {gv}")
        return JSONResponse(doc)

    # ---- apps/v1 Deployments and v1 Pods (read-only) -------------------------------------------
    def read_only_kind(source: DerivedObjects, prefix: str, plural: str) -> None:
        def list_or_watch(ns: str | None, request: Request):
            if parse_bool(request.query_params.get("watch")):
                return _watch(source, ns, request, bookmark_interval_s, source.kind, source.api_version)
            label = filtering.label_selector(request.query_params.get("labelSelector"))
            field = filtering.field_selector(request.query_params.get("fieldSelector"))
            items = source.list(ns, lambda o: label(o) and field(o))
            return _list_body(source, items, request, source.kind, source.api_version)

        @router.get(f"{prefix}/{plural}")
        async def all_namespaces(request: Request):
            return list_or_watch(None, request)

        @router.get(prefix + "/namespaces/{ns}/" + plural)
        async def namespaced(ns: str, request: Request):
            return list_or_watch(ns, request)

        @router.get(prefix + "/namespaces/{ns}/" + plural + "/{name}")
        @router.get(prefix + "/namespaces/{ns}/" + plural + "/{name}/status")
        async def one(ns: str, name: str):
            return source.get(ns, name)

        @router.api_route(prefix + "/namespaces/{ns}/" + plural, methods=["POST", "DELETE"])
        @router.api_route(prefix + "/namespaces/{ns}/" + plural + "/{name}", methods=["PUT", "PATCH", "DELETE"])
        async def write(ns: str, name: str = ""):
            raise _read_only()

    if deployments is not None:
        read_only_kind(deployments, "/apis/apps/v1", "deployments")
    if pods is not None:
        read_only_kind(pods, "/api/v1", "pods")

        @router.get("/api/v1/namespaces/{ns}/pods/{name}/log")
        async def pod_log(ns: str, name: str, request: Request) -> PlainTextResponse:
            params = request.query_params
            try:
                tail = int(params["tailLines"]) if params.get("tailLines") else None
            except ValueError as exc:
                raise errors.bad_request("tailLines must be an integer") from exc
            return PlainTextResponse(pods.log(ns, name, params.get("container"), tail))

    # ---- collections --------------------------------------------------------------------------
    @router.get(base + "/{plural}")
    async def list_all(group: str, version: str, plural: str, request: Request):
        _check_gv(group, version, plural)
        return _list_or_watch(None, request)

    @router.get(base + "/namespaces/{ns}/{plural}")
    async def list_namespaced(group: str, version: str, ns: str, plural: str, request: Request):
        _check_gv(group, version, plural)
        return _list_or_watch(ns, request)

    def _list_or_watch(ns: str | None, request: Request):
        if parse_bool(request.query_params.get("watch")):
            return _watch(store, ns, request, bookmark_interval_s)
        label = filtering.label_selector(request.query_params.get("labelSelector"))
        field = filtering.field_selector(request.query_params.get("fieldSelector"))
        return _list_body(store, store.list(ns, lambda o: label(o) and field(o)), request)

    @router.post(base + "/namespaces/{ns}/{plural}")
    async def create(group: str, version: str, ns: str, plural: str, request: Request):
        _check_gv(group, version, plural)
        obj = store.create(ns, await _json_body(request), dry_run=_dry_run(request))
        return JSONResponse(obj, status_code=201)

    # ---- single objects -----------------------------------------------------------------------
    item = base + "/namespaces/{ns}/{plural}/{name}"
    for suffix, subresource in (("", ""), ("/status", "status")):

        def register(suffix: str = suffix, subresource: str = subresource) -> None:
            @router.get(item + suffix)
            async def get(group: str, version: str, ns: str, plural: str, name: str):
                _check_gv(group, version, plural)
                return store.get(ns, name)

            @router.put(item + suffix)
            async def replace(group: str, version: str, ns: str, plural: str, name: str, request: Request):
                _check_gv(group, version, plural)
                body = await _json_body(request)
                return store.update(
                    ns, name, body, subresource=subresource, require_rv=True, dry_run=_dry_run(request)
                )

            @router.patch(item + suffix)
            async def patch(group: str, version: str, ns: str, plural: str, name: str, request: Request):
                _check_gv(group, version, plural)
                content_type = request.headers.get("content-type", "")
                current = store.get(ns, name)
                patched = patching.apply_patch(current, await request.body(), content_type)
                return store.update(ns, name, patched, subresource=subresource, dry_run=_dry_run(request))

        register()

    @router.delete(item)
    async def delete(group: str, version: str, ns: str, plural: str, name: str, request: Request):
        # Custom resources return the object (ReturnDeletedObject): with the controller's finalizer
        # still on it, it carries deletionTimestamp and stays until the controller lets go.
        _check_gv(group, version, plural)
        return store.delete(ns, name, dry_run=_dry_run(request))

    return router
