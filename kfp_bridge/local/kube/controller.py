"""The controller: turns InferenceService specs into running KServe model servers and writes status.

Knative mode: every change of ``spec.predictor`` (other than ``canaryTrafficPercent``, which only
moves traffic, as in Knative) creates revision ``<name>-predictor-0000N`` with its own model
server; each component's Knative Service keeps its own generation, which is what
``status.observedGeneration`` reports. Standard mode: the apps/v1 Deployment ``<name>-predictor``
(:mod:`.deployments`) rolls one pod at a time: the old model server answers until the new one is
ready, a new one that exits crash-loops with back-off. A spec the predictor reconciler rejects
(unknown model format) creates nothing. Status comes from the pure rules in :mod:`.rollout`.

Reconciles run one at a time on the event loop; model servers load in background tasks that
re-queue their InferenceService when they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp_bridge.local.kube import deployments, rollout
from kfp_bridge.local.kube.processes import KServeEnvironmentMissing, ModelLoadError, ModelServerProcess
from kfp_bridge.local.kube.store import DerivedObjects, Store, WatchEvent, now_rfc3339

log = logging.getLogger(__name__)
Key = tuple[str, str]
COLD_START_TIMEOUT_S = 180.0
FINALIZER = "inferenceservice.finalizers"
CRASH_BACKOFF_S = (10.0, 300.0)  # kubelet: 10 s doubling, capped at 5 min
COMPONENTS = ("predictor", "transformer", "explainer")  # reconcile order: the last one's generation wins


def predictor_template(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of the predictor that defines a revision (traffic settings do not)."""
    predictor = dict((spec or {}).get("predictor") or {})
    predictor.pop("canaryTrafficPercent", None)
    return predictor


def invalid_spec(predictor: dict[str, Any]) -> rollout.InvalidSpec | None:
    """What ``components/predictor.go`` rejects before creating anything (the stand-in has one
    ServingRuntime: sklearn)."""
    model = predictor.get("model")
    if isinstance(model, dict):
        fmt = str(((model.get("modelFormat") or {}).get("name")) or "")
        if fmt.lower() != "sklearn":
            return rollout.InvalidSpec(
                "NoSupportingRuntime",
                "No runtime found to support specified framework/version",
            )
        return None
    if isinstance(predictor.get("sklearn"), dict):
        return None
    return rollout.InvalidSpec(
        "InvalidPredictorSpec",
        "the predictor has no servable model: set spec.predictor.model {modelFormat: {name: sklearn}, "
        "storageUri: file:///...} (the local stand-in serves sklearn only)",
    )


def storage_uri_of(predictor: dict[str, Any]) -> tuple[str | None, str]:
    """(storageUri, "") for a servable sklearn predictor, else (None, why not and how to fix it)."""
    model = predictor.get("model")
    if isinstance(model, dict):
        fmt = str(((model.get("modelFormat") or {}).get("name")) or "")
        if fmt.lower() != "sklearn":
            return None, (
                f"No ServingRuntime supports the model format {fmt!r}: the local stand-in serves only "
                "spec.predictor.model.modelFormat.name: sklearn"
            )
        if not model.get("storageUri"):
            return None, "spec.predictor.model.storageUri is required (file:///path/to/model-dir)"
        return str(model["storageUri"]), ""
    sklearn = predictor.get("sklearn")
    if isinstance(sklearn, dict) and sklearn.get("storageUri"):
        return str(sklearn["storageUri"]), ""
    return None, (
        "the predictor has no servable model: set spec.predictor.model {modelFormat: {name: sklearn}, "
        "storageUri: file:///...} (or the older spec.predictor.sklearn.storageUri)"
    )


