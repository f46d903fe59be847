"""The throwaway PostgreSQL server behind the local Airflow stacks (kfp_bridge/local/postgres.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
import pytest

from kfp_bridge.local import postgres


def _psql(server: postgres.PostgresServer, sql: str) -> str:
    return subprocess.run(
        [str(server.bin / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", postgres.DB_USER,
         "-d", "postgres", "-tAc", sql],
        check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": postgres.DB_PASSWORD},
    ).stdout.strip()


def test_template_is_built_once_and_each_server_gets_a_private_copy(tmp_path: Path) -> None:
    migrations: list[str] = []

    def migrate(url: str) -> None:
        migrations.append(url)
        server_port = int(url.rsplit(":", 1)[1].split("/")[0])
        subprocess.run(
            [str(postgres.bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(server_port), "-U", postgres.DB_USER,
             "-d", postgres.DB_NAME, "-c", "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('migrated')"],
            check=True, capture_output=True, env={**os.environ, "PGPASSWORD": postgres.DB_PASSWORD},
        )

    template = postgres.template_cluster(tmp_path / "cache", migrate)
    assert postgres.template_cluster(tmp_path / "cache", migrate) == template
    assert len(migrations) == 1 and migrations[0].startswith("postgresql+psycopg2://airflow:")

    first = postgres.server_from_template(template)
    second = postgres.server_from_template(template)
    try:
        first.start()
        second.start()
        assert first.port != second.port and first.data_dir != second.data_dir
        query = "SELECT note FROM marker"
        assert subprocess.run(
            [str(first.bin / "psql"), "-h", "127.0.0.1", "-p", str(first.port), "-U", postgres.DB_USER,
             "-d", postgres.DB_NAME, "-tAc", query],
            check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": postgres.DB_PASSWORD},
        ).stdout.strip() == "migrated"
        # Password auth on loopback only: a wrong password is refused.
        wrong = subprocess.run(
            [str(first.bin / "psql"), "-h", "127.0.0.1", "-p", str(first.port), "-U", postgres.DB_USER,
             "-d", postgres.DB_NAME, "-tAc", "SELECT 1"],
            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "not-it"},
        )
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
        assert _psql(first, "SHOW listen_addresses") == "127.0.0.1"
        if os.geteuid() == 0:  # PostgreSQL refuses root; the Debian 'postgres' user runs it
            assert psutil.Process(first.process.pid).username() == "postgres"
    finally:
        pid = first.process.pid if first.process else None
        postgres.remove(first)
        postgres.remove(second)
    assert not first.data_dir.exists() and not second.data_dir.exists()
    assert pid is None or not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_missing_binaries_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFP_BRIDGE_PG_BIN", str(tmp_path))
    with pytest.raises(postgres.PostgresUnavailable, match=r"apt-get install -y postgresql"):
        postgres.bin_dir()
