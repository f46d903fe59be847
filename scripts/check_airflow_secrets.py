#!/usr/bin/env python3
"""Refuse to start Airflow with placeholder, known or malformed secrets (docker compose's airflow-init).

    python3 scripts/check_airflow_secrets.py                    # the secrets in this process's environment
    python3 scripts/check_airflow_secrets.py --env-file .env    # the secrets in a compose .env file
    python3 scripts/check_airflow_secrets.py --generate         # print fresh values to paste into .env

Exit status 0 when every secret is usable, 1 with one line per problem and the commands that generate
good values. Values are never printed. Standard library only: it runs on a laptop before
`docker compose up` and inside the Airflow image, whichever Python is there.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import math
import os
import secrets
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

FERNET_KEY = "AIRFLOW__CORE__FERNET_KEY"
# Random strings: the JWT signing secret every component shares, the api-server's session secret, and
# the database password (compose puts it into the SQLAlchemy URL).
RANDOM_SECRETS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "POSTGRES_PASSWORD")
MIN_LENGTH = 32
MIN_BITS = 128.0
# Words of placeholders and documented examples; no random 32+ character value contains one.
KNOWN_WORDS = (
    "change-me",
    "changeme",
    "change_me",
    "placeholder",
    "example",
    "secret",
    "password",
    "airflow",
)

HEX_COMMAND = "openssl rand -hex 32"
HEX_COMMAND_PY = 'python3 -c "import secrets; print(secrets.token_hex(32))"'
FERNET_COMMAND = 'python3 -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
HINT = f"""Generate each value and put it in .env (never commit it):
  {", ".join(RANDOM_SECRETS)}: {HEX_COMMAND}
      (without openssl: {HEX_COMMAND_PY})
  {FERNET_KEY}: {FERNET_COMMAND}
      (the same as cryptography's Fernet.generate_key())
or print a complete set: python3 scripts/check_airflow_secrets.py --generate"""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker compose reads them (comments, blank lines and `export ` skipped, quotes stripped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def entropy_bits(value: str) -> float:
    """Shannon estimate of the bits in ``value`` (its character frequencies times its length)."""
    counts = Counter(value)
    return -sum(n * math.log2(n / len(value)) for n in counts.values())


def check_random(name: str, value: str | None) -> str | None:
    if not value:
        return f"{name} is not set."
    lowered = value.lower()
    known = next((word for word in KNOWN_WORDS if word in lowered), None)
    if known:
        return f"{name} is a placeholder or a known value (contains {known!r}): it must be random."
    if len(value) < MIN_LENGTH:
        return f"{name} is {len(value)} characters long; use at least {MIN_LENGTH} random characters."
    bits = entropy_bits(value)
    if bits < MIN_BITS:
        return (
            f"{name} looks patterned (~{bits:.0f} bits of entropy, need {MIN_BITS:.0f}): it must be random."
        )
    return None


def check_fernet(value: str | None) -> str | None:
    if not value:
        return f"{FERNET_KEY} is not set."
    try:
        key = base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return f"{FERNET_KEY} is not url-safe base64 (a Fernet key is 32 random bytes, base64-encoded)."
    if len(key) != 32:
        return f"{FERNET_KEY} decodes to {len(key)} bytes; a Fernet key is exactly 32 bytes, base64-encoded."
    if len(set(key)) < 16:  # e.g. 32 zero bytes: decodes, but is not a key
        return f"{FERNET_KEY} is not random ({len(set(key))} distinct bytes of 32)."
    return None


def problems(env: Mapping[str, str]) -> list[str]:
    found = [check_random(name, env.get(name)) for name in RANDOM_SECRETS]
    found.append(check_fernet(env.get(FERNET_KEY)))
    return [problem for problem in found if problem]


def generate() -> dict[str, str]:
    values = {name: secrets.token_hex(32) for name in RANDOM_SECRETS}
    values[FERNET_KEY] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--env-file", type=Path, help="read the secrets from this .env file instead of the environment"
    )
    parser.add_argument("--generate", action="store_true", help="print fresh values as .env lines and exit")
    args = parser.parse_args(argv)
    if args.generate:
        print("\n".join(f"{name}={value}" for name, value in generate().items()))
        return 0
    if args.env_file is not None and not args.env_file.is_file():
        print(f"{args.env_file} does not exist: cp .env.example .env, then set the secrets.", file=sys.stderr)
        return 1
    env = read_env_file(args.env_file) if args.env_file else os.environ
    found = problems(env)
    source = str(args.env_file) if args.env_file else "the environment"
    if found:
        print(f"Refusing to start Airflow: unusable secrets in {source}:", file=sys.stderr)
        print("\n".join(f"  - {problem}" for problem in found), file=sys.stderr)
        print(HINT, file=sys.stderr)
        return 1
    print(f"Airflow secrets in {source}: {', '.join((*RANDOM_SECRETS, FERNET_KEY))} ok.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
