"""Start, probe and stop KServe model server processes (``model_server.py`` under ``.venv-kserve``)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).resolve().with_name("model_server.py")
KSERVE_PYTHON_ENV = "KFP_BRIDGE_KSERVE_PYTHON"
LOAD_TIMEOUT_S = float(os.environ.get("KFP_BRIDGE_MODEL_LOAD_TIMEOUT", "180"))


class KServeEnvironmentMissing(RuntimeError):
    pass


def kserve_python() -> str:
    """The interpreter of the separate KServe venv (kserve pins psutil<6, Airflow needs >=6.1)."""
    configured = os.environ.get(KSERVE_PYTHON_ENV)
    path = Path(configured) if configured else REPO_ROOT / ".venv-kserve" / "bin" / "python"
    if not path.exists():
        hint = f"${KSERVE_PYTHON_ENV}={configured}" if configured else str(path)
        raise KServeEnvironmentMissing(
            f"the KServe model server interpreter {hint} does not exist; run `make venv-kserve` in the "
            f"repository root (or point {KSERVE_PYTHON_ENV} at a python with kserve 0.21 installed)"
        )
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ModelLoadError(Exception):
    pass


class ModelServerProcess:
    """One model server for one revision.

    :param model_name: the name requests use (``/v1/models/<name>:predict``): the InferenceService name.
    :param storage_uri: ``file://`` URI or local path of ``model.joblib`` or its folder.
    :param log_path: stdout and stderr go here (a pipe could fill up and block the server).
    """

    def __init__(self, model_name: str, storage_uri: str, log_path: Path):
        self.model_name = model_name
        self.storage_uri = storage_uri
        self.log_path = log_path
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        """Spawn and wait until the model answers ready; raise ModelLoadError with KServe's message."""
        for attempt in range(3):
            try:
                await self._start_once()
                return
            except _PortTaken:
                log.info(
                    "port %s was taken before the model server bound it; retrying (%d)", self.port, attempt
                )
        raise ModelLoadError(f"could not bind a free port for the model server of {self.model_name}")

    async def _start_once(self) -> None:
        self.port = free_port()
        failure_file = self.log_path.with_suffix(".failure.json")
        failure_file.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        with open(self.log_path, "ab") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                kserve_python(),
                "-I",
                str(SCRIPT),
                "--model-name",
                self.model_name,
                "--storage-uri",
                self.storage_uri,
                "--http-port",
                str(self.port),
                "--failure-file",
                str(failure_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                cwd=str(self.log_path.parent),
                env=env,
                start_new_session=True,  # a Ctrl-C meant for the stand-in must not skip our ordered stop
                preexec_fn=_die_with_parent,
            )
        deadline = asyncio.get_running_loop().time() + LOAD_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self.proc.returncode is not None:
                    raise self._exit_error(failure_file)
                try:
                    resp = await client.get(f"{self.url}/v2/models/{self.model_name}/ready")
                    if resp.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    await self.stop()
                    raise ModelLoadError(
                        f"model server for {self.storage_uri!r} was not ready after {LOAD_TIMEOUT_S:.0f}s; "
                        f"see {self.log_path} (raise KFP_BRIDGE_MODEL_LOAD_TIMEOUT on a slow machine)"
                    )
                try:
                    await asyncio.wait_for(self.proc.wait(), 0.2)
                except TimeoutError:
                    pass

    def _exit_error(self, failure_file: Path) -> Exception:
        if failure_file.exists():
            return ModelLoadError(json.loads(failure_file.read_text())["message"])
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        if "address already in use" in tail.lower():
            return _PortTaken()
        last = [line for line in tail.splitlines() if line.strip()][-1:] or ["(no output)"]
        return ModelLoadError(
            f"model server exited with code {self.proc.returncode if self.proc else '?'}: {last[0]} (log: {self.log_path})"
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            log.warning("model server pid %s ignored SIGTERM for %.0fs; killing it", proc.pid, grace_s)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()

    def kill_now(self) -> None:
        """Synchronous last resort for interpreter exit paths that cannot await."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _PortTaken(Exception):
    pass


def _die_with_parent() -> None:
    """Linux: SIGTERM the model server if the stand-in dies without stopping it (e.g. SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
