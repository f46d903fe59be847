"""KServeHook: InferenceService get / merge patch / watch over cncf.kubernetes' KubernetesHook.

The connection is cncf.kubernetes' ``kubernetes`` type (in_cluster, kube_config_path, kube_config,
namespace, cluster_context); this hook only adds the InferenceService calls. Every call carries a
timeout. ``kubernetes`` is imported lazily by the parent hook's methods, and this module is only
imported inside operator/trigger methods, so DAG parsing never pays for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
REQUEST_TIMEOUT = 30.0  # seconds for one non-watch call
WATCH_WINDOW = 60  # seconds one watch request stays open before it is renewed
WATCH_RETRY_PAUSE = 0.5  # seconds before re-opening a watch whose connection broke


class InferenceServiceNotFound(LookupError):
    """The named InferenceService does not exist."""


def _not_found(name: str, namespace: str) -> InferenceServiceNotFound:
    return InferenceServiceNotFound(
        f"InferenceService {namespace}/{name} does not exist; create it first (kubectl apply -f isvc.yaml) "
        "or fix inference_service/namespace"
    )


def _only_item(listing: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    items = listing.get("items") or []
    if not items:
        raise _not_found(name, namespace)
    return items[0]


def _listed(listing: dict[str, Any], name: str, namespace: str) -> tuple[dict[str, Any], str]:
    """The object of a re-list and the list's resourceVersion, where the watch resumes.

    The object's own resourceVersion would be just as expired as the one that got the 410.
    """
    return _only_item(listing, name, namespace), listing["metadata"]["resourceVersion"]


def _by_name(name: str) -> dict[str, str]:
    return {"field_selector": f"metadata.name={name}"}


def _timed_out(name: str, namespace: str, timeout: float, obj: dict[str, Any]) -> TimeoutError:
    return TimeoutError(
        f"InferenceService {namespace}/{name}: condition not reached within {timeout:.0f}s", obj
    )


def watch_window(left: float) -> int:
    """Seconds the next watch request stays open: what is left of the wait, within 1..WATCH_WINDOW."""
    return max(1, min(WATCH_WINDOW, int(left)))


class WatchCursor:
    """Where a watch of one InferenceService resumes, and what its events mean; no I/O.

    Both hooks open, renew and re-list the watch themselves and ask this what to do.

    :param name: the InferenceService.
    :param namespace: its namespace.
    :param resource_version: where the watch starts.
    :param log: the hook's logger, for the expired and broken-watch messages.
    """

    def __init__(self, name: str, namespace: str, resource_version: str, log: logging.Logger) -> None:
        self.name = name
        self.namespace = namespace
        self.resource_version = resource_version
        self.log = log

    def watch_kwargs(self, window: int) -> dict[str, Any]:
        """The list call's keyword arguments for a watch of ``window`` seconds from here."""
        return {**_by_name(self.name), "resource_version": self.resource_version, "timeout_seconds": window}

    def changed(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The object an ADDED or MODIFIED event brings, else None; DELETED ends the wait.

        Every event, a BOOKMARK too, moves the point the watch resumes from.
        """
        if event["type"] == "DELETED":
            raise _not_found(self.name, self.namespace)
        obj = event["object"]
        self.resource_version = obj["metadata"]["resourceVersion"]
        return obj if event["type"] in ("ADDED", "MODIFIED") else None

    def must_relist(self, status: int) -> bool:
        """Whether a watch's API error is a 410 (the history was compacted), which only a re-list mends."""
        if status != 410:
            return False
        self.log.info(
            "Watch of %s/%s: resourceVersion %s expired (410); re-listing",
            self.namespace,
            self.name,
            self.resource_version,
        )
        return True

    def broke(self, exc: BaseException) -> None:
        """Say that the watch connection broke; the caller re-opens it from here.

        A connection broken mid-stream (load balancer reset, apiserver restart) resumes from the last
        resourceVersion seen, as client-go's reflector does.
        """
        self.log.info(
            "Watch of %s/%s broke (%s: %s); resuming from resourceVersion %s",
            self.namespace,
            self.name,
            type(exc).__name__,
            exc,
            self.resource_version,
        )


class _KServeHookMixin:
    """What both hooks take: the cncf.kubernetes connection and a timeout for each non-watch call."""

    def __init__(
        self,
        kubernetes_conn_id: str = KubernetesHook.default_conn_name,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=kubernetes_conn_id, **kwargs)
        self.request_timeout = request_timeout


class KServeHook(_KServeHookMixin, KubernetesHook):
    """InferenceService calls on a ``kubernetes`` connection.

    :param kubernetes_conn_id: the cncf.kubernetes connection (default ``kubernetes_default``).
    :param request_timeout: seconds for each non-watch API call.
    """

    hook_name = "KServe (Kubernetes)"

    def get_isvc(self, name: str, namespace: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom_object_client.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                raise _not_found(name, namespace) from exc
            raise

    def patch_isvc(self, name: str, namespace: str, patch: dict[str, Any]) -> dict[str, Any]:
        """RFC 7386 merge patch (kubernetes 30.1.0 sends dict bodies as merge-patch+json): None deletes."""
        return self.custom_object_client.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch, _request_timeout=self.request_timeout
        )

    def relist_isvc(self, name: str, namespace: str) -> tuple[dict[str, Any], str]:
        """The object and the list's resourceVersion: where a watch resumes after a 410."""
        listing = self.custom_object_client.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, **_by_name(name), _request_timeout=self.request_timeout
        )
        return _listed(listing, name, namespace)

    def watch_isvc(
        self, name: str, namespace: str, resource_version: str, timeout: float
    ) -> Iterator[dict[str, Any]]:
        """Yield the object on every change after ``resource_version`` until ``timeout`` seconds pass.

        A 410 (history expired) re-lists and resumes from the list's resourceVersion (the object's
        own would be just as expired); a broken connection resumes from the last one seen.
        """
        import urllib3
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        cursor = WatchCursor(name, namespace, resource_version, self.log)
        while (left := deadline - time.monotonic()) > 0:
            window = watch_window(left)
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.custom_object_client.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    **cursor.watch_kwargs(window),
                    _request_timeout=(self.request_timeout, window + 10),
                ):
                    obj = cursor.changed(event)
                    if obj is None:
                        continue
                    yield obj
                    if time.monotonic() >= deadline:
                        return
            except ApiException as exc:
                if not cursor.must_relist(exc.status):
                    raise
                obj, cursor.resource_version = self.relist_isvc(name, namespace)
                yield obj
            except urllib3.exceptions.HTTPError as exc:
                cursor.broke(exc)
                time.sleep(WATCH_RETRY_PAUSE)
            finally:
                w.stop()

    def wait_isvc(
        self,
        name: str,
        namespace: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        start: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Watch until ``done(obj)``; TimeoutError (with the last object in ``args[1]``) otherwise."""
        obj = start or self.get_isvc(name, namespace)
        if done(obj):
            return obj
        for changed in self.watch_isvc(name, namespace, obj["metadata"]["resourceVersion"], timeout):
            obj = changed
            if done(obj):
                return obj
        raise _timed_out(name, namespace, timeout, obj)


class KServeAsyncHook(_KServeHookMixin, AsyncKubernetesHook):
    """The same calls with kubernetes_asyncio, for triggers (the connection is read asynchronously)."""

    async def get_isvc(self, name: str, namespace: str) -> dict[str, Any]:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        async with self.get_conn() as api_client:
            try:
                return await client.CustomObjectsApi(api_client).get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _request_timeout=self.request_timeout
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise _not_found(name, namespace) from exc
                raise

    async def patch_isvc(self, name: str, namespace: str, patch: dict[str, Any]) -> dict[str, Any]:
        from kubernetes_asyncio import client

        async with self.get_conn() as api_client:
            api = client.CustomObjectsApi(api_client)
            return await api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _request_timeout=self.request_timeout,
                _content_type="application/merge-patch+json",
            )

    async def wait_isvc(
        self,
        name: str,
        namespace: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        on_object: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Watch (kubernetes_asyncio) until ``done(obj)``; 410 re-lists; TimeoutError otherwise."""
        import aiohttp
        from kubernetes_asyncio import client, watch
        from kubernetes_asyncio.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        obj = await self.get_isvc(name, namespace)
        cursor = WatchCursor(name, namespace, obj["metadata"]["resourceVersion"], self.log)
        async with self.get_conn() as api_client:
            api = client.CustomObjectsApi(api_client)
            while True:
                if on_object is not None:
                    on_object(obj)
                if done(obj):
                    return obj
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _timed_out(name, namespace, timeout, obj)
                window = watch_window(left)
                try:
                    async with watch.Watch() as w:
                        async for event in w.stream(
                            api.list_namespaced_custom_object,
                            GROUP,
                            VERSION,
                            namespace,
                            PLURAL,
                            **cursor.watch_kwargs(window),
                        ):
                            changed = cursor.changed(event)
                            if changed is not None:
                                obj = changed
                                break
                except ApiException as exc:
                    if not cursor.must_relist(exc.status):
                        raise
                    listing = await api.list_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        PLURAL,
                        **_by_name(name),
                        _request_timeout=self.request_timeout,
                    )
                    obj, cursor.resource_version = _listed(listing, name, namespace)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    cursor.broke(exc)
                    await asyncio.sleep(WATCH_RETRY_PAUSE)
