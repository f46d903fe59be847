"""Test hooks under ``/_admin/`` (only with ``--admin``): counters, watch chaos, history compaction.

``GET  /_admin/stats``                   request counts, open watches, model servers per revision
``POST /_admin/reset-stats``             zero the counters
``POST /_admin/drop-watches?mode=end``   end every open watch (``mode=abort``: break the connection)
``POST /_admin/compact``                 forget watch history so older resourceVersions get 410
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter

from kfp_bridge.local.kube import api
from kfp_bridge.local.kube.controller import Controller
from kfp_bridge.local.kube.store import Store


def build_router(store: Store, controller: Controller, counts: Counter) -> APIRouter:
    router = APIRouter(prefix="/_admin")

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            "requests": dict(counts),
            "watchesOpen": len(store.all_watchers()),
            "resourceVersion": str(store.rv),
            "compactedResourceVersion": str(store.compacted_rv),
            "servedByRevision": dict(controller.served),
            "inferenceServices": controller.describe(),
        }

    @router.post("/reset-stats")
    async def reset() -> dict[str, Any]:
        counts.clear()
        controller.served.clear()
        return {"reset": True}

    @router.post("/drop-watches")
    async def drop_watches(mode: str = "end") -> dict[str, Any]:
        sentinel = api.ABORT if mode == "abort" else api.DROP
        watchers = store.all_watchers()
        for queue in watchers:
            queue.put_nowait(sentinel)
        return {"dropped": len(watchers), "mode": "abort" if sentinel is api.ABORT else "end"}

    @router.post("/compact")
    async def compact() -> dict[str, Any]:
        return {"compactedResourceVersion": str(store.compact())}

    return router
