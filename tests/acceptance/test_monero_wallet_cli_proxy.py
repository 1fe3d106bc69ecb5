"""Acceptance: Debian's unmodified monero-wallet-cli 0.18 syncs and transfers through
``rpcpay wallet proxy`` and a paying ``rpcpay serve`` in front of monerod, its own payment
code unused: the proxy answers ``rpc_access_info`` as a free node does, so the wallet never
mines; the proxy pays the gateway (JSON-RPC, the JSON endpoints and the epee ``.bin``
endpoints, with ``client`` inserted) by mining itself. Every part is a real process."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_monero_wallet_cli import (
    TRANSFER_XMR,
    UNLOCK_BLOCKS,
    USER_BLOCKS,
    GatewayProcess,
    _require_binaries,
    _reward,
    _wait_tx_seen,
    start_gateway_process,
)
from tests.support.monerod import TEST_ADDRESS, MonerodProcess, free_port, start_monerod
from tests.support.processes import stop_process
from tests.support.wallet_cli import WalletCliError, WalletKeys, create_wallet, open_wallet

pytestmark = [pytest.mark.monerod, pytest.mark.slow]
RING_FILLER_BLOCKS = 30


def start_proxy(tmp: Path, gateway: GatewayProcess) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = (tmp / "proxy.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rpcpay", "wallet", "--wallet-file", str(tmp / "w.json"),
         "proxy", "--listen", f"127.0.0.1:{port}",
         "--server", f"http://127.0.0.1:{gateway.port}", "--max-latency-ms", "60000"],
        stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    import socket

    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "proxy.log").read_text()[-3000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    raise AssertionError("proxy never listened")


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[MonerodProcess, GatewayProcess, int]]:
    _require_binaries()
    payee = WalletKeys.random()
    with start_monerod(tmp_path / "server") as mon:
        gateway = start_gateway_process(tmp_path, mon, payee.address)
        proxy, port = start_proxy(tmp_path, gateway)
        try:
            yield mon, gateway, port
        finally:
            stop_process(proxy, 10)
            gateway.stop()
    log = (tmp_path / "proxy.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def test_wallet_cli_syncs_and_transfers_through_the_proxy(
    chain: tuple[MonerodProcess, GatewayProcess, int], tmp_path: Path
) -> None:
    up, gateway, proxy_port = chain
    user, receiver = WalletKeys.random(), WalletKeys.random()
    # Enough unlocked outputs for a ring of 16 (the reference test gets them from shares).
    up.generate_blocks(RING_FILLER_BLOCKS, TEST_ADDRESS)
    start = up.height()
    user_blocks = up.generate_blocks(USER_BLOCKS, user.address)["blocks"]
    up.generate_blocks(UNLOCK_BLOCKS, TEST_ADDRESS)
    expected = sum(_reward(up, h) for h in user_blocks)
    wallets = tmp_path / "wallets"
    create_wallet(wallets, "user", user.spend_secret,
                  settings=[("credits-target", "0"), ("ask-password", "0")])  # fmt: skip
    with open_wallet(wallets, "user", proxy_port) as wallet:
        try:
            # Opening the wallet synced it through the proxy; a refresh finds nothing new.
            wallet.refresh()
            balance = wallet.balance()
            assert balance.total == balance.unlocked == expected
            txid = wallet.transfer(receiver.address, TRANSFER_XMR)
            _wait_tx_seen(up, txid)
            up.generate_blocks(1, TEST_ADDRESS)
            mined = _wait_tx_seen(up, txid)
            assert not mined["in_pool"] and mined["block_height"] > start, mined
            log = wallet.log_text()
        except (WalletCliError, AssertionError) as exc:
            raise AssertionError(
                f"{exc}\n{wallet.describe()}\n--- gateway ---\n{gateway.log_tail(30)}\n"
                f"--- proxy ---\n{(tmp_path / 'proxy.log').read_text()[-3000:]}"
            ) from None
    # The wallet's own payment code never ran: it found nothing to pay and mined nothing.
    assert not re.search(r"Found nonce \d+ at diff", log)
    assert "payment required" not in log.lower()
    # The proxy paid the gateway: the gateway served the wallet's sync and relay for credits.
    tracking = {t["rpc"]: t for t in _tracking(gateway)}
    assert tracking["rpc_access_submit_nonce"]["count"] >= 1
    assert tracking["get_blocks"]["credits"] > 0  # /getblocks.bin, epee, client inserted
    assert tracking["get_info"]["credits"] > 0  # JSON endpoint or JSON-RPC
    assert tracking["send_raw_tx"]["credits"] >= 100  # the transfer's relay


def _tracking(gateway: GatewayProcess) -> list[dict[str, object]]:
    from tests.acceptance.test_monero_wallet_cli import _admin_call

    rows: list[dict[str, object]] = _admin_call(gateway.admin_port, "rpc_access_tracking")[
        "result"
    ]["data"]
    return rows
