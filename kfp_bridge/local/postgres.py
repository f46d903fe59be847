"""A throwaway PostgreSQL server for a local Airflow stack (Debian's ``postgresql`` binaries).

Airflow documents SQLite as fit only for trying it out: one writer at a time, and the lock
contention shows up as scheduler races under load. The stacks that tests, ``make up`` and the chaos
suite start therefore run on a real PostgreSQL, like the deployments we ship (compose, Helm).

Each server lives in its own temporary data directory on a free loopback port and is torn down
with its stack. ``initdb`` + ``airflow db migrate`` cost tens of seconds, so a migrated data
directory is built once per Airflow schema (see :func:`template_cluster`) and copied.

PostgreSQL refuses to run as root; as root (CI, containers) the server runs as the ``postgres``
user the Debian package creates, with its data outside root-only temp folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kfp_bridge.local.launch import free_port

DB_USER = "airflow"
DB_NAME = "airflow"
# Dev-only: the server listens on loopback only and lives as long as its stack.
DB_PASSWORD = "airflow"
START_TIMEOUT_SECONDS = 60.0
_SEARCH = ("/usr/lib/postgresql",)
INSTALL_HINT = (
    "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install Debian's "
    "postgresql package (bash scripts/ensure-postgres.sh, or: sudo apt-get install -y postgresql), "
    "or set KFP_BRIDGE_PG_BIN to the folder holding initdb and postgres"
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def bin_dir() -> Path:
    """The newest installed server's bin folder (``KFP_BRIDGE_PG_BIN`` overrides)."""
    explicit = os.environ.get("KFP_BRIDGE_PG_BIN")
    candidates = [Path(explicit)] if explicit else sorted(
        (p / "bin" for root in _SEARCH if Path(root).is_dir() for p in Path(root).iterdir()),
        key=lambda p: _major(p.parent.name),
        reverse=True,
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresUnavailable(INSTALL_HINT)


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root needs the 'postgres' system user; " + INSTALL_HINT) from None


def _demote(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    if user is None:
        return None

    def switch() -> None:
        os.setgid(user.pw_gid)
        os.initgroups(user.pw_name, user.pw_gid)
        os.setuid(user.pw_uid)

    return switch


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _private_dir(prefix: str, user: pwd.struct_passwd | None) -> Path:
    # /tmp itself (1777) rather than a pytest tmp folder: those are root-only (0700), and the
    # postgres user must reach its data directory.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


class PostgresServer:
    """One ``postgres`` process over a data directory. :param data_dir: created by :meth:`init`
    or copied from a template. :param log: server log file."""

    def __init__(self, data_dir: Path, *, port: int | None = None, log: Path | None = None) -> None:
        self.bin = bin_dir()
        self.user = _server_user()
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.log = log or self.data_dir.parent / f"{self.data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Airflow (psycopg2, Airflow's documented driver)."""
        return f"postgresql+psycopg2://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.port}/{DB_NAME}"

    def init(self) -> PostgresServer:
        """initdb with the airflow role as superuser and password auth on loopback."""
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        pwfile.write_text(DB_PASSWORD + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        try:
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", DB_USER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
                check=True, capture_output=True, preexec_fn=_demote(self.user), timeout=120,
            )
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"initdb failed: {err.stderr.decode(errors='replace')[-2000:]}") from None
        finally:
            pwfile.unlink(missing_ok=True)
        return self

    def start(self, timeout: float = START_TIMEOUT_SECONDS, env: dict[str, str] | None = None) -> PostgresServer:
        """:param env: the server's environment (e.g. a marker that lets its stack find it again)."""
        self.log.touch()
        if self.user is not None:
            os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data_dir}",
                 # A test database: durability buys nothing, and fsync on a loaded CI disk costs seconds.
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_demote(self.user), start_new_session=True,
            )
        self._wait_accepting(timeout)
        return self

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see {self.log}:\n{self._tail()}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", DB_NAME],
                capture_output=True, check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"postgres not accepting connections on port {self.port} after {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 10 s; idempotent."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def template_cluster(cache: Path, migrate: Callable[[str], None]) -> Path:
    """A migrated data directory for this Airflow schema, built once under ``cache`` (file-locked).

    :param migrate: runs ``airflow db migrate`` against the URL it is given.
    """
    cache.mkdir(parents=True, exist_ok=True)
    template = cache / "pgdata"
    with (cache / ".pg.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (template / "PG_VERSION").exists():
            user = _server_user()
            work = _private_dir("kfp-bridge-pg-template-", user)
            try:
                server = PostgresServer(work / "data").init()
                with _create_database(server):
                    migrate(server.url)
                shutil.rmtree(template, ignore_errors=True)
                partial = cache / ".pgdata.tmp"
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(server.data_dir, partial, symlinks=True)
                os.replace(partial, template)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return template


@contextlib.contextmanager
def _create_database(server: PostgresServer):
    server.start()
    try:
        subprocess.run(
            [str(server.bin / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", DB_USER, DB_NAME],
            check=True, capture_output=True, env={**os.environ, "PGPASSWORD": DB_PASSWORD}, timeout=60,
        )
        yield server
    finally:
        server.stop()


def server_from_template(template: Path, *, log: Path | None = None) -> PostgresServer:
    """A new server over a private copy of ``template`` (not started)."""
    user = _server_user()
    work = _private_dir("kfp-bridge-pg-", user)
    data = work / "data"
    shutil.copytree(template, data, symlinks=True)
    os.chmod(data, 0o700)
    _chown_tree(work, user)
    return PostgresServer(data, log=log or work / "postgres.log")


def remove(server: PostgresServer) -> None:
    """Stop the server and delete its private folder."""
    server.stop()
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)