@dataclass
class RevisionRecord:
    """A Knative revision, or in Standard mode one generation of the Deployment."""

    name: str
    number: int
    template: dict[str, Any]
    state: str = "Loading"  # Loading | Ready | Failed  (Ready means it *became* ready once)
    message: str = ""
    restarts: int = 0  # Standard mode: container restarts of this pod
    process: ModelServerProcess | None = field(default=None, repr=False)
    task: asyncio.Task | None = field(default=None, repr=False)
    retry_at: float = field(default=0.0, repr=False)  # Standard mode: end of the CrashLoopBackOff
    created: str = field(default_factory=now_rfc3339, repr=False)  # Standard mode: the pod's start

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "number": self.number,
            "template": self.template,
            "state": self.state,
            "message": self.message,
            "restarts": self.restarts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RevisionRecord:
        return cls(
            data["name"], data["number"], data["template"], data["state"], data.get("message", ""),
            data.get("restarts", 0),
        )

    def view(self) -> rollout.Revision:
        return rollout.Revision(self.name, self.state, self.message)

    @property
    def running(self) -> bool:
        return (
            self.process is not None
            and self.process.proc is not None
            and self.process.proc.returncode is None
        )


@dataclass
class ServiceRuntime:
    ns: str
    name: str
    uid: str
    mode: str
    revisions: list[RevisionRecord] = field(default_factory=list)  # Knative
    current: RevisionRecord | None = None  # Standard: serving
    pending: RevisionRecord | None = None  # Standard: loading or failed replacement
    # Knative: per component, the Knative Service spec the controller last wrote and its generation.
    ksvc: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress_since: float = field(default_factory=time.monotonic)  # Standard: last rollout progress

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "mode": self.mode,
            "revisions": [r.to_json() for r in self.revisions],
            "current": self.current.to_json() if self.current else None,
            "pending": self.pending.to_json() if self.pending else None,
            "ksvc": self.ksvc,
        }

    @classmethod
    def from_json(cls, ns: str, name: str, data: dict[str, Any]) -> ServiceRuntime:
        rt = cls(
            ns, name, data["uid"], data["mode"], [RevisionRecord.from_json(r) for r in data["revisions"]]
        )
        rt.current = RevisionRecord.from_json(data["current"]) if data.get("current") else None
        rt.pending = RevisionRecord.from_json(data["pending"]) if data.get("pending") else None
        rt.ksvc = data.get("ksvc") or {}
        return rt

    def records(self) -> list[RevisionRecord]:
        return [*self.revisions, *(r for r in (self.current, self.pending) if r is not None)]


