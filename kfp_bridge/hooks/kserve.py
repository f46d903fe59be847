"""KServeHook: InferenceService get / merge patch / watch, and in Standard mode the predictor
Deployment and its pods, over cncf.kubernetes' KubernetesHook.

The connection is cncf.kubernetes' ``kubernetes`` type (in_cluster, kube_config_path, kube_config,
namespace, cluster_context) plus an optional extra ``ingress_address`` for smoke tests; this hook
only adds the KServe calls. Every call carries a timeout. ``kubernetes`` is imported lazily by the
parent hook's methods, and this module is only imported inside operator/trigger methods, so DAG
parsing never pays for it.

RBAC (deploy/rbac/kserve-rollout.yaml): inferenceservices get, list (re-list after a 410), watch,
patch; deployments list, watch (Standard mode); pods list (crash-looping new pods).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook

from kfp_bridge.utils.kserve_status import DeploymentStatus, IsvcStatus, predictor_deployment
from kfp_bridge.utils.retry import RetryPolicy, acall_with_retry, call_with_retry
from kfp_bridge.utils.rollout import Snapshot

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
REQUEST_TIMEOUT = 30.0  # seconds for one non-watch call
WATCH_WINDOW = 60  # seconds one watch request stays open before it is renewed
WATCH_RETRY_PAUSE = 0.5  # seconds before re-opening a watch whose connection broke
# Standard mode: a crash-looping pod changes no Deployment field, so the pods are re-read this often
# even when the Deployment watch stays quiet.
STANDARD_RECHECK_S = 5
POLL_INTERVAL_S = 2.0  # polling fallback (GET only) when a watch is refused during a rollback
# A merge patch is idempotent: 429/5xx and broken connections are retried within this budget.
PATCH_RETRY = RetryPolicy(initial_backoff=0.5, max_backoff=5.0, total_budget=30.0, request_timeout=REQUEST_TIMEOUT)


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


def _timed_out(name: str, namespace: str, timeout: float, obj: Any) -> TimeoutError:
    """``args[1]`` is the last object (or :class:`Snapshot`) seen, for the message that follows."""
    return TimeoutError(
        f"InferenceService {namespace}/{name}: condition not reached within {timeout:.0f}s", obj
    )


def _snapshot(
    isvc: dict[str, Any], deployment: dict[str, Any] | None, pods: list[dict[str, Any]]
) -> Snapshot:
    dep = DeploymentStatus.from_object(deployment) if deployment is not None else None
    return Snapshot(IsvcStatus.from_object(isvc), dep, tuple(pods), isvc)


def _selector(deployment: dict[str, Any] | None) -> str:
    return DeploymentStatus.from_object(deployment).label_selector() if deployment is not None else ""


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
        # The pause before re-watching, injected (tests, and one clock for the sync and async paths).
        self.sleep: Callable[[float], None] = time.sleep
        self.asleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class KServeHook(_KServeHookMixin, KubernetesHook):
    """InferenceService calls on a ``kubernetes`` connection.

    :param kubernetes_conn_id: the cncf.kubernetes connection (default ``kubernetes_default``).
    :param request_timeout: seconds for each non-watch API call.
    """

    hook_name = "KServe (Kubernetes)"

    def ingress_address(self) -> str | None:
        """The connection's extra ``ingress_address`` (smoke tests through the ingress), if any."""
        return self._get_field("ingress_address") or None

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
        """RFC 7386 merge patch (dict bodies go as merge-patch+json): None deletes; 429/5xx retried."""
        return call_with_retry(
            lambda: self.custom_object_client.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch, _request_timeout=self.request_timeout
            ),
            PATCH_RETRY,
            on_retry=lambda exc, wait: self.log.warning("Patch of %s/%s failed (%s); retrying in %.1fs",
                                                        namespace, name, exc, wait),
        )

    # ---- Standard mode: the predictor Deployment and its pods --------------------------------
    def list_deployment(self, name: str, namespace: str) -> tuple[dict[str, Any] | None, str]:
        """The Deployment ``name`` (None if absent) and the list's resourceVersion (never too old to watch).

        Deployments and pods are read as the API's JSON (``_preload_content=False``): the client's
        models would reject an object for a field the rollout never reads."""
        response = self.apps_v1_client.list_namespaced_deployment(
            namespace, **_by_name(name), _request_timeout=self.request_timeout, _preload_content=False
        )
        listing = json.loads(response.data)
        items = listing.get("items") or []
        return (items[0] if items else None), listing["metadata"]["resourceVersion"]

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        if not label_selector:
            return []
        response = self.core_v1_client.list_namespaced_pod(
            namespace, label_selector=label_selector, _request_timeout=self.request_timeout, _preload_content=False
        )
        return list(json.loads(response.data).get("items") or [])

    def read_snapshot(self, name: str, namespace: str, standard: bool) -> tuple[Snapshot, str]:
        """One look at the InferenceService (and in Standard mode its Deployment and pods); the
        Deployment list's resourceVersion, where a watch for its next change starts."""
        isvc = self.get_isvc(name, namespace)
        if not standard:
            return _snapshot(isvc, None, []), ""
        deployment, rv = self.list_deployment(predictor_deployment(name), namespace)
        return _snapshot(isvc, deployment, self.list_pods(namespace, _selector(deployment))), rv

    def _deployment_changed(self, name: str, namespace: str, resource_version: str, seconds: float) -> None:
        """Return on the Deployment's next change or after ``seconds``; a 410 or a broken watch just returns
        (the caller re-lists)."""
        import urllib3
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        window = watch_window(seconds)
        w = watch.Watch()
        try:
            for event in w.stream(
                self.apps_v1_client.list_namespaced_deployment,
                namespace,
                **_by_name(name),
                resource_version=resource_version,
                timeout_seconds=window,
                _request_timeout=(self.request_timeout, window + 10),
            ):
                if event["type"] != "BOOKMARK":
                    return
        except ApiException as exc:
            if exc.status != 410:
                raise
        except ValueError:
            return  # an event the client's model could not read is still a change: re-read it raw
        except urllib3.exceptions.HTTPError as exc:
            self.log.info("Watch of deployment %s/%s broke (%s); re-reading", namespace, name, exc)
            self.sleep(WATCH_RETRY_PAUSE)
        finally:
            w.stop()

    def wait_rollout(
        self,
        name: str,
        namespace: str,
        standard: bool,
        done: Callable[[Snapshot], bool],
        timeout: float,
    ) -> Snapshot:
        """Wait until ``done(snapshot)``: Knative by watching the InferenceService, Standard by watching
        its Deployment and re-reading the pods at least every :data:`STANDARD_RECHECK_S`.
        TimeoutError (last snapshot in ``args[1]``) otherwise."""
        if not standard:
            try:
                obj = self.wait_isvc(name, namespace, lambda o: done(_snapshot(o, None, [])), timeout)
            except TimeoutError as exc:
                raise _timed_out(name, namespace, timeout, _snapshot(exc.args[1], None, [])) from None
            return _snapshot(obj, None, [])
        deadline = time.monotonic() + timeout
        while True:
            snap, rv = self.read_snapshot(name, namespace, True)
            if done(snap):
                return snap
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timed_out(name, namespace, timeout, snap)
            self._deployment_changed(predictor_deployment(name), namespace, rv, min(left, STANDARD_RECHECK_S))

    def poll_rollout(
        self,
        name: str,
        namespace: str,
        standard: bool,
        done: Callable[[Snapshot], bool],
        timeout: float,
        *,
        interval: float = POLL_INTERVAL_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Snapshot:
        """:meth:`wait_rollout` without watches (reads only): the way to verify a rollback when a
        watch was refused (e.g. a 403 on the re-list)."""
        deadline = clock() + timeout
        while True:
            snap, _ = self.read_snapshot(name, namespace, standard)
            if done(snap):
                return snap
            if clock() + interval > deadline:
                raise _timed_out(name, namespace, timeout, snap)
            sleep(interval)

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
                self.sleep(WATCH_RETRY_PAUSE)
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

        async def once() -> dict[str, Any]:
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

        return await acall_with_retry(once, PATCH_RETRY)

    async def read_snapshot(self, name: str, namespace: str, standard: bool) -> tuple[Snapshot, str]:
        """As :meth:`KServeHook.read_snapshot`, with kubernetes_asyncio."""
        from kubernetes_asyncio import client

        isvc = await self.get_isvc(name, namespace)
        if not standard:
            return _snapshot(isvc, None, []), ""
        async with self.get_conn() as api_client:
            response = await client.AppsV1Api(api_client).list_namespaced_deployment(
                namespace,
                **_by_name(predictor_deployment(name)),
                _request_timeout=self.request_timeout,
                _preload_content=False,
            )
            listing = json.loads(await response.read())
            items = listing.get("items") or []
            deployment = items[0] if items else None
            pods: list[dict[str, Any]] = []
            if selector := _selector(deployment):
                response = await client.CoreV1Api(api_client).list_namespaced_pod(
                    namespace, label_selector=selector, _request_timeout=self.request_timeout, _preload_content=False
                )
                pods = list(json.loads(await response.read()).get("items") or [])
        return _snapshot(isvc, deployment, pods), listing["metadata"]["resourceVersion"]

    async def _deployment_changed(self, name: str, namespace: str, resource_version: str, seconds: float) -> None:
        import aiohttp
        from kubernetes_asyncio import client, watch
        from kubernetes_asyncio.client.exceptions import ApiException

        window = watch_window(seconds)
        async with self.get_conn() as api_client:
            api = client.AppsV1Api(api_client)
            try:
                async with watch.Watch() as w:
                    async for event in w.stream(
                        api.list_namespaced_deployment,
                        namespace,
                        **_by_name(name),
                        resource_version=resource_version,
                        timeout_seconds=window,
                    ):
                        if event["type"] != "BOOKMARK":
                            return
            except ApiException as exc:
                if exc.status != 410:
                    raise
            except ValueError:
                return  # an event the client's model could not read is still a change: re-read it raw
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.log.info("Watch of deployment %s/%s broke (%s); re-reading", namespace, name, exc)
                await self.asleep(WATCH_RETRY_PAUSE)

    async def wait_rollout(
        self,
        name: str,
        namespace: str,
        standard: bool,
        done: Callable[[Snapshot], bool],
        timeout: float,
    ) -> Snapshot:
        """As :meth:`KServeHook.wait_rollout`, with kubernetes_asyncio."""
        if not standard:
            try:
                obj = await self.wait_isvc(name, namespace, lambda o: done(_snapshot(o, None, [])), timeout)
            except TimeoutError as exc:
                raise _timed_out(name, namespace, timeout, _snapshot(exc.args[1], None, [])) from None
            return _snapshot(obj, None, [])
        deadline = time.monotonic() + timeout
        while True:
            snap, rv = await self.read_snapshot(name, namespace, True)
            if done(snap):
                return snap
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timed_out(name, namespace, timeout, snap)
            await self._deployment_changed(predictor_deployment(name), namespace, rv, min(left, STANDARD_RECHECK_S))

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
                    await self.asleep(WATCH_RETRY_PAUSE)
