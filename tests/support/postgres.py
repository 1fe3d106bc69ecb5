"""Harness for a private PostgreSQL cluster (Debian's ``postgresql`` package) on loopback.

Each cluster is made by ``initdb`` in a temporary directory and served by its own
``postgres`` process on 127.0.0.1 and a free port, with its socket in that directory too:
no system service, no shared state between test runs, nothing left behind. ``initdb``
refuses to run as root, so when the tests run as root (CI does) the cluster's directory is
handed to the ``postgres`` system user and every server command runs as that user through
``runuser``. Clients connect over TCP as the superuser ``rpcpay`` with trust
authentication, which is what a loopback-only test cluster wants.

The settings are tuned for tests, not for safety of the cluster itself, with one
exception: ``fsync`` stays on by default, because the ledger's promise ("durable before the
client hears") is exactly what some tests check by killing processes. Benchmarks measure
with the same setting.

A fresh cluster takes about 1.5 s to make and start on the 2-core CI machine.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from tests.support.processes import stop_process

_HOST = "127.0.0.1"
_START_TIMEOUT = 30.0
_SUPERUSER = "rpcpay"
_SERVICE_USER = "postgres"
_LIVE: list[PostgresCluster] = []


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or a cluster could not be made or started."""


def postgres_bindir() -> Path:
    """Debian's newest ``/usr/lib/postgresql/N/bin`` (``$PG_BINDIR`` overrides)."""
    override = os.environ.get("PG_BINDIR")
    if override:
        candidates = [Path(override)]
    else:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise PostgresError(
        "PostgreSQL's server binaries are not installed: run scripts/setup.sh "
        "(installs Debian's postgresql package)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _as_service_user() -> dict[str, Any]:
    """Popen arguments that run a server command as a non-root user.

    The child is exec'd straight into that user (no ``runuser``/``su`` in between), so the
    Popen handle is the postmaster itself and a signal sent to it reaches PostgreSQL.
    """
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(_SERVICE_USER)
    except KeyError as exc:
        raise PostgresError(
            f"running as root and there is no {_SERVICE_USER!r} user to run initdb as "
            "(Debian's postgresql package creates it)"
        ) from exc
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _hand_over(path: Path) -> None:
    """Give ``path`` to the service user (when running as root)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(_SERVICE_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class PostgresCluster:
    """A running private cluster. Stop it with ``stop()`` or use it as a context manager."""

    directory: Path
    port: int
    bindir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return _HOST

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` as the test superuser."""
        return f"postgresql://{_SUPERUSER}@{_HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (names are plain identifiers)."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r} is not a plain identifier")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with Debian's psql client and return its plain output."""
        out = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                _HOST,
                "-p",
                str(self.port),
                "-U",
                _SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            check=False,
            timeout=30,
        )
        if out.returncode != 0:
            raise PostgresError(f"psql failed: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout.decode().strip()

    def is_ready(self) -> bool:
        """Whether the server accepts connections (``pg_isready``)."""
        out = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", _HOST, "-p", str(self.port), "-q"],
            check=False,
            timeout=10,
        )
        return out.returncode == 0

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server (fast shutdown: connections are cut), wait, start it again."""
        self._stop_server()
        if down_s > 0:
            time.sleep(down_s)
        self.process = _spawn(self.bindir, self.directory, self.port, self._reopen_log())
        _wait_ready(self)

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash; the next start runs crash recovery)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _reopen_log(self) -> IO[bytes]:
        if self._log is not None:
            self._log.close()
        self._log = self.log_path.open("ab")
        return self._log

    def _stop_server(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: abort clients, checkpoint, exit.
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(self.process, timeout=10)

    def stop(self) -> None:
        """Stop the server and delete the cluster. Idempotent."""
        self._stop_server()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self in _LIVE:
            _LIVE.remove(self)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _spawn(bindir: Path, directory: Path, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(directory / "data"),
            "-p",
            str(port),
            "-h",
            _HOST,
            "-k",
            str(directory),
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=64MB",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        **_as_service_user(),
    )


def _wait_ready(cluster: PostgresCluster) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            raise PostgresError(
                f"postgres exited with {cluster.process.returncode}; "
                f"see {cluster.log_path}: {cluster.log_path.read_text(errors='replace')[-800:]}"
            )
        if cluster.is_ready():
            return
        time.sleep(0.05)
    raise PostgresError(f"postgres did not accept connections within {_START_TIMEOUT:.0f} s")


def start_postgres() -> PostgresCluster:
    """Make a fresh cluster in a new temporary directory and start it.

    The directory is made by ``tempfile.mkdtemp`` rather than under pytest's ``tmp_path``:
    pytest's base directory is private to root (0700), and the server runs as ``postgres``.
    """
    bindir = postgres_bindir()
    directory = Path(tempfile.mkdtemp(prefix="rpcpay-pg-"))
    _hand_over(directory)
    data = directory / "data"
    init = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        check=False,
        timeout=120,
        **_as_service_user(),
    )
    if init.returncode != 0:
        raise PostgresError(f"initdb failed: {init.stderr.decode(errors='replace').strip()}")
    log_path = directory / "postgres.log"
    log = log_path.open("ab")
    port = _free_port()
    cluster = PostgresCluster(
        directory=directory,
        port=port,
        bindir=bindir,
        log_path=log_path,
        process=_spawn(bindir, directory, port, log),
        _log=log,
    )
    _LIVE.append(cluster)
    try:
        _wait_ready(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()
