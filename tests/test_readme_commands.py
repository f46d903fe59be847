"""Every command the README shows is exercised by a test, by `make test` or is `make demo` itself.

Commands come from the README's ``bash`` blocks and its inline `make …` / `kfp-bridge …` mentions.
Each is matched to a checker; a command no checker knows fails, so a new README command needs a test.
`kfp-bridge local up` runs here for real; the others point at the test that runs them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.deploy.test_documented_commands import check_compose, check_make

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAKEFILE = (ROOT / "Makefile").read_text()


def readme_commands() -> list[str]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        commands += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    commands += re.findall(r"`((?:make|kfp-bridge) [^`]+)`", text)
    return sorted(set(commands))


def _recipe(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", MAKEFILE, re.MULTILINE)
    assert match, f"Makefile has no target {target}"
    return match.group(1)


def check_make_target(command: str) -> None:
    target = command.split()[1]
    if target == "test":
        assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI runs exactly this
    elif target == "demo":
        assert "kfp_bridge.demo" in _recipe("demo")  # `make demo` is its own check, run by hand
    elif target == "lint":
        # make test runs the same ruff command before the suite.
        assert _recipe("lint").strip() in _recipe("test")
    elif target == "compile-check":
        assert "compile --check dags/pipelines/iris.py" in _recipe("compile-check")
        assert '"--check"' in (ROOT / "tests" / "integration" / "test_example_pipeline.py").read_text()
    elif target == "bench":
        out = subprocess.run([sys.executable, "benchmarks/parse_time.py", "--samples", "1"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, check=True).stdout
        assert re.search(r"parse_ratio=\S+ .*imports_kfp=False imports_kubernetes=False", out), out
        for script in re.findall(r"benchmarks/\w+\.py", _recipe("bench")):
            if (ROOT / script).exists():
                subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, timeout=120, check=True)
    elif target in ("up", "down"):
        check_make("README.md", command)
    elif target == "chaos":
        # The suite itself is too slow for make test; its collection must work and the target run it.
        assert "tests/chaos" in _recipe("chaos")
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", "tests/chaos"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and re.search(r"\d+ tests? collected", out.stdout), out.stdout[-2000:]
    elif target == "e2e":
        # Too slow for make test (its own target): the marked tests must exist and the target select them.
        assert "-m e2e" in _recipe("e2e")
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", "-m", "e2e",
                              "--ignore=tests/chaos"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and re.search(r"\d+/\d+ tests? collected \(\d+ deselected\)", out.stdout), out.stdout[-2000:]
    else:
        raise AssertionError(f"no check for make {target}")


def check_local_server(command: str) -> None:
    service = command.split()[2]
    fixture = ROOT / "tests" / "fixtures" / f"{service}_stand_in.py"
    text = fixture.read_text()
    assert '"kfp_bridge.cli", "local"' in text or '"local",' in text, f"{fixture.name} starts `local {service}`"
    assert f'"{service}"' in text


def check_compile(command: str) -> None:
    if "--check" in command:  # the example pipeline's own test runs the command on iris.py
        assert '"--check"' in (ROOT / "tests" / "integration" / "test_example_pipeline.py").read_text()
    else:  # compiling next to the source: tests/unit/utils/test_compiling.py
        assert "compile_sources(" in (ROOT / "tests" / "unit" / "utils" / "test_compiling.py").read_text()


CHECKERS: list[tuple[str, Callable[[str], None]]] = [
    (r"^make [\w-]+$", check_make_target),
    (r"^(\.venv/bin/)?kfp-bridge local (kfp|kube) ", check_local_server),
    (r"^(\.venv/bin/)?kfp-bridge local up$", lambda command: None),  # run for real below
    (r"^(\.venv/bin/)?kfp-bridge compile ", check_compile),
    (r"^(docker compose|cp \.env\.example)", lambda command: check_compose("README.md", command)),
]


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_is_covered(command: str):
    matches = [check for pattern, check in CHECKERS if re.search(pattern, command)]
    assert matches, f"README command `{command}` has no test; add a checker in {Path(__file__).name}"
    matches[0](command)


def test_readme_shows_the_two_commands():
    assert {"make demo", "make test"} <= set(readme_commands())


def test_local_up_serves_both_stand_ins_with_the_printed_connections(tmp_path):
    """`kfp-bridge local up`: both stand-ins answer with the token, the printed lines work, Ctrl-C stops all."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfp_bridge.cli", "local", "up", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        give_up = time.monotonic() + 180
        while time.monotonic() < give_up:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "Ctrl-C stops both" in line:
                break
        output = "\n".join(lines)
        assert "Ctrl-C stops both" in output, output
        conns = dict(re.findall(r"export (AIRFLOW_CONN_\w+)='(.*)'", output))
        kfp = json.loads(conns["AIRFLOW_CONN_KFP_DEFAULT"])
        kube = json.loads(conns["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
        token = Path(kfp["extra"]["token_path"]).read_text().strip()
        headers = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{kfp['host']}/apis/v2beta1/healthz", headers=headers, timeout=10).status_code == 200
        assert httpx.get(f"{kfp['host']}/apis/v2beta1/runs", timeout=10).status_code == 401
        kubeconfig = Path(kube["extra"]["kube_config_path"])
        assert kubeconfig.is_file() and token in kubeconfig.read_text()
        kube_url = re.search(r"Kubernetes API: (\S+)", output).group(1)
        assert kube_url.startswith("https://")
        # The stand-in's own CA (the kubeconfig's certificate-authority-data) verifies it.
        ca = ssl.create_default_context(cafile=str(kubeconfig.parent / "pki" / "ca.crt"))
        assert httpx.get(f"{kube_url}/version", headers=headers, timeout=10, verify=ca).status_code == 200
        assert kube["extra"]["ingress_address"].startswith("http://127.0.0.1:")
        assert token not in output  # the token stays in its file
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    time.sleep(0.5)
    alive = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert alive == []
