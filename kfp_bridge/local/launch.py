"""Start the embedded stand-ins as subprocesses and wait until they answer (demo, ``local up``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class StandIn:
    """A running stand-in. For ``kube``: ``url`` is the HTTPS API (verify with ``ca_file``) and
    ``ingress_url`` the plain-HTTP ingress that routes InferenceService host names."""

    name: str
    url: str
    process: subprocess.Popen
    log_file: Path
    ca_file: Path | None = None
    ingress_url: str | None = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _kube_endpoints(state_dir: Path) -> tuple[str, str] | None:
    """(API URL, ingress URL) once the kube stand-in has written them (it does when listening)."""
    try:
        import yaml

        server = yaml.safe_load((state_dir / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
        ingress = json.loads((state_dir / "ingress.json").read_text())["url"]
        return server, ingress
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _wait_ready(
    stand_in: StandIn, probe_path: str, token: str | None, timeout: float, state_dir: Path | None = None
) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if stand_in.process.poll() is not None:
            raise RuntimeError(f"{stand_in.name} stand-in exited early:\n{stand_in.log_tail()}")
        if state_dir is not None and stand_in.ca_file is None:
            endpoints = _kube_endpoints(state_dir)
            if endpoints is None:
                time.sleep(0.2)
                continue
            stand_in.url, stand_in.ingress_url = endpoints
            stand_in.ca_file = state_dir / "pki" / "ca.crt"
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(stand_in.ca_file)) if stand_in.ca_file else True
        )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(stand_in.url + probe_path, headers=headers, timeout=2, verify=verify).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{stand_in.name} stand-in did not answer within {timeout:.0f}s:\n{stand_in.log_tail()}")


@contextlib.contextmanager
def run_stand_in(
    service: str,
    state_dir: Path,
    *,
    port: int | None = None,
    token_file: Path | None = None,
    admin: bool = False,
    host: str = "127.0.0.1",
    timeout: float = 90.0,
    kube_options: dict[str, str] | None = None,
) -> Iterator[StandIn]:
    """Run ``kfp-bridge local <service>`` (``kfp`` or ``kube``) until the block ends.

    :param kube_options: ``kube`` only: server options as ``KFP_BRIDGE_KUBE_<NAME>`` environment
        variables (``kfp_bridge.local.kube.server.Options``), e.g. ``{"KFP_STATE_DIR": ...}`` to serve
        the KFP stand-in's executor pods, ``{"RBAC_POLICY": ...}`` to enforce RBAC.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    args = [sys.executable, "-m", "kfp_bridge.cli", "local", service, "--host", host, "--port", str(port),
            "--state-dir", str(state_dir)]
    if token_file:
        args += ["--token-file", str(token_file)]
    if admin:
        args.append("--admin")
    log_file = state_dir / f"{service}-stand-in.log"
    with open(log_file, "ab") as log:
        env = {**os.environ, **{f"KFP_BRIDGE_KUBE_{k}": str(v) for k, v in (kube_options or {}).items()}}
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    stand_in = StandIn(service, f"http://{host}:{port}", process, log_file)
    try:
        token = token_file.read_text().strip() if token_file else None
        if service == "kfp":
            _wait_ready(stand_in, "/apis/v2beta1/healthz", token, timeout)
        else:
            for stale in ("kubeconfig", "ingress.json"):
                (state_dir / stale).unlink(missing_ok=True)  # from a previous run: wait for fresh ones
            _wait_ready(stand_in, "/version", token, timeout, state_dir=state_dir)
        yield stand_in
    finally:
        _stop(process)


def _stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
