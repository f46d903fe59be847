"""InferenceService objects, the global resourceVersion and the watch event log, persisted in SQLite.

All methods are synchronous and run on the server's event loop thread, so each write is atomic
with respect to watchers and the controller without extra locking.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfp_bridge.local.kube import errors

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
SYSTEM_METADATA = (
    "uid", "creationTimestamp", "generation", "resourceVersion", "namespace", "name", "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
# The apiserver's watch cache keeps events for at least eventFreshDuration (75 s,
# staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go); older resourceVersions get 410.
DEFAULT_WATCH_WINDOW_S = 75.0


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]
    previous: dict[str, Any] | None = None  # MODIFIED only: lets a filtered watch see objects leave
    at: float = field(default_factory=time.monotonic)

    def as_seen_by(self, matches: Callable[[dict[str, Any]], bool]) -> str | None:
        """The event type a watcher with this filter gets, or None (the apiserver's watch filtering)."""
        now = matches(self.object)
        if self.type != "MODIFIED" or self.previous is None:
            return self.type if now else None
        before = matches(self.previous)
        if before and now:
            return "MODIFIED"
        if now:
            return "ADDED"
        return "DELETED" if before else None


# apimachinery validation.IsDNS1123Subdomain: what the API server requires of a custom resource's name.
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_name(name: Any) -> None:
    """metadata.name as the API server checks it on create (422 Invalid), before any webhook."""
    text = str(name)
    if len(text) > 253:
        raise errors.invalid(text, "metadata.name", "must be no more than 253 characters", text)
    if not _DNS1123_SUBDOMAIN.match(text):
        raise errors.invalid(
            text,
            "metadata.name",
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            f"validation is '{_DNS1123_SUBDOMAIN.pattern[1:-1]}')",
            text,
        )


def validate_spec(name: str | None, obj: dict[str, Any]) -> None:
    """The few CRD schema rules a client can trip over; the real webhook checks far more."""
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("predictor"), dict):
        raise errors.invalid(
            name, "spec.predictor", "Required value: an InferenceService needs spec.predictor", None
        )
    for component in ("predictor", "transformer", "explainer"):
        part = spec.get(component)
        if isinstance(part, dict) and "canaryTrafficPercent" in part:
            value = part["canaryTrafficPercent"]
            if isinstance(value, bool) or not isinstance(value, int):
                raise errors.invalid(
                    name,
                    f"spec.{component}.canaryTrafficPercent",
                    "must be an integer (0-100); remove the field (merge patch null) to route 100% to the latest",
                    value,
                )


