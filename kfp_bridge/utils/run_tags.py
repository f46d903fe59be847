"""The deterministic tag that ties a KFP run to the Airflow task instance that created it.

It goes into the run's description, so the run can be found again with a filtered ListRuns
(``description EQUALS tag``) even when the worker died between creating the run and saving its id.

The tag survives the real KFP server: its ``filter`` is URL-unescaped a second time
(fidelity.md K1), so a ``+`` (every ``+00:00`` run id) would turn into a space and a ``%`` would
start an escape. Fields are therefore escaped with ``~XX`` instead, which keeps them readable:
``airflow/prod/etl/train/-1/scheduled__2026-01-01T00:00:00~2B00:00/5d41402abc4b2a76``.
The last part hashes the exact identity, so runs that differ only in letter case (MySQL compares
case-insensitively, K10) still get distinct tags. The instance name scopes tags to one Airflow
deployment: staging and production sharing a profile namespace never adopt each other's runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

TAG_PREFIX = "airflow"
LEGACY_PREFIX = "airflow-task"  # tags written before the instance name existed (kfp-bridge < 0.3)
INSTANCE_ENV = "AIRFLOW__KFP_BRIDGE__INSTANCE_NAME"
_LOOPBACK = frozenset({"localhost", "::1", "0.0.0.0"})
_SAFE = re.compile(r"[A-Za-z0-9._:-]")


def escape(value: str) -> str:
    """``value`` with every character outside ``[A-Za-z0-9._:-]`` as ``~XX`` (UTF-8 bytes)."""
    return "".join(ch if _SAFE.fullmatch(ch) else "".join(f"~{b:02X}" for b in ch.encode()) for ch in value)


def unescape(value: str) -> str:
    """Inverse of :func:`escape` (``~`` never appears unescaped, so it maps one to one onto ``%``)."""
    if "%" in value:
        raise ValueError(f"not an escaped tag field: {value!r}")
    return unquote(value.replace("~", "%"), errors="strict")


def instance_name() -> str:
    """This Airflow deployment's name in run tags.

    ``[kfp_bridge] instance_name`` (env ``AIRFLOW__KFP_BRIDGE__INSTANCE_NAME``); else the host (and
    port) of ``[api] base_url``, which differs between deployments that share a KFP namespace; else
    (unset, or a loopback address: a developer's machine) ``default``. Changing it means runs
    tagged under the old name are no longer found again.
    """
    from airflow.configuration import conf

    configured = conf.get("kfp_bridge", "instance_name", fallback=None) or os.environ.get(INSTANCE_ENV)
    if configured and configured.strip():
        return configured.strip()
    base_url = conf.get("api", "base_url", fallback="") or ""
    parts = urlsplit(base_url) if "://" in base_url else None
    if parts is None or not parts.hostname or parts.hostname in _LOOPBACK or parts.hostname.startswith("127."):
        return "default"
    return parts.netloc


def _digest(instance: str, dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    identity = json.dumps([instance, dag_id, task_id, run_id, map_index], ensure_ascii=False)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TaskIdentity:
    """One Airflow task instance as the bridge tags its KFP runs."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    instance: str = "default"

    @property
    def tag(self) -> str:
        fields = [self.instance, self.dag_id, self.task_id, str(self.map_index), self.run_id]
        digest = _digest(self.instance, self.dag_id, self.task_id, self.run_id, self.map_index)
        return "/".join([TAG_PREFIX, *(escape(value) for value in fields), digest])

    @property
    def legacy_tag(self) -> str:
        """The tag kfp-bridge wrote before 0.3, so a run created by the previous version is still found."""
        return (
            f"{LEGACY_PREFIX}:dag_id={self.dag_id}/task_id={self.task_id}/run_id={self.run_id}/"
            f"map_index={self.map_index}"
        )


def task_identity(dag_id: str, task_id: str, run_id: str, map_index: int | None, instance: str | None = None) -> TaskIdentity:
    index = -1 if map_index is None or map_index < 0 else map_index
    return TaskIdentity(dag_id, task_id, run_id, index, instance if instance is not None else instance_name())


def run_tag(dag_id: str, task_id: str, run_id: str, map_index: int | None, instance: str | None = None) -> str:
    return task_identity(dag_id, task_id, run_id, map_index, instance).tag


def parse_run_tag(text: str | None) -> dict[str, str] | None:
    """The parts of a tag (``instance``, ``dag_id``, ``task_id``, ``run_id``, ``map_index``), or None
    when ``text`` is not one of ours (a legacy tag parses too, without ``instance``)."""
    if not text:
        return None
    if text.startswith(f"{LEGACY_PREFIX}:"):
        return _parse_legacy(text)
    parts = text.split("/")
    if len(parts) != 7 or parts[0] != TAG_PREFIX:
        return None
    try:
        instance, dag_id, task_id, map_index, run_id = (unescape(part) for part in parts[1:6])
        index = int(map_index)
    except (ValueError, UnicodeDecodeError):
        return None
    if _digest(instance, dag_id, task_id, run_id, index) != parts[6]:
        return None
    return {"instance": instance, "dag_id": dag_id, "task_id": task_id, "run_id": run_id, "map_index": map_index}


def _parse_legacy(text: str) -> dict[str, str] | None:
    body = text[len(LEGACY_PREFIX) + 1 :]
    keys = ["dag_id", "task_id", "run_id", "map_index"]
    parts: dict[str, str] = {}
    # run ids may contain "/": split on the keys.
    for index, key in enumerate(keys):
        start = body.find(f"{key}=")
        if start < 0:
            return None
        value_start = start + len(key) + 1
        end = body.find(f"/{keys[index + 1]}=", value_start) if index + 1 < len(keys) else len(body)
        parts[key] = body[value_start:end]
    return parts
