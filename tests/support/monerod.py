"""Harness for a real monerod 0.18 (Debian bookworm's ``monero`` package) on loopback.

monerod is the reference peer of rpcpay: differential tests send the same request to the
gateway and to a paying monerod and compare.  Everything binds to 127.0.0.1 only.

The daemon runs ``--regtest --offline --fixed-difficulty 1`` by default, so
``generateblocks`` mines instantly (regtest chain starts at height 1, the genesis block).
The RPC server is *unrestricted*: admin calls (generateblocks, rpc_access_data,
rpc_access_account, rpc_access_tracking, ...) work.  SSL, ZMQ, UPnP, DNS checkpoints and
update checks are off.

Observed with payment on (``--rpc-payment-address``, difficulty 5, monerod 0.18.0.0) and a
request carrying no ``client`` (so ``--rpc-payment-allow-free-loopback`` is off):

Free (answer normally with status OK):
    JSON-RPC: get_block_count, on_get_block_hash, get_block_template, get_miner_data,
    submit_block, generateblocks, get_version, get_connections, get_bans,
    get_alternate_chains, rpc_access_tracking, rpc_access_data, rpc_access_account.
    JSON endpoints: /get_height, /get_alt_blocks_hashes, /mining_status, /get_peer_list,
    /get_public_nodes, /get_net_stats, /get_limit.
Charged (need a signed ``client`` with credits):
    JSON-RPC: get_info, get_last_block_header, get_block_header_by_hash,
    get_block_header_by_height, get_block_headers_range, get_block, hard_fork_info,
    get_output_histogram, get_coinbase_tx_sum, get_fee_estimate, sync_info,
    get_txpool_backlog, get_output_distribution (and relay_tx).
    JSON endpoints: /get_info, /get_transactions, /is_key_image_spent, /get_outs,
    /get_transaction_pool, /get_transaction_pool_hashes, /get_transaction_pool_stats
    (and /send_raw_transaction, the .bin endpoints).

How a charged call without a valid client answers (all HTTP 200):
    - JSON endpoints and JSON-RPC methods other than get_info: a normal result with zeroed
      fields, ``status: "Client signature does not verify for <method>"``, ``credits: 0``
      and ``top_hash`` (current top block hash).  get_fee_estimate names itself
      ``get_base_fee_estimate`` in that status.
    - JSON-RPC get_info: ``error: {code: -5, message: "Client signature does not verify
      for get_info"}``.
    - rpc_access_info with a malformed client: ``error: {code: -15, message: "Invalid
      client ID"}``.
    - rpc_access_data omits ``entries`` while no client is known; rpc_access_account (admin,
      ``client`` = 64 hex of a public key, no signature) creates the entry.

Typical cost here: start_monerod ~1-2 s, generate_blocks(20) ~3 s at fixed difficulty 1.
"""

from __future__ import annotations

import atexit
import http.client
import json
import re
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from tests.support.processes import stop_process

MONEROD_BIN = Path("/usr/bin/monerod")

