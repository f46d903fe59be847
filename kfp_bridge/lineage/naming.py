"""OpenLineage dataset names for model locations and InferenceServices (pure, no OpenLineage import).

A training's output and a rollout's input are the same dataset only if both name the same URI the
same way, so both go through :func:`model_dataset_name`. Names follow the OpenLineage naming spec
(https://openlineage.io/docs/spec/naming) and Airflow's own Asset translation: a local path is
namespace ``file`` with the absolute path as name; an object store is ``<scheme>://<bucket>`` with
the key as name. KServe's other schemes (``pvc://``, ``https://``) follow the object-store form.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit


class DatasetName(NamedTuple):
    namespace: str
    name: str


def model_dataset_name(uri: str | None) -> DatasetName | None:
    """The dataset a model URI names, or None when it is not an absolute path or a URI with a host.

    ``/m/iris`` and ``file:///m/iris/`` name the same dataset; a trailing slash never matters
    (KServe loads a folder either way).
    """
    if not isinstance(uri, str) or not uri.strip():
        return None
    uri = uri.strip()
    if uri.startswith("/"):
        return DatasetName("file", _without_trailing_slash(uri))
    parts = urlsplit(uri)
    if not parts.scheme:
        return None  # a relative path: where it points depends on who reads it
    if parts.scheme == "file":
        path = parts.path if parts.path.startswith("/") else "/" + parts.path
        namespace = f"file://{parts.netloc}" if parts.netloc else "file"
        return DatasetName(namespace, _without_trailing_slash(path))
    if not parts.netloc:
        return None
    name = _without_trailing_slash(parts.path).lstrip("/") or "/"
    return DatasetName(f"{parts.scheme}://{parts.netloc}", name)


def inference_service_dataset_name(cluster: str, namespace: str, name: str) -> DatasetName:
    """An InferenceService as a dataset: ``kserve://<API server host:port>``, ``<namespace>/<name>``.

    The cluster is part of the namespace so the same service name in two clusters stays apart.
    """
    return DatasetName(f"kserve://{cluster}", f"{namespace}/{name}")


def api_server_authority(host: str | None) -> str | None:
    """``host:port`` of a Kubernetes API server URL (``https://10.0.0.1:443`` -> ``10.0.0.1:443``)."""
    if not isinstance(host, str) or not host:
        return None
    parts = urlsplit(host if "://" in host else f"https://{host}")
    return parts.netloc or None


def _without_trailing_slash(path: str) -> str:
    stripped = path.rstrip("/")
    return stripped or "/"
