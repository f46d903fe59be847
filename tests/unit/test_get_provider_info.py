from __future__ import annotations

import importlib

from kfp_bridge.get_provider_info import get_provider_info


def _dotted_paths(info: dict) -> list[str]:
    paths: list[str] = []
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            paths.extend(entry["python-modules"])
    paths.extend(c["hook-class-name"] for c in info["connection-types"])
    paths.extend(info.get("extra-links", []))
    return paths


def test_every_listed_path_imports():
    info = get_provider_info()
    paths = _dotted_paths(info)
    assert len(paths) >= 10
    for path in paths:
        try:
            importlib.import_module(path)
        except ModuleNotFoundError:
            module, _, attr = path.rpartition(".")
            assert hasattr(importlib.import_module(module), attr), path


def test_airflow_sees_the_provider():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "kfp-bridge" in manager.providers
    assert "kfp" in manager.hooks
