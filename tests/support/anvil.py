"""Harness for anvil (npm ``@foundry-rs/anvil``, installed by scripts/setup.sh) on loopback.

anvil is the end-to-end chain: a real Ethereum node with automine (every transaction
in a block of its own, at once), the Cancun rules the contract is compiled for, and
development methods (``anvil_mine``, ``anvil_setBalance``, ``evm_snapshot``,
``evm_revert``).

It listens on 127.0.0.1 and a port the OS picks (``--port 0``): the harness reads the
port from anvil's ``Listening on`` line, so no port can be taken in between. It
starts in about 30 ms. The binary is the per-platform one the npm package ships
(``node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil``), run directly rather than
through the package's Node wrapper, so a signal reaches anvil itself.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import pytest

from tests.support.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
ANVIL_VERSION = "1.7.1"
"""The version scripts/setup.sh installs (keep the two in step)."""
ANVIL_DIR = REPO / ".tools" / "anvil"
HARDFORK = "cancun"

_HOST = "127.0.0.1"
_START_TIMEOUT = 20.0
_LISTENING = re.compile(rb"Listening on 127\.0\.0\.1:(\d+)")
_LIVE: list[AnvilProcess] = []


class AnvilError(RuntimeError):
    """anvil is missing, could not be started, or answered an error."""


def anvil_binary() -> Path:
    """The installed anvil binary (``$ANVIL_BIN`` overrides); ``AnvilError`` if none."""
    override = os.environ.get("ANVIL_BIN")
    found = (
        [Path(override)]
        if override
        else sorted(ANVIL_DIR.glob("node_modules/@foundry-rs/anvil-*/bin/anvil"))
    )
    if not found or not found[0].is_file():
        where = f"ANVIL_BIN={override}" if override else f"under {ANVIL_DIR}"
        raise AnvilError(
            f"anvil is not installed ({where}): run scripts/setup.sh "
            f"(npm install of @foundry-rs/anvil@{ANVIL_VERSION})"
        )
    return found[0]


@dataclass
class AnvilProcess:
    """A running anvil. Stop it with ``stop()`` or use it as a context manager."""

    url: str
    port: int
    chain_id: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)
    _ids: int = 0

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """One JSON-RPC call; its result, or ``AnvilError`` with anvil's error."""
        self._ids += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params or []}
        )
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(_HOST, self.port, timeout=30)
            try:
                self._conn.request("POST", "/", body, {"Content-Type": "application/json"})
                answer = json.loads(self._conn.getresponse().read())
                break
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        if "error" in answer:
            raise AnvilError(f"{method}: {answer['error']}")
        return answer["result"]

    def set_balance(self, address: bytes, wei: int) -> None:
        self.rpc("anvil_setBalance", ["0x" + address.hex(), hex(wei)])

    def snapshot(self) -> str:
        """Save the chain's state; ``revert`` goes back to it (once: anvil then forgets it)."""
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot: str) -> None:
        # anvil answers false for a snapshot it does not have.
        if self.rpc("evm_revert", [snapshot]) is not True:
            raise AnvilError(f"anvil has no snapshot {snapshot}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        stop_process(self.process, 5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        proc.stop()


def start_anvil(log_dir: Path, chain_id: int = 1337) -> AnvilProcess:
    """Start anvil on 127.0.0.1 (a free port), chain ``chain_id``, Cancun, no dev accounts.

    Waits until it answers ``eth_chainId``; raises ``AnvilError`` with the log's tail if
    it exits or does not answer within 20 s.
    """
    binary = anvil_binary()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"anvil-{chain_id}-{time.monotonic_ns()}.log"
    log = log_path.open("wb")
    cmd = [
        str(binary),
        "--host", _HOST,
        "--port", "0",
        "--chain-id", str(chain_id),
        "--hardfork", HARDFORK,
        "--accounts", "0",
        "--color", "never",
    ]  # fmt: skip
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + _START_TIMEOUT
    port = None
    while port is None:
        match = _LISTENING.search(log_path.read_bytes())
        if match:
            port = int(match.group(1))
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log.close()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise AnvilError(f"anvil did not start (exit {process.returncode}); log:\n{tail}")
        time.sleep(0.01)
    anvil = AnvilProcess(
        url=f"http://{_HOST}:{port}",
        port=port,
        chain_id=chain_id,
        log_path=log_path,
        process=process,
        _log=log,
    )
    _LIVE.append(anvil)
    try:
        if int(anvil.rpc("eth_chainId"), 16) != chain_id:
            raise AnvilError("anvil serves another chain id")
    except BaseException:
        anvil.stop()
        raise
    return anvil


class AnvilPool:
    """One anvil per chain id for a test session, reset to its genesis on demand.

    ``fresh(chain_id)`` reverts that anvil to the snapshot taken at its genesis (and
    takes a new one: anvil forgets a snapshot once reverted to): cheaper than a new
    process, and every test starts from block 0. A test therefore holds at most one
    fresh chain per chain id at a time.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.nodes: dict[int, tuple[AnvilProcess, str]] = {}

    def fresh(self, chain_id: int = 1337) -> AnvilProcess:
        if chain_id in self.nodes:
            node, genesis = self.nodes[chain_id]
            node.revert(genesis)
        else:
            node = start_anvil(self.log_dir, chain_id)
        self.nodes[chain_id] = (node, node.snapshot())
        return node

    def close(self) -> None:
        for node, _ in self.nodes.values():
            node.stop()
        self.nodes.clear()


@pytest.fixture(scope="session")
def anvil_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilPool]:
    """The session's anvils; fails (never skips) with what to run when anvil is missing."""
    missing = None
    try:
        anvil_binary()
    except AnvilError as exc:
        missing = str(exc)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    pool = AnvilPool(tmp_path_factory.mktemp("anvil"))
    yield pool
    pool.close()
