"""``kfp-bridge local kube`` options reach the stand-in (run for real, checked by what it writes)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kfp_bridge.cli import build_parser
from kfp_bridge.local.launch import free_port


def test_kube_options_parse_to_server_options(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("{}")
    args = build_parser().parse_args(
        ["local", "kube", "--port", "1", "--state-dir", "s", "--domain", "models.test", "--watch-window", "5",
         "--bookmark-interval", "1", "--progress-deadline", "30", "--kfp-state-dir", "k", "--rbac-policy", str(policy)]
    )
    assert (args.domain, args.watch_window, args.bookmark_interval, args.progress_deadline) == ("models.test", 5.0, 1.0, 30)
    assert (args.kfp_state_dir, args.rbac_policy, args.ingress_port) == ("k", str(policy), None)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["local", "kfp", "--port", "70000", "--state-dir", "s"], "70000 is not a port number: give 1-65535"),
        (["local", "kube", "--port", "http", "--state-dir", "s"], "'http' is not a port number"),
        (["local", "kfp", "--port", "0", "--state-dir", "s"], "0 is not a port number"),
        (["local", "kube", "--port", "1", "--state-dir", "s", "--ingress-port", "65536"], "65536 is not a port number"),
        (["local", "up", "--kfp-port", "-1"], "-1 is not a port number"),
        (["local", "kfp", "--port", "1", "--state-dir", "s", "--token-file", "/nope/token"], "/nope/token: no such file"),
        (["local", "kube", "--port", "1", "--state-dir", "s", "--rbac-policy", "/nope/p.yaml"], "/nope/p.yaml: no such file"),
        (["local", "kfp", "--port", "1", "--state-dir", "s", "--multi-user", "--users", "/nope/u"], "/nope/u: no such file"),
    ],
)
def test_bad_ports_and_missing_files_are_refused_before_anything_starts(argv, says, capsys) -> None:
    """``--port 70000`` used to hang in the server and a missing token file to 401 every request."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err


def test_domain_and_ingress_port_are_used_by_the_running_stand_in(tmp_path: Path) -> None:
    ingress_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfp_bridge.cli", "local", "kube", "--port", str(free_port()), "--state-dir",
         str(tmp_path), "--domain", "models.test", "--ingress-port", str(ingress_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "ingress.json").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        ingress = json.loads((tmp_path / "ingress.json").read_text())
        assert ingress["domain"] == "models.test"
        assert ingress["url"].endswith(f":{ingress_port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
