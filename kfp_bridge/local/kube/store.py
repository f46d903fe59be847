"""InferenceService objects, the global resourceVersion and the watch event log, persisted in SQLite.

All methods are synchronous and run on the server's event loop thread, so each write is atomic
with respect to watchers and the controller without extra locking.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfp_bridge.local.kube import errors

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
SYSTEM_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion", "namespace", "name")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]
    previous: dict[str, Any] | None = None  # MODIFIED only: lets a filtered watch see objects leave

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
    """

    def __init__(self, db_path: Path, history: int = 1000):
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
        if rv < self.compacted_rv:
            raise errors.expired(rv, self.compacted_rv)
        return [e for e in self.history if e.rv > rv]

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
        return self._commit(ns, name, obj, "MODIFIED", previous=current)

    def delete(self, ns: str, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        current = self.get(ns, name)
        if dry_run:
            return current
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
