"""A real, isolated Airflow 3 (PostgreSQL + LocalExecutor) for integration tests and local use.

``AirflowStack`` configures Airflow only through environment variables (plus an empty
``airflow.cfg`` so no service races to generate one), starts its own PostgreSQL from a migrated
template (:mod:`kfp_bridge.local.postgres`) instead of migrating each time, and runs api-server,
scheduler, dag-processor and triggerer as subprocesses. ``run_dags_test`` (one process, one DAG
run) keeps SQLite: nothing there writes concurrently.
Every process the stack starts carries a marker variable in its environment, so ``stop()`` also
finds task and Bash processes that Airflow moved into their own process groups or orphaned.
``run_dags_test`` runs ``airflow dags test`` with the same configuration.

Nothing here is meant for production: the secrets are fixed and the passwords are the user names.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

from kfp_bridge.local import postgres
from kfp_bridge.local.airflow_api import AirflowApiClient

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
# Health components reported by /api/v2/monitor/health that must be "healthy" before use.
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
# user -> (password, SimpleAuthManager role). Dev-only: the password is the user name.
USERS: dict[str, tuple[str, str]] = {"admin": ("admin", "ADMIN"), "viewer": ("viewer", "VIEWER")}
# Fixed dev secrets so every service (and a restarted one) signs and verifies the same JWTs.
DEV_FERNET_KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
DEV_JWT_SECRET = "kfp-bridge-local-dev-jwt-secret-not-for-production"
DEV_API_SECRET = "kfp-bridge-local-dev-api-secret-not-for-production"
MARKER_VAR = "KFP_BRIDGE_AIRFLOW_STACK"
DB_NAME = "airflow.db"
# Inherited variables that would leak the caller's Airflow (or the test process's) into the stack.
_INHERITED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
_INHERITED_NAMES = ("AIRFLOW_HOME", "AIRFLOW_CONFIG", "PYTHONDONTWRITEBYTECODE", MARKER_VAR)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pycache_dir() -> Path:
    """Where Airflow subprocesses keep bytecode.

    Without bytecode every Airflow process spends ~5 s compiling imports (measured: ``import
    airflow`` 5.4 s cold vs 2.6 s cached). Keeping it next to the interpreter's environment makes
    it survive test sessions without writing ``__pycache__`` into the source tree.
    """
    return Path(sys.prefix) / ".pycache-airflow"


def airflow_env(
    home: Path,
    *,
    dags_folder: Path,
    plugins_folder: Path | None = None,
    port: int | None = None,
    extra: Mapping[str, str] | None = None,
    marker: str | None = None,
) -> dict[str, str]:
    """The complete environment for an isolated Airflow whose state lives under ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_INHERITED_PREFIXES) and k not in _INHERITED_NAMES
    }
    env.setdefault("PYTHONPYCACHEPREFIX", str(pycache_dir()))
    base_url = f"http://127.0.0.1:{port}" if port else "http://127.0.0.1:8080"
    users = ",".join(f"{name}:{role}" for name, (_, role) in USERS.items())
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / DB_NAME}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # LocalExecutor forks a worker per slot on demand; a handful is plenty for tests.
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder or home / "plugins"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": DEV_FERNET_KEY,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port or 8080),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": DEV_API_SECRET,
            "AIRFLOW__API_AUTH__JWT_SECRET": DEV_JWT_SECRET,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # New files are picked up on the next bundle refresh; changed files by mtime, so a
            # short refresh with a moderate re-parse interval keeps tests fast without burning CPU.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        }
    )
    if marker is not None:
        env[MARKER_VAR] = marker
    env.update(extra or {})
    return env


def _prepare_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    (home / "plugins").mkdir(exist_ok=True)
    # An existing (empty) airflow.cfg stops every service from generating its own one at the same
    # time; all settings come from the environment.
    cfg = home / "airflow.cfg"
    if not cfg.exists():
        cfg.write_text("# kfp-bridge local Airflow: configured through AIRFLOW__* environment variables\n")
    passwords = {name: password for name, (password, _) in USERS.items()}
    (home / "passwords.json").write_text(json.dumps(passwords) + "\n")


def _schema_key() -> str:
    """Key of the DB schema: Airflow and every installed provider can add tables."""
    dists = sorted(
        f"{d.metadata['Name']}=={d.version}"
        for d in metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("apache-airflow")
    )
    return hashlib.sha256("\n".join(dists).encode()).hexdigest()[:16]


