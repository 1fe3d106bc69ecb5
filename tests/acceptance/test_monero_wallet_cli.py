"""Acceptance: Debian's unmodified monero-wallet-cli 0.18.0.0 pays for RPC with hashes.

The same script runs against two servers on loopback (a differential acceptance test):

``monerod-builtin``
    the reference: a regtest monerod with its own RPC payment on a restricted RPC port
    (``--rpc-restricted-bind-port``, how a paid public node runs); its main port stays
    unrestricted and free, for the test's own look-ups and ``generateblocks``.
``gateway``
    ``rpcpay serve`` (the CLI, in its own process) in front of a regtest monerod that has no
    payment configured.

Script: mine coinbase outputs to a fresh wallet address (plus 60+ blocks so they unlock); open
the wallet against the server; it must see that the node wants payment, auto-mine credits
(its idle thread, RandomX light mode), sync, and show the exact balance mined to it;
``rpc_payment_info`` must show credits at the server's difficulty and rate; a transfer must be
accepted (``send_raw_transaction`` paid) and end up in a block.  With the chain at fixed
difficulty 1 every valid share is also a valid block: the blocks the test did not generate
itself must pay ``--rpc-payment-address``, which a view-only wallet of that address (the real
wallet again, synced from the upstream's free port) confirms to the atomic unit.

Every cost the wallet logs (``Call /getblocks.bin cost 6 credits``; a WARNING ``cost N
credits, expected M`` on a mismatch) is attached to the test report as ``wallet_costs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.monerod import (
    MONEROD_BIN,
    TEST_ADDRESS,
    MonerodError,
    MonerodProcess,
    free_port,
    start_monerod,
)
from tests.support.wallet_cli import (
    WALLET_CLI_BIN,
    WalletCli,
    WalletCliError,
    WalletKeys,
    create_wallet,
    open_wallet,
)

pytestmark = [pytest.mark.monerod, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

#: Share difficulty and credits per share (10 credits per hash: ~300 credits/s here).
PAYMENT_DIFFICULTY = 10
PAYMENT_CREDITS = 100
#: The wallet mines until it holds this many credits (its default, 0, means 50000).
CREDITS_TARGET = 1000
#: Coinbase outputs mined to the wallet, and blocks on top so they unlock (60 needed).
USER_BLOCKS = 8
UNLOCK_BLOCKS = 62
#: Amount sent by the transfer (XMR, as the wallet takes it).
TRANSFER_XMR = "1.5"
_COST_LINE = re.compile(r"Call (\S+) cost (\d+) credits(?:, expected (\d+))?")


def _require_binaries() -> None:
    for binary in (MONEROD_BIN, WALLET_CLI_BIN):
        if not binary.exists():
            pytest.fail(
                f"{binary} is missing: run scripts/setup.sh (installs Debian's monero package)",
                pytrace=False,
            )


# -- the gateway as a process ----------------------------------------------------------


@dataclass
class GatewayProcess:
    """``python -m rpcpay serve`` in front of ``upstream``."""

    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _admin_call(port: int, method: str) -> Any:
    """A JSON-RPC call on the gateway's admin listener."""
    body = json.dumps({"jsonrpc": "2.0", "id": "0", "method": method}).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{port}/json_rpc", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def start_gateway_process(
    tmp: Path, upstream: MonerodProcess, payee: str, extra: Sequence[str] = ()
) -> GatewayProcess:
    port, admin_port = free_port(), free_port()
    while admin_port == port:
        admin_port = free_port()
    log_path = tmp / "gateway.log"
    cmd = [
        sys.executable, "-m", "rpcpay", "serve",
        "--upstream", upstream.url,
        "--upstream-kind", "monero",
        "--rpc-payment-address", payee,
        "--rpc-payment-difficulty", str(PAYMENT_DIFFICULTY),
        "--rpc-payment-credits", str(PAYMENT_CREDITS),
        "--rpc-bind-ip", HOST,
        "--rpc-bind-port", str(port),
        "--admin-bind-ip", HOST,
        "--admin-bind-port", str(admin_port),
        "--data-dir", str(tmp / "gateway-data"),
        "--pow-mode", "light",
        "--log-level", "info",
        *extra,
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    log = log_path.open("ab")
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    gateway = GatewayProcess(process, port, admin_port, log_path, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            gateway.stop()
            raise RuntimeError(
                f"gateway exited with code {process.returncode}:\n{gateway.log_tail()}"
            )
        with contextlib.suppress(OSError, ValueError, IndexError):
            socket.create_connection((HOST, port), timeout=1).close()
            if "result" in _admin_call(admin_port, "rpc_access_data"):
                return gateway
        time.sleep(0.1)
    gateway.stop()
    raise RuntimeError(f"gateway did not start within 60 s:\n{gateway.log_tail()}")


# -- the two servers -------------------------------------------------------------------


@dataclass
class Server:
    """Where the wallet connects (``wallet_port``) and the chain behind it (``upstream``,
    a monerod port that is unrestricted and free: generateblocks and look-ups)."""

    name: str
    wallet_port: int
    upstream: MonerodProcess
    payee: WalletKeys
    gateway: GatewayProcess | None = None

    def tracking(self) -> list[dict[str, Any]]:
        """rpc_access_tracking: calls served so far (rpc, count, time, credits).  monerod
        keeps one tracker for all its RPC ports, so its free port answers for both."""
        if self.gateway is not None:
            answer = _admin_call(self.gateway.admin_port, "rpc_access_tracking")
        else:
            answer = self.upstream.json_rpc("rpc_access_tracking")
        data: list[dict[str, Any]] = answer.get("result", {}).get("data", [])
        return data

    def logs(self) -> str:
        text = f"--- monerod log ---\n{self.upstream.log_tail(20)}"
        if self.gateway is not None:
            text += f"\n--- gateway log ---\n{self.gateway.log_tail(30)}"
        return text


@contextlib.contextmanager
def _paying_monerod(tmp: Path, payee: str) -> Iterator[tuple[MonerodProcess, int]]:
    """monerod with RPC payment on a restricted port (returned), its main port free."""
    for attempt in (1, 2):
        paid_port = free_port()
        restricted = [
            "--rpc-restricted-bind-ip",
            HOST,
            "--rpc-restricted-bind-port",
            str(paid_port),
        ]
        try:
            mon = start_monerod(
                tmp / f"attempt-{attempt}",
                payment_address=payee,
                difficulty=PAYMENT_DIFFICULTY,
                credits=PAYMENT_CREDITS,
                extra_args=restricted,
            )
        except MonerodError:
            if attempt == 2:
                raise
            continue  # the restricted port may have been taken meanwhile
        with mon:
            _wait_listening(paid_port, mon)
            yield mon, paid_port
        return


def _wait_listening(port: int, mon: MonerodProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise MonerodError(f"monerod's restricted port {port} never listened:\n{mon.log_tail()}")


@pytest.fixture(params=["monerod-builtin", "gateway"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    _require_binaries()
    payee = WalletKeys.random()
    if request.param == "monerod-builtin":
        with _paying_monerod(tmp_path / "server", payee.address) as (mon, paid_port):
            yield Server(request.param, paid_port, mon, payee)
        return
    with start_monerod(tmp_path / "server") as mon:
        gateway = start_gateway_process(tmp_path, mon, payee.address)
        try:
            yield Server(request.param, gateway.port, mon, payee, gateway)
        finally:
            gateway.stop()


# -- chain look-ups on the upstream's free port ----------------------------------------


def _rpc_result(mon: MonerodProcess, method: str, params: dict[str, Any]) -> dict[str, Any]:
    answer = mon.json_rpc(method, params)
    result = answer.get("result")
    if not isinstance(result, dict) or result.get("status") != "OK":
        raise MonerodError(f"{method}({params}) failed: {answer}")
    return result


def _headers(mon: MonerodProcess, start: int, end: int) -> list[dict[str, Any]]:
    """Block headers for heights start..end inclusive."""
    result = _rpc_result(mon, "get_block_headers_range", {"start_height": start, "end_height": end})
    headers: list[dict[str, Any]] = result["headers"]
    return headers


def _reward(mon: MonerodProcess, block_hash: str) -> int:
    header = _rpc_result(mon, "get_block_header_by_hash", {"hash": block_hash})["block_header"]
    return int(header["reward"])


def _wait_tx_seen(mon: MonerodProcess, txid: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until monerod knows ``txid`` (in its pool or already in a block)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = mon.post("/get_transactions", {"txs_hashes": [txid], "decode_as_json": False})
        txs = answer.get("txs") or []
        if txs:
            tx: dict[str, Any] = txs[0]
            return tx
        if time.monotonic() > deadline:
            raise AssertionError(f"monerod never saw transaction {txid}: {answer}")
        time.sleep(0.2)


def _stable_height(mon: MonerodProcess, settle: float = 1.0, timeout: float = 30.0) -> int:
    """The chain height once no block arrived for ``settle`` seconds (a share sent just
    before the wallet exited may still be turning into a block)."""
    deadline = time.monotonic() + timeout
    height = mon.height()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = mon.height()
        if now != height:
            height, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return height
    raise AssertionError(f"chain never settled (height {height})")


def _costs(wallet: WalletCli) -> list[tuple[str, int, int | None]]:
    return [
        (m.group(1), int(m.group(2)), int(m.group(3)) if m.group(3) else None)
        for m in _COST_LINE.finditer(wallet.log_text())
    ]


# -- the test --------------------------------------------------------------------------


def test_wallet_cli_mines_credits_syncs_and_transfers(
    server: Server, tmp_path: Path, record_property: Any
) -> None:
    up = server.upstream
    user, receiver = WalletKeys.random(), WalletKeys.random()
    start = up.height()
    user_blocks = up.generate_blocks(USER_BLOCKS, user.address)["blocks"]
    ours: set[str] = set(user_blocks)
    ours.update(up.generate_blocks(UNLOCK_BLOCKS, TEST_ADDRESS)["blocks"])
    expected_balance = sum(_reward(up, h) for h in user_blocks)

    wallets = tmp_path / "wallets"
    address = create_wallet(
        wallets,
        "user",
        user.spend_secret,
        settings=[("credits-target", str(CREDITS_TARGET)), ("ask-password", "0")],
    )
    assert address == user.address, "the wallet derived another address from the spend key"

    with open_wallet(wallets, "user", server.wallet_port) as wallet:
        try:
            # 1. It sees that the node wants payment, and mines for it on its own.
            wallet.expect(r"refresh failed: payment required", since=0, timeout=5)
            wallet.expect_log(
                r"credits per hash is >= our threshold \(-1\), starting mining", timeout=60
            )
            credits = wallet.wait_for_credits(CREDITS_TARGET, timeout=180)
            assert credits >= CREDITS_TARGET

            # 2. It syncs through the server and sees exactly what was mined to it.
            received = wallet.refresh()
            assert received >= USER_BLOCKS + UNLOCK_BLOCKS
            balance = wallet.balance()
            assert balance.total == expected_balance
            assert balance.unlocked == expected_balance

            # 3. rpc_payment_info shows the credits, at the server's terms.
            info = wallet.rpc_payment_info()
            assert info.payment_required
            assert info.credits is not None and info.credits > 0
            assert info.difficulty == PAYMENT_DIFFICULTY
            assert info.credits_per_hash_found == PAYMENT_CREDITS
            assert info.credits_target == CREDITS_TARGET

            # 4. A transfer goes through: send_raw_transaction is paid, the tx is mined.
            txid = wallet.transfer(receiver.address, TRANSFER_XMR)
            _wait_tx_seen(up, txid)
            ours.update(up.generate_blocks(1, TEST_ADDRESS)["blocks"])
            mined = _wait_tx_seen(up, txid)
            assert not mined["in_pool"] and mined["block_height"] > start, mined
            relay_costs = [c for c in _costs(wallet) if c[0] == "/sendrawtransaction"]
            assert relay_costs, "the wallet logged no paid /sendrawtransaction"
            assert all(cost >= 100 for _, cost, _ in relay_costs), relay_costs
            after = wallet.rpc_payment_info()
            assert after.spent_this_session is not None and info.spent_this_session is not None
            assert after.spent_this_session >= info.spent_this_session + min(
                cost for _, cost, _ in relay_costs
            )
        except (WalletCliError, AssertionError) as exc:
            # One message with what the wallet, monerod and the gateway were saying.
            detail = str(exc) if isinstance(exc, WalletCliError) else f"{exc}\n{wallet.describe()}"
            raise AssertionError(f"[{server.name}] {detail}\n{server.logs()}") from None
        finally:
            costs = _costs(wallet)
            shares = len(re.findall(r"Found nonce \d+ at diff", wallet.log_text()))
    record_property("wallet_costs", json.dumps(costs))
    tracking = {t["rpc"]: (t["count"], t["credits"]) for t in server.tracking() if t["count"]}
    record_property("server_tracking", json.dumps(tracking))
    print(f"[{server.name}] server tracking (rpc: count, credits): {tracking}")
    mismatches = sorted({c for c in costs if c[2] is not None})
    print(f"[{server.name}] shares found: {shares}; cost mismatches: {mismatches}")

    # 5. Shares at the network difficulty became blocks paying the payment address.
    end = _stable_height(up)
    share_blocks = [h for h in _headers(up, start, end - 1) if h["hash"] not in ours]
    assert share_blocks, f"no block on the chain came from a share (shares found: {shares})"
    assert len(share_blocks) <= shares
    payee_expected = sum(int(h["reward"]) for h in share_blocks)
    create_wallet(
        wallets, "payee", server.payee.view_secret, view_only_address=server.payee.address
    )
    with open_wallet(wallets, "payee", up.rpc_port) as payee_wallet:
        payee_wallet.refresh()
        payee_balance = payee_wallet.balance()
    assert payee_balance.total == payee_expected, (
        f"view-only wallet of the payment address holds {payee_balance.total}, the "
        f"{len(share_blocks)} share-found blocks paid {payee_expected}"
    )
