"""kill -9 of a real ``rpcpay serve`` with the lottery rail on anvil: every credit a
client was told survives, and no cheque is ever credited twice after the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rpcpay.chain import ContractParams, JsonRpcChain, dev_keys
from rpcpay.chain.inprocess import DEV_BALANCE
from rpcpay.lottery.cheque import Cheque, StampedCheque, encode_stamped
from rpcpay.lottery.eip712 import sign_cheque, sign_stamp
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, post, rpc, toy_backend
from tests.support.anvil import AnvilPool, anvil_pool
from tests.support.lottery import pay_params
from tests.support.monerod import free_port

# Fixtures used by name: listed so that ruff sees them used.
__all__ = ["anvil_pool", "toy_backend"]

pytestmark = pytest.mark.anvil

PARAMS = ContractParams(
    max_reveal_delay=60, redeem_blocks=20, proof_grace=10, whistleblower_bps=1_000,
    compensation_bps=5_000,
)  # fmt: skip
PRICE = 10**9


def _serve(
    backend: ToyBackend, data: Path, port: int, chain_url: str, contract: bytes
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "rpcpay", "serve", "--upstream", backend.url,
            "--upstream-kind", "jsonrpc", "--rpc-bind-port", str(port), "--no-admin",
            "--data-dir", str(data), "--pow-mode", "light", "--verify-threads", "1",
            "--log-level", "warning", "--lottery-chain-url", chain_url,
            "--lottery-contract", "0x" + contract.hex(), "--credit-price-wei", str(PRICE),
            "--min-stamper-deposit", str(10**17), "--reveal-margin", "5",
            "--confirmations", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise AssertionError("gateway did not start")


async def test_told_cheque_credits_survive_kill_9_and_are_never_doubled(
    anvil_pool: AnvilPool, toy_backend: ToyBackend, tmp_path: Path
) -> None:
    node = anvil_pool.fresh(1337)
    keys = dev_keys(4, b"lottery crash")
    for key in keys:
        node.set_balance(key.address, DEV_BALANCE)
    deployer, stamper, payer, _ = keys
    chain = JsonRpcChain(node.url, chain_id=1337, poll_interval=0.001)
    contract = chain.deploy(deployer, PARAMS)
    chain.deposit_stamper(stamper, 10**18)
    terms, _ = chain.create_lottery(
        payer, stamper.address, 10**15, chain.block_number() + 40, b"\x03" * 32
    )
    chain.mine(1)
    data, port = tmp_path / "gw", free_port()
    proc = await asyncio.to_thread(_serve, toy_backend, data, port, node.url, contract)
    # The gateway made its key on first start; its address is the cheques' recipient.
    _, info = await post(port, "/json_rpc", rpc("lottery_info", {}))
    recipient = bytes.fromhex(info["result"]["recipient"][2:])
    client = ClientKey()
    domain = chain.domain
    wires = []
    for i in range(3):
        c = Cheque(terms.id, recipient, i * 7 * PRICE, 7 * PRICE)
        sc = StampedCheque(c, sign_cheque(payer, domain, c), sign_stamp(stamper, domain, c))
        wires.append(encode_stamped(domain, sc).hex())
    told = 0
    try:
        for wire in wires:
            _, answer = await post(
                port,
                "/json_rpc",
                rpc("lottery_pay_cheque", pay_params(client, wire, payer)),
            )
            told = answer["result"]["credits"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert told == 21
    proc = await asyncio.to_thread(_serve, toy_backend, data, port, node.url, contract)
    try:
        for wire in wires:
            _, answer = await post(
                port,
                "/json_rpc",
                rpc("lottery_pay_cheque", pay_params(client, wire, payer)),
            )
            assert answer["error"]["code"] == -40
            assert answer["error"]["message"].startswith("duplicate:")
        # The told balance is there: 21 one-credit calls pass, the 22nd is refused.
        for n in range(21):
            _, call = await post(port, "/", rpc("eth_call", [], client=client.client_id()))
            assert call["credits"] == 20 - n
        _, call = await post(port, "/", rpc("eth_call", [], client=client.client_id()))
        assert call["error"]["data"]["status"] == "PAYMENT REQUIRED"
    finally:
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