class NoRoute(Exception):
    """The router cannot serve this request; carries the HTTP code and a message naming the fix."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Controller:
    """Watches the store, runs model servers and writes InferenceService status.

    :param store: the object store (its listener hook feeds this controller).
    :param state_dir: model server logs go to ``state_dir/logs``.
    :param domain: the ingress domain of ``status.url`` host names (KServe's default ``example.com``).
    :param progress_deadline_s: Standard mode Deployments' ``progressDeadlineSeconds``.
    """

    def __init__(
        self,
        store: Store,
        state_dir: Path,
        domain: str = "example.com",
        *,
        progress_deadline_s: int = deployments.DEFAULT_PROGRESS_DEADLINE_S,
    ):
        self.store = store
        self.state_dir = state_dir
        self.domain = domain
        self.progress_deadline_s = progress_deadline_s
        self.deployments = DerivedObjects(store, "apps/v1", "Deployment", "deployments")
        self.pods = DerivedObjects(store, "v1", "Pod", "pods")
        self.runtimes: dict[Key, ServiceRuntime] = {
            tuple(key.split("/", 1)): ServiceRuntime.from_json(*key.split("/", 1), data)  # type: ignore[misc]
            for key, data in store.load_states("isvc").items()
        }
        self.served: dict[str, int] = {}
        self._dirty: set[Key] = set(store.objects) | set(self.runtimes)
        self._wake = asyncio.Event()
        self._wake.set()
        self._background: set[asyncio.Task] = set()
        store.listeners.append(self._on_event)

    # ---- loop --------------------------------------------------------------------------------
    def _on_event(self, event: WatchEvent) -> None:
        meta = event.object["metadata"]
        self.mark_dirty((meta["namespace"], meta["name"]))

    def mark_dirty(self, key: Key) -> None:
        self._dirty.add(key)
        self._wake.set()

    async def run(self) -> None:
        while True:
            # Wake at least once a second: Standard-mode rollouts have deadlines and back-offs.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            for key, rt in self.runtimes.items():
                if rt.mode == rollout.STANDARD and rt.pending is not None:
                    self._dirty.add(key)
            while self._dirty:
                key = self._dirty.pop()
                try:
                    await self.reconcile(key)
                except Exception:
                    log.exception("reconcile of %s/%s failed; will retry on the next change", *key)

    def urls(self, ns: str, name: str) -> rollout.Urls:
        return rollout.Urls(name, ns, self.domain)

    # ---- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        ns, name = key
        obj = self.store.find(ns, name)
        rt = self.runtimes.get(key)
        if obj is None or (rt is not None and rt.uid != obj["metadata"]["uid"]):
            if rt is not None:
                await self._teardown(rt)
            if obj is None:
                return
            rt = None
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            if rt is not None:
                await self._teardown(rt)
            finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            if finalizers != (meta.get("finalizers") or []):
                self.store.update(ns, name, {**obj, "metadata": {**meta, "finalizers": finalizers}})
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            # The KServe controller adds its finalizer first; delete then waits for the teardown.
            obj = self.store.update(ns, name, {**obj, "metadata": {**meta, "finalizers": [*(meta.get("finalizers") or []), FINALIZER]}})
        if rt is None:
            rt = ServiceRuntime(ns, name, obj["metadata"]["uid"], rollout.deployment_mode(obj))
            self.runtimes[key] = rt
        template = predictor_template(obj.get("spec") or {})
        invalid = invalid_spec(template)
        if invalid is not None:
            # components/predictor.go returns before the Knative Service / Deployment is touched.
            status = rollout.invalid_status(obj.get("status") or {}, invalid, now_rfc3339())
            keep = {r.name for r in rt.records()}
        elif rt.mode == rollout.STANDARD:
            status, keep = self._reconcile_standard(rt, obj, template)
        else:
            status, keep = self._reconcile_knative(rt, obj, template)
        self._persist(rt)
        if status != obj.get("status"):
            self.store.update(ns, name, {**obj, "status": status}, subresource="status")
        for record in rt.records():
            if (
                record.name not in keep
                and (record.running or record.task is not None)
                and record.state != "Loading"
            ):
                self._spawn(self._stop(record))

    def _reconcile_knative(
        self, rt: ServiceRuntime, obj: dict[str, Any], template: dict[str, Any]
    ) -> tuple[dict[str, Any], set[str]]:
        if not rt.revisions or rt.revisions[-1].template != template:
            number = rt.revisions[-1].number + 1 if rt.revisions else 1
            record = RevisionRecord(f"{rt.name}-predictor-{number:05d}", number, copy.deepcopy(template))
            rt.revisions.append(record)
            self._start(rt, record)
        latest = rt.revisions[-1]
        if latest.state == "Loading" and latest.task is None:
            self._start(rt, latest)  # a restart interrupted this load
        previous = obj.get("status") or {}
        canary = (obj["spec"]["predictor"]).get("canaryTrafficPercent")
        status = rollout.knative_status(
            previous,
            generation=self._ksvc_generation(rt, obj),
            revisions=[r.view() for r in rt.revisions],
            canary=canary,
            tag=rollout.tag_routing(obj),
            urls=self.urls(rt.ns, rt.name),
            now=now_rfc3339(),
        )
        predictor = status["components"]["predictor"]
        keep = {
            predictor.get("latestCreatedRevision", ""),
            predictor.get("latestReadyRevision", ""),
            predictor.get("latestRolledoutRevision", ""),
            predictor.get("previousRolledoutRevision", ""),
        }
        serving = {t["revisionName"] for t in predictor.get("traffic", []) if t["percent"] > 0}
        # After a restart, bring back what takes traffic now rather than on the first request.
        for record in rt.revisions:
            if (
                record.name in serving
                and record.state == "Ready"
                and not record.running
                and record.task is None
            ):
                self._start(rt, record)
        return status, keep | {t["revisionName"] for t in predictor.get("traffic", [])}

    def _ksvc_generation(self, rt: ServiceRuntime, obj: dict[str, Any]) -> int:
        """Bump each component's Knative Service generation when its spec changes; PropagateStatus
        runs per component in order, so the last present component's generation is reported."""
        spec = obj.get("spec") or {}
        observed = 0
        for component in COMPONENTS:
            part = spec.get(component)
            if not isinstance(part, dict):
                continue
            wanted = {
                "template": {k: v for k, v in part.items() if k != "canaryTrafficPercent"},
                "canary": part.get("canaryTrafficPercent"),
                "tag": rollout.tag_routing(obj),
            }
            known = rt.ksvc.get(component)
            if known is None or known["spec"] != wanted:
                known = {"spec": wanted, "generation": (known or {}).get("generation", 0) + 1}
                rt.ksvc[component] = known
            observed = known["generation"]
        return observed

    def _reconcile_standard(
        self, rt: ServiceRuntime, obj: dict[str, Any], template: dict[str, Any]
    ) -> tuple[dict[str, Any], set[str]]:
        """One Deployment, one replica, RollingUpdate maxSurge 1 / maxUnavailable 0."""
        newest = rt.pending or rt.current
        if newest is None or newest.template != template:
            if rt.pending is not None:
                self._spawn(self._stop(rt.pending))  # superseded before it finished: its RS scales to 0
            number = (newest.number + 1) if newest else 1
            rt.pending = RevisionRecord(
                f"{rt.name}-predictor-{deployments.template_hash(template)}", number, copy.deepcopy(template)
            )
            rt.progress_since = time.monotonic()
            self._start(rt, rt.pending)
        pending = rt.pending
        if pending is not None and pending.task is None:
            if pending.state == "Loading":
                self._start(rt, pending)  # a restart interrupted this load
            elif pending.state == "Failed" and pending.retry_at and time.monotonic() >= pending.retry_at:
                # The kubelet restarts the exited container once the back-off is over.
                pending.restarts += 1
                pending.state, pending.retry_at = "Loading", 0.0
                self._start(rt, pending)
            elif pending.state == "Failed" and not pending.retry_at:
                low, high = CRASH_BACKOFF_S
                pending.retry_at = time.monotonic() + min(high, low * 2 ** pending.restarts)
        if pending is not None and pending.state == "Ready":
            old, rt.current, rt.pending = rt.current, pending, None
            rt.progress_since = time.monotonic()
            if old is not None:
                self._spawn(self._stop(old))  # after the switch: the router already uses the new one
        if rt.current is not None and not rt.current.running and rt.current.task is None:
            self._start(rt, rt.current)
        pods = self._publish_standard(rt, obj)
        failure = rt.pending.message if rt.pending is not None and rt.pending.state == "Failed" else ""
        status = rollout.standard_status(
            obj.get("status") or {},
            deployment=self.deployments.objects.get((rt.ns, f"{rt.name}-predictor")),
            failure=failure,
            urls=self.urls(rt.ns, rt.name),
            now=now_rfc3339(),
        )
        return status, {r.name for r in (rt.current, rt.pending) if r is not None} | pods

    def _publish_standard(self, rt: ServiceRuntime, obj: dict[str, Any]) -> set[str]:
        """Write the Deployment and its pods as the kube controllers would see them now."""
        pods: list[deployments.Pod] = []
        now = now_rfc3339()
        for record in (rt.current, rt.pending):
            if record is None:
                continue
            crashed = record.state == "Failed"
            pods.append(
                deployments.Pod(
                    name=f"{record.name}-{hashlib.sha256(rt.uid.encode()).hexdigest()[:5]}",
                    template_hash=record.name.rsplit("-", 1)[1],
                    # Ready while its model server runs (after a stand-in restart it loads again).
                    ready=record is rt.current and record.state == "Ready" and record.running,
                    restarts=record.restarts + (1 if crashed else 0),
                    waiting="CrashLoopBackOff" if crashed else "",
                    message=record.message,
                    started=record.created,
                )
            )
        newest = rt.pending or rt.current
        key = (rt.ns, f"{rt.name}-predictor")
        if newest is not None:
            dep = deployments.deployment(
                isvc=rt.name,
                namespace=rt.ns,
                uid=rt.uid,
                generation=newest.number,
                new_hash=newest.name.rsplit("-", 1)[1],
                pods=pods,
                previous=self.deployments.objects.get(key),
                now=now,
                now_s=time.monotonic(),
                progress_deadline_s=self.progress_deadline_s,
                progress_since_s=rt.progress_since,
            )
            self.deployments.put(dep)
        wanted = {p.name for p in pods}
        for ns, pod_name in [k for k in self.pods.objects if k[0] == rt.ns]:
            owner = self.pods.objects[(ns, pod_name)]["metadata"]["labels"].get("serving.kserve.io/inferenceservice")
            if owner == rt.name and pod_name not in wanted:
                self.pods.remove(ns, pod_name)
        for pod in pods:
            self.pods.put(deployments.pod_object(rt.name, rt.ns, pod, now))
        return set()

    # ---- model servers -----------------------------------------------------------------------
    def _start(self, rt: ServiceRuntime, record: RevisionRecord) -> None:
        record.task = self._spawn(self._load(rt, record))

    async def _load(self, rt: ServiceRuntime, record: RevisionRecord) -> None:
        try:
            uri, problem = storage_uri_of(record.template)
            if uri is None:
                raise ModelLoadError(problem)
            process = ModelServerProcess(rt.name, uri, self.state_dir / "logs" / rt.ns / f"{record.name}.log")
            record.process = process
            await process.start()
            record.state = "Ready"
            log.info("revision %s serves on port %s", record.name, process.port)
        except (ModelLoadError, KServeEnvironmentMissing, OSError) as exc:
            record.process = None
            if record.state == "Loading":
                record.state = "Failed"
            record.message = str(exc)
            log.warning("revision %s failed to load: %s", record.name, exc)
        finally:
            record.task = None
            if self.runtimes.get((rt.ns, rt.name)) is rt:
                self._persist(rt)
                self.mark_dirty((rt.ns, rt.name))

    async def _stop(self, record: RevisionRecord) -> None:
        # Take the process first so a concurrent reconcile does not stop it twice.
        process, record.process = record.process, None
        task = record.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            process = process or record.process
            record.process = None
        if process is not None:
            await process.stop()
            log.info("stopped the model server of %s", record.name)

    async def _teardown(self, rt: ServiceRuntime) -> None:
        self.runtimes.pop((rt.ns, rt.name), None)
        self.deployments.remove(rt.ns, f"{rt.name}-predictor")
        for key in [k for k, o in self.pods.objects.items() if k[0] == rt.ns and
                    o["metadata"]["labels"].get("serving.kserve.io/inferenceservice") == rt.name]:
            self.pods.remove(*key)
        self.store.save_state("isvc", f"{rt.ns}/{rt.name}", None)
        await asyncio.gather(*(self._stop(r) for r in rt.records()))

    def _persist(self, rt: ServiceRuntime) -> None:
        self.store.save_state("isvc", f"{rt.ns}/{rt.name}", rt.to_json())

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def shutdown(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(
            *(self._stop(r) for rt in self.runtimes.values() for r in rt.records()), return_exceptions=True
        )

    def kill_all_now(self) -> None:
        for rt in self.runtimes.values():
            for record in rt.records():
                if record.process is not None:
                    record.process.kill_now()

    # ---- routing -----------------------------------------------------------------------------
    def resolve_host(self, host: str) -> tuple[str, str, str | None] | None:
        """(namespace, name, tag) for a Host header the ingress serves, else None."""
        host = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
        for ns, name in list(self.runtimes):
            tag = self.urls(ns, name).hosts()
            if host in tag:
                return ns, name, tag[host]
        return None

    def choose(self, ns: str, name: str, tag: str | None) -> RevisionRecord:
        """Pick the revision for one request: by tag, or weighted-random by the status traffic."""
        obj = self.store.find(ns, name)
        rt = self.runtimes.get((ns, name))
        if obj is None or rt is None:
            raise NoRoute(
                404, f"no InferenceService {ns}/{name}; create it first (kubectl apply / KServeClient.create)"
            )
        if rt.mode == rollout.STANDARD:
            if tag is not None:
                raise NoRoute(404, "tag routes exist only in Knative mode (Standard mode has no revisions)")
            if rt.current is None:
                raise NoRoute(
                    503, f"InferenceService {ns}/{name} has no ready model server yet; wait for Ready"
                )
            return rt.current
        traffic = (((obj.get("status") or {}).get("components") or {}).get("predictor") or {}).get(
            "traffic"
        ) or []
        if tag is not None:
            targets = [t for t in traffic if t.get("tag") == tag]
            if not targets:
                raise NoRoute(
                    404,
                    f"InferenceService {ns}/{name} has no traffic target tagged {tag!r}; tags: "
                    f"{sorted(t['tag'] for t in traffic if t.get('tag')) or 'none'} (the 'latest' tag needs the "
                    f"annotation {rollout.TAG_ROUTING_ANNOTATION}: 'true')",
                )
            revision = targets[0]["revisionName"]
        else:
            weighted = [t for t in traffic if t["percent"] > 0]
            if not weighted:
                raise NoRoute(503, f"InferenceService {ns}/{name} has no ready revision yet; wait for Ready")
            revision = random.choices(
                [t["revisionName"] for t in weighted], [t["percent"] for t in weighted]
            )[0]
        for record in rt.revisions:
            if record.name == revision:
                return record
        raise NoRoute(503, f"revision {revision} of {ns}/{name} is unknown to the controller")

    async def ensure_up(self, ns: str, name: str, record: RevisionRecord) -> ModelServerProcess:
        """Knative's activator: cold-start a scaled-down revision and hold the request meanwhile."""
        rt = self.runtimes.get((ns, name))
        if record.task is None and not record.running and rt is not None:
            self._start(rt, record)
        if record.task is not None:
            # A load in progress (cold start, or the restart after a stand-in restart): wait for it.
            # asyncio.wait neither cancels the load when this request gives up nor raises if it was stopped.
            done, _ = await asyncio.wait({record.task}, timeout=COLD_START_TIMEOUT_S)
            if not done:
                raise NoRoute(503, f"revision {record.name} did not start within {COLD_START_TIMEOUT_S:.0f}s")
        if record.process is None or not record.running:
            raise NoRoute(503, f"revision {record.name} is not running: {record.message or 'stopped'}")
        self.served[record.name] = self.served.get(record.name, 0) + 1
        return record.process

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "namespace": rt.ns,
                "name": rt.name,
                "mode": rt.mode,
                "revisions": [
                    {
                        **r.to_json(),
                        "running": r.running,
                        "port": r.process.port if r.process else None,
                        "pid": r.process.pid if r.process else None,
                        "served": self.served.get(r.name, 0),
                    }
                    for r in rt.records()
                ],
            }
            for rt in self.runtimes.values()
        ]