#: A valid mainnet-format address; regtest accepts it for block rewards and payments.
TEST_ADDRESS = (
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7"
    "SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)

JsonDict = dict[str, Any]

_HOST = "127.0.0.1"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 20.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LIVE: list[MonerodProcess] = []


class MonerodError(RuntimeError):
    """monerod could not be started, or answered something unusable."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])


@dataclass
class MonerodProcess:
    """A running monerod.  Stop it with stop() or use it as a context manager."""

    url: str
    rpc_port: int
    p2p_port: int
    data_dir: Path
    log_path: Path
    payment_address: str | None
    difficulty: int
    credits: int
    allow_free_loopback: bool
    process: subprocess.Popen[bytes] = field(repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    # -- HTTP ---------------------------------------------------------------------------

    def post_raw(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        timeout: float = 60.0,
    ) -> tuple[int, bytes]:
        """POST raw bytes to ``path``; returns (HTTP status, body) whatever the status."""
        conn = http.client.HTTPConnection(_HOST, self.rpc_port, timeout=timeout)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post(self, path: str, body: JsonDict | None = None, *, timeout: float = 60.0) -> JsonDict:
        """POST JSON to a JSON endpoint (e.g. ``/get_info``); returns the decoded object.

        Raises MonerodError unless the answer is HTTP 200 with a JSON object.
        """
        raw = json.dumps(body if body is not None else {}).encode()
        status, data = self.post_raw(path, raw, timeout=timeout)
        if status != 200:
            raise MonerodError(f"POST {path}: HTTP {status}: {data[:300]!r}")
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise MonerodError(f"POST {path}: not JSON: {data[:300]!r}") from exc
        if not isinstance(obj, dict):
            raise MonerodError(f"POST {path}: not a JSON object: {data[:300]!r}")
        return obj

    def json_rpc(
        self, method: str, params: JsonDict | None = None, *, timeout: float = 60.0
    ) -> JsonDict:
        """Call ``method`` on /json_rpc; returns the whole response ("result" or "error").

        ``params`` is omitted from the request when None.
        """
        req: JsonDict = {"jsonrpc": "2.0", "id": "0", "method": method}
        if params is not None:
            req["params"] = params
        return self.post("/json_rpc", req, timeout=timeout)

    # -- conveniences -------------------------------------------------------------------

    def generate_blocks(self, n: int, address: str = TEST_ADDRESS) -> JsonDict:
        """Mine ``n`` blocks paying ``address``; returns the JSON-RPC ``result``."""
        resp = self.json_rpc(
            "generateblocks",
            {"amount_of_blocks": n, "wallet_address": address},
            timeout=60.0 + 5.0 * n,
        )
        if "error" in resp or resp.get("result", {}).get("status") != "OK":
            raise MonerodError(f"generateblocks({n}) failed: {resp}")
        result: JsonDict = resp["result"]
        return result

    def height(self) -> int:
        """Chain height from /get_height (free even with payment on)."""
        h: int = self.post("/get_height")["height"]
        return h

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of monerod's stdout/stderr, colours stripped."""
        return _tail(self.log_path, lines)

    # -- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM, wait up to 20 s, then SIGKILL.  Safe to call twice."""
        stop_process(self.process, _STOP_TIMEOUT)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
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


def _command(
    data_dir: Path,
    rpc_port: int,
    p2p_port: int,
    *,
    payment_address: str | None,
    difficulty: int,
    credits: int,
    allow_free_loopback: bool,
    fixed_difficulty: int,
    extra_args: Sequence[str],
) -> list[str]:
    cmd = [
        str(MONEROD_BIN),
        "--regtest",
        "--offline",
        "--fixed-difficulty", str(fixed_difficulty),
        "--data-dir", str(data_dir),
        "--rpc-bind-ip", _HOST,
        "--rpc-bind-port", str(rpc_port),
        "--p2p-bind-ip", _HOST,
        "--p2p-bind-port", str(p2p_port),
        "--no-zmq",
        "--no-igd",
        "--non-interactive",
        "--log-level", "0",
        "--max-concurrency", "2",
        "--rpc-ssl", "disabled",
        "--check-updates", "disabled",
        "--disable-dns-checkpoints",
    ]  # fmt: skip
    if payment_address is not None:
        cmd += [
            "--rpc-payment-address", payment_address,
            "--rpc-payment-difficulty", str(difficulty),
            "--rpc-payment-credits", str(credits),
        ]  # fmt: skip
        if allow_free_loopback:
            cmd.append("--rpc-payment-allow-free-loopback")
    cmd += list(extra_args)
    return cmd


def _try_start(
    tmp_dir: Path,
    attempt: int,
    *,
    payment_address: str | None,
    difficulty: int,
    credits: int,
    allow_free_loopback: bool,
    fixed_difficulty: int,
    extra_args: Sequence[str],
) -> MonerodProcess:
    data_dir = tmp_dir / "monerod"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = tmp_dir / "monerod.log"
    rpc_port = free_port()
    p2p_port = free_port()
    while p2p_port == rpc_port:
        p2p_port = free_port()
    cmd = _command(
        data_dir,
        rpc_port,
        p2p_port,
        payment_address=payment_address,
        difficulty=difficulty,
        credits=credits,
        allow_free_loopback=allow_free_loopback,
        fixed_difficulty=fixed_difficulty,
        extra_args=extra_args,
    )
    log_file = log_path.open("ab")
    log_file.write(f"\n=== attempt {attempt}: {' '.join(cmd)}\n".encode())
    log_file.flush()
    process = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
    )
    mon = MonerodProcess(
        url=f"http://{_HOST}:{rpc_port}",
        rpc_port=rpc_port,
        p2p_port=p2p_port,
        data_dir=data_dir,
        log_path=log_path,
        payment_address=payment_address,
        difficulty=difficulty,
        credits=credits,
        allow_free_loopback=allow_free_loopback,
        process=process,
        _log_file=log_file,
    )
    _LIVE.append(mon)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            mon.stop()
            raise MonerodError(
                f"monerod exited with code {process.returncode} during startup; log tail:\n"
                + mon.log_tail()
            )
        try:
            if mon.post("/get_height", timeout=2.0).get("status") == "OK":
                return mon
        except (OSError, http.client.HTTPException, MonerodError):
            pass
        time.sleep(0.1)
    mon.stop()
    raise MonerodError(
        f"monerod did not answer /get_height within {_START_TIMEOUT:.0f} s; log tail:\n"
        + mon.log_tail()
    )


def start_monerod(
    tmp_dir: Path,
    *,
    payment_address: str | None = None,
    difficulty: int = 1000,
    credits: int = 100,
    allow_free_loopback: bool = False,
    fixed_difficulty: int = 1,
    extra_args: Sequence[str] = (),
) -> MonerodProcess:
    """Start a regtest monerod on loopback with its data under ``tmp_dir/monerod``.

    Pay-for-RPC is on when ``payment_address`` is given (``difficulty`` hashes per
    ``credits`` credits).  Waits until /get_height answers; retries once with new ports if
    a port was taken.  Raises MonerodError (with the log tail) on failure.
    """
    if not MONEROD_BIN.exists():
        raise MonerodError(f"{MONEROD_BIN} not found: run scripts/setup.sh")
    kwargs: dict[str, Any] = {
        "payment_address": payment_address,
        "difficulty": difficulty,
        "credits": credits,
        "allow_free_loopback": allow_free_loopback,
        "fixed_difficulty": fixed_difficulty,
        "extra_args": extra_args,
    }
    try:
        return _try_start(tmp_dir, 1, **kwargs)
    except MonerodError as exc:
        if "Failed to bind" not in str(exc) and "already in use" not in str(exc):
            raise
    return _try_start(tmp_dir, 2, **kwargs)