def _run_cli(args: list[str], env: Mapping[str, str], log: Path, timeout: float) -> None:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if code != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` exited {code}; see {log}:\n{_tail(log)}")


def _cache_root(cache_dir: Path | None) -> Path:
    return (cache_dir or Path.home() / ".cache" / "kfp-bridge" / "airflow-db") / _schema_key()


def postgres_template(cache_dir: Path | None = None, timeout: float = 600.0) -> Path:
    """A migrated PostgreSQL data directory for this Airflow schema, built once per cache dir."""
    cache = _cache_root(cache_dir)

    def migrate(url: str) -> None:
        home = cache / "pg-home"
        shutil.rmtree(home, ignore_errors=True)
        _prepare_home(home)
        env = airflow_env(home, dags_folder=home / "dags", extra={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url})
        _run_cli(["db", "migrate"], env, home / "logs" / "db-migrate.log", timeout)

    return postgres.template_cluster(cache, migrate)


def template_db(cache_dir: Path | None = None, timeout: float = 300.0) -> Path:
    """A migrated SQLite database to copy into new homes, built once per schema and cache dir.

    ``airflow db migrate`` on an empty SQLite file costs ~8 s; copying the result costs
    milliseconds. A file lock makes concurrent builders (pytest-xdist workers) wait for one.
    """
    cache = _cache_root(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    db = cache / DB_NAME
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not db.exists():
            home = cache / "home"
            shutil.rmtree(home, ignore_errors=True)
            _prepare_home(home)
            env = airflow_env(home, dags_folder=home / "dags")
            _run_cli(["db", "migrate"], env, home / "logs" / "db-migrate.log", timeout)
            # Publish atomically: a half-copied template must never be seen.
            tmp = cache / f".{DB_NAME}.tmp"
            shutil.copyfile(home / DB_NAME, tmp)
            os.replace(tmp, db)
    return db


def ensure_db(home: Path, *, cache_dir: Path | None = None) -> Path:
    """Give ``home`` a migrated database (a copy of the template) unless it already has one."""
    db = home / DB_NAME
    if not db.exists():
        tmp = home / f".{DB_NAME}.tmp"
        shutil.copyfile(template_db(cache_dir), tmp)
        os.replace(tmp, db)
    return db


def run_dags_test(
    dag_file_or_dags_folder: Path,
    dag_id: str,
    *,
    home: Path,
    env: Mapping[str, str] | None = None,
    logical_date: datetime | str | None = None,
    conf: Mapping[str, Any] | None = None,
    timeout: float = 300.0,
    cache_dir: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``airflow dags test`` in a subprocess against an isolated home; never raises on failure.

    Deferrable tasks run with their trigger in-process, so no triggerer is needed. Output
    (stdout and stderr merged) is in ``.stdout`` and also in ``home/logs/dags-test.log``.
    """
    path = Path(dag_file_or_dags_folder).resolve()
    dags_folder = path.parent if path.is_file() else path
    _prepare_home(home)
    ensure_db(home, cache_dir=cache_dir)
    args = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if logical_date is not None:
        args.append(logical_date.isoformat() if isinstance(logical_date, datetime) else logical_date)
    if path.is_file():
        args += ["--dagfile-path", str(path)]
    if conf is not None:
        args += ["--conf", json.dumps(dict(conf))]
    proc = subprocess.Popen(
        args,
        env=airflow_env(home, dags_folder=dags_folder, extra=env, marker=f"dags-test:{uuid.uuid4()}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise subprocess.TimeoutExpired(args, timeout, output=out) from None
    (home / "logs" / "dags-test.log").write_text(out)
    return subprocess.CompletedProcess(args, proc.returncode, out, None)


class AirflowStack(AirflowApiClient):
    """api-server, scheduler, dag-processor and triggerer on PostgreSQL, plus a REST client for them.

    :param home: AIRFLOW_HOME; holds the database, passwords file, service and task logs.
    :param dags_folder: where the dag-processor looks for DAG files.
    :param plugins_folder: Airflow plugins folder (default ``home/plugins``, empty).
    :param env: extra environment for every service, e.g. ``AIRFLOW_CONN_KFP_DEFAULT``; applied last
        so it can override any setting.
    :param port: api-server port (default: a free one).
    :param cache_dir: where the migrated template database is cached (see :func:`postgres_template`).
    :param grace: seconds between SIGTERM and SIGKILL when stopping.
    :param triggerers: how many triggerer processes (``triggerer``, ``triggerer-2``, ...): two or more
        exercise Airflow's triggerer HA (a killed one's triggers move to a live one).
    :param database: ``"postgres"`` (default: a private PostgreSQL server, stopped with the stack) or
        ``"sqlite"`` (only where one process writes at a time).

    Example::

        with AirflowStack(home=tmp / "af", dags_folder=tmp / "dags") as stack:
            stack.wait_ready(120)
            stack.add_dag_file(Path("dags/example.py"))
            stack.wait_dag_parsed("example")
            run_id = stack.trigger_dag("example", conf={"x": 1})
            assert stack.wait_dag_run("example", run_id, timeout=120) == "success"
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        plugins_folder: Path | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        *,
        cache_dir: Path | None = None,
        grace: float = 15.0,
        database: str = "postgres",
        triggerers: int = 1,
    ) -> None:
        if database not in ("postgres", "sqlite"):
            raise ValueError(f"database must be 'postgres' or 'sqlite', got {database!r}")
        if triggerers < 1:
            raise ValueError(f"triggerers must be at least 1, got {triggerers}")
        self.services = (*SERVICES, *(f"triggerer-{n}" for n in range(2, triggerers + 1)))
        self.database = database
        self.postgres: postgres.PostgresServer | None = None
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve() if plugins_folder else None
        self.port = port or free_port()
        self.cache_dir = cache_dir
        self.grace = grace
        self.marker = f"{self.home}:{uuid.uuid4()}"
        self.env = airflow_env(
            self.home,
            dags_folder=self.dags_folder,
            plugins_folder=self.plugins_folder,
            port=self.port,
            extra=env,
            marker=self.marker,
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}
        self._started = time.monotonic()
        super().__init__(
            f"http://127.0.0.1:{self.port}", {name: password for name, (password, _) in USERS.items()}
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> AirflowStack:
        """Prepare home and database, then start all four services (does not wait for health)."""
        began = self._started = time.monotonic()
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        if self.plugins_folder is not None:
            self.plugins_folder.mkdir(parents=True, exist_ok=True)
        _prepare_home(self.home)
        if self.database == "postgres":
            self._start_postgres()
        else:
            ensure_db(self.home, cache_dir=self.cache_dir)
        self.timings["db_s"] = time.monotonic() - began
        for name in self.services:
            self.start_service(name)
        return self

    def _start_postgres(self) -> None:
        if self.postgres is None:
            template = postgres_template(self.cache_dir)
            self.postgres = postgres.server_from_template(template, log=self.home / "logs" / "postgres.log")
        # The marker lets pids()/stop() and `make down` find the server like any other service.
        self.postgres.start(env={**os.environ, MARKER_VAR: self.marker})
        self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.postgres.url

    def _command(self, name: str) -> list[str]:
        if name == "api-server":
            return ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        if name in ("scheduler", "triggerer") or name.startswith("triggerer-"):
            # Their log servers bind the fixed ports 8793/8794, so two stacks would collide; the
            # api-server reads task and trigger logs straight from the shared local log folder.
            return [name.split("-")[0], "--skip-serve-logs"]
        return [name]

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        if name not in self.services:
            raise ValueError(f"unknown service {name!r}; expected one of {self.services}")
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            raise RuntimeError(f"{name} is already running (pid {running.pid})")
        with self.log_path(name).open("ab") as log:
            # Own session: one killpg reaches the service and the helpers it forks.
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *self._command(name)],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self.processes[name]

    def wait_ready(self, timeout: float = 180.0) -> dict[str, Any]:
        """Poll the health endpoint until the database and all three jobs report healthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"Airflow {name} exited with {proc.returncode} while starting; "
                        f"{self.log_path(name)}:\n{_tail(self.log_path(name))}"
                    )
            try:
                last = self.health()
            except (httpx.HTTPError, RuntimeError) as exc:  # api-server not listening yet
                last = exc
            else:
                if all((last.get(c) or {}).get("status") == "healthy" for c in HEALTH_COMPONENTS):
                    # Seconds from start() to healthy, for reports (see tests/integration/airflow).
                    self.timings.setdefault("ready_s", time.monotonic() - self._started)
                    return last
            time.sleep(0.5)
        raise TimeoutError(
            f"Airflow not healthy after {timeout:.0f}s; last health: {last!r}; logs in {self.home}/logs"
        )

    def pids(self) -> set[int]:
        """Every live process of this stack: services, their descendants and orphans they left."""
        return {p.pid for p in self._processes()}

    def _processes(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for proc in self.processes.values():
            if proc.poll() is None:
                found.update((p.pid, p) for p in _tree(proc.pid))
        # Task runners and Bash commands get their own process groups, and can outlive a killed
        # parent; the marker in their inherited environment still names this stack.
        for proc in psutil.process_iter():
            if proc.pid in found or proc.pid == os.getpid():
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARKER_VAR) == self.marker:
                    found[proc.pid] = proc
        return [p for p in found.values() if _alive(p)]

    def kill_service(self, name: str, sig: int = signal.SIGKILL, *, whole_group: bool = True) -> None:
        """Send ``sig`` to a service (by default its whole process group), for chaos tests.

        Task processes run in process groups of their own, so killing the scheduler's group leaves
        running tasks alive, as a crashed scheduler would; kill them by pid from ``pids()``.
        """
        proc = self.processes[name]
        if whole_group:
            _signal_group(proc, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)

    def stop_service(self, name: str) -> None:
        proc = self.processes.get(name)
        if proc is None:
            return
        procs = _tree(proc.pid)
        _signal_group(proc, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=self.grace)
        _signal_group(proc, signal.SIGKILL)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait()

    def restart_service(self, name: str) -> subprocess.Popen[bytes]:
        self.stop_service(name)
        return self.start_service(name)

    def stop(self) -> None:
        """SIGTERM every service group, SIGKILL whatever survives ``grace``; leaves nothing behind."""
        self.close()
        procs = self._processes()
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=self.grace)
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGKILL)
        # Shutdown can fork (e.g. a task's on_kill), and orphans are only found by their marker.
        for p in {*alive, *self._processes()}:
            with contextlib.suppress(psutil.Error):
                p.kill()
        for proc in self.processes.values():
            proc.wait()
        psutil.wait_procs([p for p in procs if _alive(p)], timeout=5)
        if self.postgres is not None:
            postgres.remove(self.postgres)
            self.postgres = None

    def __enter__(self) -> AirflowStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the metadata database (read-only, for tests and diagnostics) -------------------------------

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (``?`` placeholders) against this stack's metadata database."""
        if self.postgres is None:
            import sqlite3

            with contextlib.closing(sqlite3.connect(f"file:{self.home / DB_NAME}?mode=ro", uri=True)) as db:
                return db.execute(statement, params).fetchall()
        import psycopg2

        with contextlib.closing(psycopg2.connect(
            host="127.0.0.1", port=self.postgres.port, user=postgres.DB_USER,
            password=postgres.DB_PASSWORD, dbname=postgres.DB_NAME,
        )) as db:
            db.set_session(readonly=True, autocommit=True)
            with db.cursor() as cursor:
                # psycopg2's placeholders are %s, so a literal % (LIKE 'x_%') must be doubled.
                cursor.execute(statement.replace("%", "%%").replace("?", "%s"), params)
                return [tuple(row) for row in cursor.fetchall()]

    def database_dump(self) -> bytes:
        """Every byte the metadata database holds as text (``pg_dump``, or the SQLite file)."""
        if self.postgres is None:
            return (self.home / DB_NAME).read_bytes()
        return subprocess.run(
            [str(self.postgres.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.postgres.port),
             "-U", postgres.DB_USER, postgres.DB_NAME],
            check=True, capture_output=True, timeout=120, env={**os.environ, "PGPASSWORD": postgres.DB_PASSWORD},
        ).stdout

    # -- DAG files -----------------------------------------------------------------------------

    def add_dag_file(self, source: Path | str, name: str | None = None) -> Path:
        """Put a DAG file into the dags folder: ``source`` is a path to copy or the file's text.

        The file appears atomically so the dag-processor never parses half of it.
        """
        if isinstance(source, Path):
            text = source.read_text()
            name = name or source.name
        else:
            if name is None:
                raise ValueError("add_dag_file needs a file name when given source text")
            text = source
        target = self.dags_folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, target)
        return target

    def service_log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def task_log_files(self, dag_id: str) -> Iterator[Path]:
        return (self.home / "logs").glob(f"dag_id={dag_id}/**/*.log")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (empty if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Signal the group a service leads, but only while the leader is unreaped: afterwards its pid
    (and so the group id) may belong to a stranger. Leftovers are then found by their marker."""
    if proc.poll() is None:
        _kill_group(proc.pid, sig)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
