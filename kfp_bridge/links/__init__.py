"""The provider's extra links, and the descriptor operators declare them with.

A DAG file imports the operators at parse time; the links need ``BaseOperatorLink`` (Airflow's
attrs-built module, ~1.3 ms to import), which only serializing the DAG and the UI read. So an
operator names its links by import path and they are built on first read.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

KFP_RUN_LINK = "kfp_bridge.links.kfp.KfpRunLink"
INFERENCE_SERVICE_LINK = "kfp_bridge.links.kserve.InferenceServiceLink"


def _link_class(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def persist_url(context: Any, link: str, url: str) -> None:
    """Store ``url`` for the button of ``link`` (an import path above), importing it only now: at
    execute time, never at parse."""
    _link_class(link).persist(context, url)


class LazyLinks:
    """``operator_extra_links = LazyLinks(KFP_RUN_LINK)``: the link instances,
    built on the first read, on the class (a ``MappedOperator`` reads ``operator_class.operator_extra_links``)
    and on an instance alike."""

    def __init__(self, *paths: str) -> None:
        self._paths = paths
        self._links: tuple[Any, ...] | None = None

    def __get__(self, instance: object, owner: type | None = None) -> tuple[Any, ...]:
        if self._links is None:
            self._links = tuple(_link_class(path)() for path in self._paths)
        return self._links
