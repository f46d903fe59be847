"""scripts/check_airflow_secrets.py, the check docker compose's airflow-init runs before anything starts.

Run here as a plain process (as on a laptop, or as airflow-init runs it in the image), with an empty
environment so nothing from this machine leaks in: the unedited .env.example is refused with the
generation hint; values made by the very commands that hint prints pass.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_airflow_secrets.py"
SECRETS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "POSTGRES_PASSWORD")
FERNET = "AIRFLOW__CORE__FERNET_KEY"


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # sys.executable, but outside any venv semantics: the script needs the standard library only.
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), *args], env=env or {}, capture_output=True, text=True, timeout=30
    )


def env_file(tmp_path: Path, values: dict[str, str]) -> Path:
    """.env.example with the secrets replaced, everything else (connections, comments) as shipped."""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={values[key]}" if key in values else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def hint_commands(stderr: str) -> dict[str, str]:
    """The command the hint prints for the random secrets and for the Fernet key."""
    random = re.search(r"POSTGRES_PASSWORD: (.+)\n\s+\(without openssl: (.+)\)", stderr)
    fernet = re.search(rf"{FERNET}: (.+)\n", stderr)
    assert random and fernet, stderr
    return {"openssl": random.group(1), "python": random.group(2), "fernet": fernet.group(1)}


def run_shell(command: str) -> str:
    args = shlex.split(command)
    args[0] = sys.executable if args[0] == "python3" else args[0]
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def test_unedited_env_example_is_refused_with_the_generation_hint() -> None:
    result = check("--env-file", str(ROOT / ".env.example"))
    assert result.returncode == 1, result
    assert "Refusing to start Airflow" in result.stderr and result.stdout == ""
    for name in SECRETS:
        assert f"{name} is a placeholder or a known value (contains 'change-me')" in result.stderr
    assert f"{FERNET} is not url-safe base64" in result.stderr
    commands = hint_commands(result.stderr)
    assert commands["openssl"] == "openssl rand -hex 32"
    assert "python3 scripts/check_airflow_secrets.py --generate" in result.stderr
    assert "change-me" not in result.stderr.replace("(contains 'change-me')", ""), "values are never echoed"


def test_values_from_the_hinted_commands_pass(tmp_path: Path) -> None:
    commands = hint_commands(check("--env-file", str(ROOT / ".env.example")).stderr)
    random_command = commands["openssl"] if shutil.which("openssl") else commands["python"]
    values = {name: run_shell(random_command) for name in SECRETS}
    values[FERNET] = run_shell(commands["fernet"])
    assert len(base64.urlsafe_b64decode(values[FERNET])) == 32
    result = check("--env-file", str(env_file(tmp_path, values)))
    assert result.returncode == 0, result.stderr
    assert "ok." in result.stdout and not any(value in result.stdout for value in values.values())
    # The same values in the environment: what airflow-init sees (compose passes .env into it).
    assert check(env=values).returncode == 0
    # The python fallback for the random secrets makes usable values too.
    assert check(env={**values, "POSTGRES_PASSWORD": run_shell(commands["python"])}).returncode == 0


def test_generate_prints_a_set_that_passes(tmp_path: Path) -> None:
    generated = check("--generate")
    assert generated.returncode == 0
    values = dict(line.split("=", 1) for line in generated.stdout.splitlines())
    assert set(values) == {*SECRETS, FERNET}
    assert check("--env-file", str(env_file(tmp_path, values))).returncode == 0
    assert check("--generate").stdout != generated.stdout, "fresh values every time"


GOOD = {name: os.urandom(32).hex() for name in SECRETS} | {
    FERNET: base64.urlsafe_b64encode(os.urandom(32)).decode()
}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("AIRFLOW__API_AUTH__JWT_SECRET", "", "AIRFLOW__API_AUTH__JWT_SECRET is not set"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "short-but-random-Xq9", "is 20 characters long; use at least 32"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "ab" * 32, "looks patterned"),
        ("AIRFLOW__API__SECRET_KEY", "my-super-secret-key-for-airflow-123456", "contains 'secret'"),
        ("POSTGRES_PASSWORD", "airflow", "contains 'airflow'"),  # the official compose file's default
        # Fixed bytes, not os.urandom: parameter ids must be equal on every pytest-xdist worker.
        (FERNET, base64.urlsafe_b64encode(bytes.fromhex("9b1e8f3a6c2d4e5f7a8b9c0d1e2f3a4b")).decode(), "decodes to 16 bytes"),
        (FERNET, base64.urlsafe_b64encode(bytes(32)).decode(), "is not random"),
        (FERNET, "not base64 at all, has spaces and !!", "is not url-safe base64"),
        (FERNET, None, f"{FERNET} is not set"),
    ],
)
def test_each_bad_secret_is_named(name: str, value: str | None, says: str) -> None:
    env = dict(GOOD)
    if value is None:
        del env[name]
    else:
        env[name] = value
    result = check(env=env)
    assert result.returncode == 1 and says in result.stderr, result.stderr
    assert result.stderr.count("\n  - ") == 1, "only the bad one is reported"
    assert check(env=GOOD).returncode == 0


def test_missing_env_file_names_the_fix(tmp_path: Path) -> None:
    result = check("--env-file", str(tmp_path / ".env"))
    assert result.returncode == 1 and "cp .env.example .env" in result.stderr
