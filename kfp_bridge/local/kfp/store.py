"""Persistence: every resource is a JSON document in SQLite under the state dir, mirrored in memory.

Reads come from memory so list/get requests never wait on the disk; writes go through to SQLite
before they return, so a restarted server loses nothing. Documents are replaced, never mutated in
place, which lets readers keep using a document they fetched while a writer builds the next one.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

KINDS = ("experiments", "pipelines", "pipeline_versions", "runs", "specs")


class Store:
    """:param path: the SQLite file; created with its tables when missing."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a killed process (only an OS crash can lose the last commits).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS docs (kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,"
            " PRIMARY KEY (kind, id))"
        )
        self.lock = threading.RLock()
        self._mem = self._load()
        self._depth = 0

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock and commit all writes inside at once (checks + writes stay atomic)."""
        with self.lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                    self._reload()
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def _reload(self) -> None:
        # Readers take no lock: they must see the old index or the new one, never one being filled.
        self._mem = self._load()

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        mem: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        for kind, ident, doc in self._db.execute("SELECT kind, id, doc FROM docs"):
            if kind in mem:
                mem[kind][ident] = json.loads(doc)
        return mem

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        return self._mem[kind].get(ident)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self._mem[kind].values())

    def put(self, kind: str, ident: str, doc: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(doc, separators=(",", ":"))
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO docs (kind, id, doc) VALUES (?, ?, ?)", (kind, ident, text))
            self._mem[kind][ident] = doc
        return doc

    def update(
        self, kind: str, ident: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any] | None:
        """Apply ``change`` to a copy of the document and store it; None when it does not exist."""
        with self.transaction():
            current = self._mem[kind].get(ident)
            if current is None:
                return None
            doc = copy.deepcopy(current)
            change(doc)
            return self.put(kind, ident, doc)

    def delete(self, kind: str, ident: str) -> bool:
        with self.transaction():
            existed = self._mem[kind].pop(ident, None) is not None
            self._db.execute("DELETE FROM docs WHERE kind = ? AND id = ?", (kind, ident))
        return existed
