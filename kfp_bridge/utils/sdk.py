"""Where the kfp SDK lives: in this interpreter, or in a separate one named by configuration.

The provider's runtime does not depend on the kfp SDK (it pins kubernetes<31 and exact
urllib3/requests, which would downgrade cncf-kubernetes in every Airflow it shares). Only compiling
a ``module:function`` / ``file.py`` pipeline needs it. When this interpreter cannot import kfp, the
compile runs in a subprocess of the SDK's own Python, named by ``KFP_BRIDGE_SDK_PYTHON`` or Airflow
config ``[kfp_bridge] sdk_python`` (env ``AIRFLOW__KFP_BRIDGE__SDK_PYTHON``). That Python needs only
``kfp``: this package's source folder is put on its ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

SDK_PYTHON_ENV = "KFP_BRIDGE_SDK_PYTHON"
AIRFLOW_SDK_PYTHON_ENV = "AIRFLOW__KFP_BRIDGE__SDK_PYTHON"
COMPILE_TIMEOUT_SECONDS = 300.0
# exit code of kfp_bridge.utils.compile_worker for a source the user must fix (its message on stderr)
EXIT_BAD_SOURCE = 2

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

SETUP_HINT = (
    "the kfp SDK is not installed in this Python environment (on purpose: it pins kubernetes<31); "
    "either commit the compiled YAML (`kfp-bridge compile SRC`) and pass its path, or install the SDK "
    "in its own venv (`python -m venv /opt/kfp-sdk && /opt/kfp-sdk/bin/pip install 'kfp>=2.17.3,<2.18'`) "
    f"and set {SDK_PYTHON_ENV}=/opt/kfp-sdk/bin/python (or [kfp_bridge] sdk_python in airflow.cfg)"
)


class SdkUnavailableError(RuntimeError):
    """Compiling needs the kfp SDK and neither this interpreter nor a configured one has it."""


def sdk_in_process() -> bool:
    return importlib.util.find_spec("kfp") is not None and importlib.util.find_spec("kfp.compiler") is not None


def configured_sdk_python() -> str | None:
    """The SDK interpreter from the environment, checked to exist; None when none is configured."""
    python = os.environ.get(SDK_PYTHON_ENV) or os.environ.get(AIRFLOW_SDK_PYTHON_ENV)
    if not python:
        return None
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        source = SDK_PYTHON_ENV if os.environ.get(SDK_PYTHON_ENV) else AIRFLOW_SDK_PYTHON_ENV
        raise SdkUnavailableError(f"{source}={python!r} is not an executable file; point it at the SDK venv's python")
    return python


def _user_paths() -> list[str]:
    # The DAG folder and the like, not this environment's site-packages or stdlib: the SDK venv must
    # resolve kfp, kubernetes and protobuf from its own packages.
    skip = {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry) or entry in skip or "site-packages" in entry:
            continue
        if os.path.abspath(entry).startswith((sys.base_prefix + os.sep, sys.prefix + os.sep)):
            continue
        paths.append(entry)
    return paths


def compile_in_subprocess(python: str, reference: str, package_path: str, *, cwd: str | None = None) -> None:
    """Compile ``reference`` (as :func:`resolve_pipeline_source` accepts it) with ``python``.

    :raises ValueError: the source is unusable (the worker's message, naming the fix).
    :raises SdkUnavailableError: the interpreter cannot import kfp or crashed.
    """
    env = dict(os.environ)
    path = [_PACKAGE_ROOT, *(p for p in _user_paths() if p != _PACKAGE_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(path)
    try:
        done = subprocess.run(
            [python, "-m", "kfp_bridge.utils.compile_worker", reference, package_path],
            capture_output=True, text=True, timeout=COMPILE_TIMEOUT_SECONDS, env=env, cwd=cwd, check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise SdkUnavailableError(f"compiling {reference} with {python} took over {COMPILE_TIMEOUT_SECONDS:.0f} s") from err
    if done.returncode == 0:
        return
    message = (done.stderr or done.stdout).strip().splitlines()
    last = message[-1] if message else f"exit status {done.returncode}"
    if done.returncode == EXIT_BAD_SOURCE:
        raise ValueError(last)
    if "No module named 'kfp'" in (done.stderr or ""):
        raise SdkUnavailableError(f"{python} cannot import kfp; install it there: {python} -m pip install 'kfp>=2.17.3,<2.18'")
    raise SdkUnavailableError(f"compiling {reference} with {python} failed: {last}")
