"""The provider installs beside a current production Airflow (issue 15, acceptance 0).

Resolves the provider's runtime dependencies together with the official image's extras and the
newest cncf-kubernetes with the real resolver (uv pip compile, against the package registry), and
shows that the kfp SDK, had it stayed a runtime dependency, would make that resolution fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = "apache-airflow[amazon,celery,cncf-kubernetes,google,openlineage,postgres,redis,standard]==3.3.2"
CNCF = "apache-airflow-providers-cncf-kubernetes==10.25.0"


def _uv() -> str:
    uv = ROOT / ".tools" / "bin" / "uv"
    found = str(uv) if uv.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv not found: run `make venv` (it installs .tools/bin/uv)")
    return found


def _runtime_dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _compile(tmp_path: Path, requirements: list[str]) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "requirements.in"
    source.write_text("\n".join(requirements) + "\n")
    return subprocess.run(
        [_uv(), "pip", "compile", "--no-config", "--python-version", "3.11", "--no-header", str(source)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.MULTILINE))


def test_runtime_dependencies_resolve_with_current_airflow_and_cncf_kubernetes(tmp_path):
    runtime = _runtime_dependencies()
    assert not [dep for dep in runtime if re.match(r"kfp\s*([<>=!~;\[]|$)", dep)], "the kfp SDK is a runtime dependency"
    done = _compile(tmp_path, [AIRFLOW, CNCF, *runtime])
    assert done.returncode == 0, done.stderr[-2000:]
    pins = _pins(done.stdout)
    assert pins["apache-airflow-providers-cncf-kubernetes"] == "10.25.0"
    assert int(pins["kubernetes"].split(".")[0]) >= 36
    assert "kfp" not in pins and "kfp-server-api" in pins


def test_the_kfp_sdk_would_not_resolve_there(tmp_path):
    done = _compile(tmp_path, [AIRFLOW, CNCF, "kfp==2.17.3"])
    assert done.returncode != 0
    assert "kubernetes" in done.stderr


def test_the_lock_is_on_current_cncf_kubernetes_and_kubernetes():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {package["name"]: package["version"] for package in lock["package"]}
    cncf = tuple(int(part) for part in versions["apache-airflow-providers-cncf-kubernetes"].split(".")[:2])
    assert cncf >= (10, 25)
    assert int(versions["kubernetes"].split(".")[0]) >= 36