class Store:
    """Objects keyed by (namespace, name) with a retained event history for watch resumption.

    :param db_path: SQLite file; created if missing, reloaded on restart.
    :param history: how many events to keep for ``watch?resourceVersion=RV``; older RVs get 410.
    :param window_s: events older than this are forgotten too (the watch cache's time window).
    """

    def __init__(self, db_path: Path, history: int = 1000, window_s: float = DEFAULT_WATCH_WINDOW_S):
        self.window_s = window_s
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (ns TEXT, name TEXT, body TEXT, PRIMARY KEY (ns, name))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS state (kind TEXT, key TEXT, body TEXT, PRIMARY KEY (kind, key))"
        )
        row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        self.rv = int(row[0]) if row else 0
        self.objects: dict[tuple[str, str], dict[str, Any]] = {
            (ns, name): json.loads(body)
            for ns, name, body in self._db.execute("SELECT ns, name, body FROM objects")
        }
        # History starts empty after a restart, as an apiserver's watch cache does.
        self.compacted_rv = self.rv
        self.history: deque[WatchEvent] = deque(maxlen=history)
        self.watchers: set[asyncio.Queue] = set()
        self.listeners: list[Callable[[WatchEvent], None]] = []
        self.derived: list[DerivedObjects] = []

    def all_watchers(self) -> list[asyncio.Queue]:
        """Open watches on every kind (admin drop-watches, shutdown)."""
        return [*self.watchers, *(q for d in self.derived for q in d.watchers)]

    # ---- reads -------------------------------------------------------------------------------
    def get(self, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((ns, name))
        if obj is None:
            raise errors.not_found(name)
        return copy.deepcopy(obj)

    def find(self, ns: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self, ns: str | None, predicate: Callable[[dict[str, Any]], bool] = lambda o: True
    ) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.objects if ns is None or k[0] == ns)
        return [copy.deepcopy(self.objects[k]) for k in keys if predicate(self.objects[k])]

    def events_since(self, rv: int) -> list[WatchEvent]:
        self.expire_history()
        if rv < self.compacted_rv:
            raise errors.expired(rv, self.compacted_rv)
        return [e for e in self.history if e.rv > rv]

    def expire_history(self, now: float | None = None) -> None:
        limit = (time.monotonic() if now is None else now) - self.window_s
        while self.history and self.history[0].at < limit:
            self.compacted_rv = self.history.popleft().rv

    def compact(self) -> int:
        """Forget the event history, as etcd compaction does; resuming from older RVs then gets 410."""
        self.history.clear()
        self.compacted_rv = self.rv
        return self.compacted_rv

    # ---- writes ------------------------------------------------------------------------------
    def create(self, ns: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        check_type(body, required=True)
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not name:
            raise errors.invalid(
                None, "metadata.name", "Required value: name or generateName is required", name
            )
        if meta.get("namespace") not in (None, "", ns):
            raise errors.bad_request(
                f"the namespace of the provided object ({meta['namespace']}) does not match the namespace "
                f"sent on the request ({ns})"
            )
        validate_name(name)
        if (ns, name) in self.objects:
            raise errors.already_exists(name)
        validate_spec(name, body)
        obj = copy.deepcopy(body)
        obj.pop("status", None)  # the status subresource: clients cannot create a status
        obj["apiVersion"], obj["kind"] = API_VERSION, KIND
        obj["metadata"] = {
            **{
                k: v
                for k, v in meta.items()
                if k not in ("resourceVersion", "generation", "uid", "creationTimestamp")
            },
            "name": name,
            "namespace": ns,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": now_rfc3339(),
            "generation": 1,
        }
        if dry_run:
            obj["metadata"]["resourceVersion"] = str(self.rv)
            return obj
        return self._commit(ns, name, obj, "ADDED")

    def update(
        self,
        ns: str,
        name: str,
        desired: dict[str, Any],
        *,
        subresource: str = "",
        require_rv: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Write ``desired`` (a whole object from PUT, or the result of a PATCH) with status-subresource rules."""
        current = self.get(ns, name)
        check_type(desired, required=not subresource)
        meta = desired.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        sent_rv = meta.get("resourceVersion")
        if require_rv and not sent_rv:
            raise errors.invalid(name, "metadata.resourceVersion", "must be specified for an update", 0)
        if sent_rv and str(sent_rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(name)
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if meta.get("namespace") not in (None, "", ns):
            raise errors.bad_request(
                f"the namespace of the object ({meta.get('namespace')}) does not match the namespace on the URL ({ns})"
            )
        if subresource == "status":
            # Status writes change status only; spec and metadata stay as stored.
            obj = copy.deepcopy(current)
            if "status" in desired:
                obj["status"] = copy.deepcopy(desired["status"])
            else:
                obj.pop("status", None)
        else:
            validate_spec(name, desired)
            obj = copy.deepcopy(desired)
            obj["apiVersion"], obj["kind"] = API_VERSION, KIND
            obj["metadata"] = {
                **{k: v for k, v in meta.items() if k not in SYSTEM_METADATA},
                **{k: current["metadata"][k] for k in SYSTEM_METADATA if k in current["metadata"]},
            }
            if "status" in current:
                obj["status"] = current["status"]
            else:
                obj.pop("status", None)
            if obj.get("spec") != current.get("spec"):
                obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
        if obj == current:
            # Like the apiserver, a write that changes nothing keeps the resourceVersion and emits no event.
            return current
        if dry_run:
            return obj
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            return self._remove(ns, name, obj)  # the last finalizer went: the object goes
        return self._commit(ns, name, obj, "MODIFIED", previous=current)

    def delete(self, ns: str, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Finalizers pending: mark with deletionTimestamp (the object stays, a re-create gets 409);
        none: remove now. Either way the object comes back, as CRDs do (ReturnDeletedObject)."""
        current = self.get(ns, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp") or dry_run:
                return current
            marked = copy.deepcopy(current)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit(ns, name, marked, "MODIFIED", previous=current)
        if dry_run:
            return current
        return self._remove(ns, name, current)

    def _remove(self, ns: str, name: str, current: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        current["metadata"]["resourceVersion"] = str(self.rv)
        del self.objects[(ns, name)]
        self._db.execute("DELETE FROM objects WHERE ns=? AND name=?", (ns, name))
        self._save_rv()
        self._emit(WatchEvent(self.rv, "DELETED", current))
        return current

    # ---- controller state (revisions, ports) -------------------------------------------------
    def save_state(self, kind: str, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM state WHERE kind=? AND key=?", (kind, key))
        else:
            self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", (kind, key, json.dumps(value)))

    def load_states(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT key, body FROM state WHERE kind=?", (kind,))
        return {key: json.loads(body) for key, body in rows}

    def close(self) -> None:
        self._db.close()

    # ---- internals ---------------------------------------------------------------------------
    def _commit(
        self, ns: str, name: str, obj: dict[str, Any], event_type: str, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[(ns, name)] = obj
        self._db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", (ns, name, json.dumps(obj)))
        self._save_rv()
        self._emit(WatchEvent(self.rv, event_type, copy.deepcopy(obj), previous))
        return copy.deepcopy(obj)

    def next_rv(self) -> int:
        """A resourceVersion for an object of another kind (one etcd revision for all kinds)."""
        self.rv += 1
        self._save_rv()
        return self.rv

    def _save_rv(self) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (str(self.rv),))

    def _emit(self, event: WatchEvent) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        self.history.append(event)
        for queue in list(self.watchers):
            queue.put_nowait(event)
        for listener in list(self.listeners):
            listener(event)


def check_type(body: Any, *, required: bool = False) -> None:
    if not isinstance(body, dict):
        raise errors.bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    if required and (not body.get("apiVersion") or not body.get("kind")):
        # What the apiserver says when a client serialises python attribute names (api_version).
        raise errors.bad_request(
            f"Object 'apiVersion' and 'kind' are required, got keys {sorted(body)}; send "
            f'"apiVersion": "{API_VERSION}", "kind": "{KIND}" (camelCase JSON, not python attribute names)'
        )
    if body.get("apiVersion") not in (None, API_VERSION) or body.get("kind") not in (None, KIND):
        raise errors.bad_request(
            f"the API version in the data ({body.get('apiVersion')}) or kind ({body.get('kind')}) does not match "
            f"the expected API version ({API_VERSION}) and kind ({KIND})"
        )


class DerivedObjects:
    """A read-only kind the controller writes (Deployments, Pods): served with list/get/watch,
    resourceVersions from the main store, history in memory (rebuilt by the controller on restart).

    :param kind: e.g. ``Deployment``; :param api_version: e.g. ``apps/v1``.
    """

    def __init__(self, store: Store, api_version: str, kind: str, resource: str):
        self.main = store
        self.api_version, self.kind, self.resource = api_version, kind, resource
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: deque[WatchEvent] = deque(maxlen=store.history.maxlen)
        self.compacted_rv = store.rv
        self.watchers: set[asyncio.Queue] = set()
        store.derived.append(self)

    @property
    def rv(self) -> int:
        return self.main.rv

    def get(self, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((ns, name))
        if obj is None:
            raise errors.not_found(name, group=self.api_version.rpartition("/")[0], plural=self.resource)
        return copy.deepcopy(obj)

    def list(
        self, ns: str | None, predicate: Callable[[dict[str, Any]], bool] = lambda o: True
    ) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.objects if ns is None or k[0] == ns)
        return [copy.deepcopy(self.objects[k]) for k in keys if predicate(self.objects[k])]

    def events_since(self, rv: int) -> list[WatchEvent]:
        limit = time.monotonic() - self.main.window_s
        while self.history and self.history[0].at < limit:
            self.compacted_rv = self.history.popleft().rv
        if rv < max(self.compacted_rv, self.main.compacted_rv):
            raise errors.expired(rv, max(self.compacted_rv, self.main.compacted_rv))
        return [e for e in self.history if e.rv > rv]

    def put(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` (without resourceVersion); no event when nothing changed."""
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        current = self.objects.get(key)
        if current is not None:
            unchanged = {**current, "metadata": {k: v for k, v in current["metadata"].items() if k != "resourceVersion"}}
            if unchanged == obj:
                return
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.main.next_rv())
        self.objects[key] = stored
        self._emit(WatchEvent(self.main.rv, "MODIFIED" if current else "ADDED", copy.deepcopy(stored), current))

    def remove(self, ns: str, name: str) -> None:
        current = self.objects.pop((ns, name), None)
        if current is not None:
            gone = copy.deepcopy(current)
            gone["metadata"]["resourceVersion"] = str(self.main.next_rv())
            self._emit(WatchEvent(self.main.rv, "DELETED", gone))

    def _emit(self, event: WatchEvent) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        self.history.append(event)
        for queue in list(self.watchers):
            queue.put_nowait(event)
