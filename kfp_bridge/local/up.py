"""``kfp-bridge local up``: both stand-ins in the foreground, with the connection lines to use."""

from __future__ import annotations

import json
import secrets
import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kfp_bridge.local.launch import run_stand_in


def connection_lines(kfp_url: str, kubeconfig: Path, token_file: Path, ingress_url: str | None = None) -> list[str]:
    kfp = {"conn_type": "kfp", "host": kfp_url, "extra": {"token_path": str(token_file)}}
    kube = {"conn_type": "kubernetes", "extra": kubernetes_extra(kubeconfig, ingress_url)}
    return [
        f"export AIRFLOW_CONN_KFP_DEFAULT='{json.dumps(kfp)}'",
        f"export AIRFLOW_CONN_KUBERNETES_DEFAULT='{json.dumps(kube)}'",
    ]


def kubernetes_extra(kubeconfig: Path, ingress_url: str | None) -> dict[str, str]:
    """The ``kubernetes`` connection's extra for the stand-in: its kubeconfig (HTTPS, own CA) and the
    ingress that routes InferenceService host names (smoke tests send the Host header there)."""
    extra = {"kube_config_path": str(kubeconfig), "namespace": "default"}
    if ingress_url:
        extra["ingress_address"] = ingress_url
    return extra


def run_up(args: Any, stop: threading.Event | None = None) -> int:
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    token_file = Path(args.token_file).resolve() if args.token_file else state / "token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(24))
        token_file.chmod(0o600)
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ExitStack() as stack:
        kfp = stack.enter_context(
            run_stand_in("kfp", state / "kfp", port=args.kfp_port or None, token_file=token_file, host=args.host)
        )
        kube = stack.enter_context(
            run_stand_in("kube", state / "kube", port=args.kube_port or None, token_file=token_file, host=args.host,
                         kube_options={"KFP_STATE_DIR": str(state / "kfp")})
        )
        print(f"KFP API:        {kfp.url}")
        print(f"Kubernetes API: {kube.url} (kubeconfig {state / 'kube' / 'kubeconfig'})")
        print("Connections for Airflow:")
        for line in connection_lines(kfp.url, state / "kube" / "kubeconfig", token_file, kube.ingress_url):
            print(f"  {line}")
        print("Ctrl-C stops both.", flush=True)
        stop.wait()
    return 0
