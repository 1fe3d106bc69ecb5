"""Acceptance: ``rpcpay wallet proxy`` (a real process) pays a gateway with the lottery rail
on by cheque where a cheque is cheaper than mining: the gateway (in front of anvil) sells a
credit for 1 gwei, and at difficulty 2 and 50 credits a hash a credit takes 0.04 hashes,
which at ``--hash-value-wei`` 100 gwei cost 4 gwei. Stock web3.py (``HTTPProvider``) and
curl get their answers through the proxy, and the gateway's ledger shows not one hash."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from rpcpay.wallet.keys import ClientKey
from tests.acceptance.conftest import PRICE, write_key
from tests.acceptance.test_proxy_market import RPCPAY, curl, wait_port
from tests.acceptance.test_web3_gateway import CHEQUE_CREDITS, GET_LOGS_PRICE, REVEAL_IN, Net, net
from tests.support.anvil import anvil_pool
from tests.support.monerod import free_port
from tests.support.processes import stop_process

__all__ = ["anvil_pool", "net"]
pytestmark = pytest.mark.anvil

HASH_VALUE_WEI = 100 * 10**9  # a credit by mining: 0.04 hashes x 100 gwei = 4 gwei > 1 gwei


def stock_web3_session(port: int) -> dict[str, object]:
    w3 = Web3(HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 90}))
    return {
        "chain_id": w3.eth.chain_id,
        "block": w3.eth.block_number,
        "logs": w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"}),
        "curl": curl(port, {"jsonrpc": "2.0", "id": "c", "method": "eth_chainId"}),
    }


async def run_proxy(
    net: Net, tmp_path: Path, key: ClientKey, stamper_url: str
) -> tuple[dict[str, object], str]:
    """Run the proxy process paying ``net``'s gateway; stock web3.py and curl through it."""
    port = free_port()
    proxy = subprocess.Popen(
        [*RPCPAY, "wallet", "--wallet-file", str(tmp_path / "wallet.json"),
         "--rpc-client-secret-key", key.secret.hex(), "proxy",
         "--listen", f"127.0.0.1:{port}", "--server", net.url,
         "--lottery-contract", "0x" + net.contract.hex(), "--chain-url", net.node.url,
         "--payer-key-file", str(write_key(tmp_path / "payer.key", net.payer_key)),
         "--lottery-file", str(tmp_path / "lottery.json"), "--stamper-url", stamper_url,
         "--prize", str(100 * CHEQUE_CREDITS * PRICE), "--reveal-blocks", str(REVEAL_IN),
         "--cheque-wei", str(CHEQUE_CREDITS * PRICE), "--hash-value-wei", str(HASH_VALUE_WEI),
         "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip

    async def confirm_new_lotteries() -> None:
        # anvil mines only on demand: give a new lottery its confirmation.
        while True:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(net.node.rpc, "evm_mine")

    miner = asyncio.create_task(confirm_new_lotteries())
    try:
        await asyncio.to_thread(wait_port, port, proxy)
        seen = await asyncio.to_thread(stock_web3_session, port)
    finally:
        miner.cancel()
        await asyncio.to_thread(stop_process, proxy, 10)
    stderr = (await asyncio.to_thread(proxy.communicate))[1].decode()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert seen["chain_id"] == 1337
    assert isinstance(seen["block"], int) and seen["block"] >= 1
    logs = seen["logs"]
    assert isinstance(logs, list) and logs, "the contract's deposit events"
    assert seen["curl"] == {"jsonrpc": "2.0", "id": "c", "result": "0x539"}
    return seen, stderr


async def test_proxy_pays_by_cheque_where_cheaper(net: Net, tmp_path: Path) -> None:
    key = ClientKey()
    _, stderr = await run_proxy(net, tmp_path, key, f"http://127.0.0.1:{net.stamper.port}")
    status = json.loads(next(line for line in stderr.splitlines() if '"listening"' in line))
    (server,) = status["servers"]
    assert server["credit_price_wei"] == PRICE and server["pays_by"] == "cheque"
    assert "mining instead" not in stderr
    # Paid by cheques only: not one hash, whole cheques of credits, the calls' prices spent.
    account = await net.gateway.ledger.get(key.public)
    assert account is not None and account.nonces_good == 0
    assert account.credits_total > 0 and account.credits_total % CHEQUE_CREDITS == 0
    assert account.credits_total - account.balance == 3 + GET_LOGS_PRICE


async def test_proxy_mines_when_a_cheque_cannot_be_paid(net: Net, tmp_path: Path) -> None:
    """No stamper answers: each cheque fails, the proxy mines instead, the clients never
    notice."""
    key = ClientKey()
    _, stderr = await run_proxy(net, tmp_path, key, f"http://127.0.0.1:{free_port()}")
    assert "cheque not paid, mining instead" in stderr
    account = await net.gateway.ledger.get(key.public)
    assert account is not None and account.nonces_good > 0
    assert account.credits_total - account.balance == 3 + GET_LOGS_PRICE
