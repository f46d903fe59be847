"""The KFP stand-in's store: a rolled-back write never makes existing documents vanish for readers."""

from __future__ import annotations

import threading

import pytest

from kfp_bridge.local.kfp.store import Store


class Conflict(Exception):
    pass


def test_rollback_keeps_every_document_visible_to_lock_free_readers(tmp_path):
    store = Store(tmp_path / "state.db")
    for i in range(3000):  # a reload takes long enough for a reader to land inside it
        store.put("pipelines", f"p{i}", {"pipeline_id": f"p{i}"})
    misses: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if store.get("pipelines", "p0") is None:  # what the server answered 404 for
                misses.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            with pytest.raises(Conflict), store.transaction():
                store.put("pipelines", "p-new", {"pipeline_id": "p-new"})
                raise Conflict  # as a 409 inside the service's transaction does
    finally:
        stop.set()
        reader.join()
    assert not misses
    assert store.get("pipelines", "p-new") is None  # the rolled-back write is gone
    assert len(store.all("pipelines")) == 3000
    store.close()
