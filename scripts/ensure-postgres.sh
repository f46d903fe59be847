#!/usr/bin/env bash
# PostgreSQL server binaries for the local Airflow stacks (tests, make up, make chaos), from Debian's
# packages. Idempotent and quiet when present; installs them otherwise (needs root, as CI has).
# Only the binaries are used: each stack starts its own server on a free port (kfp_bridge/local/postgres.py).
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-postgres: no PostgreSQL server under /usr/lib/postgresql/*/bin and this is not root;" >&2
    echo "  install it with: sudo apt-get install -y postgresql" >&2
    exit 1
fi

echo "ensure-postgres: installing postgresql (Debian package)"
export DEBIAN_FRONTEND=noninteractive
# Another installer (e.g. ensure-chromium) may hold the dpkg lock for a moment.
for attempt in 1 2 3 4 5; do
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; then
        break
    fi
    [ "$attempt" -eq 5 ] && exit 1
    sleep 10
done
# The package may start a default cluster on 5432; the stacks never use it.
ls /usr/lib/postgresql/*/bin/postgres
