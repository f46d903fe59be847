"""``v1`` Pods: the Standard-mode predictor pods the controller runs, plus the KFP stand-in's
executor pods (read from ``<kfp-state-dir>/pods/<namespace>/<pod>.json`` with the ``main``
container's log in ``<pod>.main.log``), served read-only with ``pods/log``.

Only the controller's pods can be watched (the KFP stand-in's pods are files written by another
process); list, get and log cover both.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp_bridge.local.kube import errors
from kfp_bridge.local.kube.store import DerivedObjects, WatchEvent


class PodSource:
    """:param owned: the controller's pods; :param kfp_state_dir: the KFP stand-in's state dir or None;
    :param logs_dir: where the controller's model server logs are (``<dir>/<ns>/<revision>.log``)."""

    kind, api_version, resource = "Pod", "v1", "pods"

    def __init__(self, owned: DerivedObjects, kfp_state_dir: Path | None, logs_dir: Path):
        self.owned = owned
        self.kfp_dir = kfp_state_dir / "pods" if kfp_state_dir else None
        self.logs_dir = logs_dir

    # Watch support is the controller's pods.
    @property
    def rv(self) -> int:
        return self.owned.rv

    @property
    def watchers(self) -> set:
        return self.owned.watchers

    def events_since(self, rv: int) -> list[WatchEvent]:
        return self.owned.events_since(rv)

    def _kfp_pods(self, ns: str | None) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        if self.kfp_dir is None or not self.kfp_dir.is_dir():
            return found
        folders = [self.kfp_dir / ns] if ns else [p for p in self.kfp_dir.iterdir() if p.is_dir()]
        for folder in folders:
            for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                try:
                    pod = json.loads(file.read_text())
                except (OSError, ValueError):
                    continue  # being written: the next list sees it
                meta = pod.setdefault("metadata", {})
                meta.setdefault("name", file.stem)
                meta.setdefault("namespace", folder.name)
                meta.setdefault("resourceVersion", str(self.rv))
                pod.setdefault("apiVersion", "v1")
                pod.setdefault("kind", "Pod")
                found[(folder.name, meta["name"])] = pod
        return found

    def list(self, ns: str | None, predicate: Callable[[dict[str, Any]], bool] = lambda o: True) -> list[dict[str, Any]]:
        pods = {**self._kfp_pods(ns), **{k: copy.deepcopy(v) for k, v in self.owned.objects.items() if ns is None or k[0] == ns}}
        return [pods[k] for k in sorted(pods) if predicate(pods[k])]

    def get(self, ns: str, name: str) -> dict[str, Any]:
        if (ns, name) in self.owned.objects:
            return self.owned.get(ns, name)
        pod = self._kfp_pods(ns).get((ns, name))
        if pod is None:
            raise errors.not_found(name, group="", plural="pods")
        return pod

    def log(self, ns: str, name: str, container: str | None, tail: int | None) -> str:
        pod = self.get(ns, name)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if container is None:
            if len(containers) > 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: {containers}"
                )
            container = containers[0] if containers else "main"
        elif containers and container not in containers:
            raise errors.bad_request(
                f"container {container} is not valid for pod {name}"
            )
        if (ns, name) in self.owned.objects:
            path = self.logs_dir / ns / f"{name.rsplit('-', 1)[0]}.log"
        else:
            assert self.kfp_dir is not None
            path = self.kfp_dir / ns / f"{name}.{container}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:] if tail > 0 else [])
        return text
