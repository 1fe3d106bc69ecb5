"""Real web3.py through the gateway in front of anvil, paying with hashes and then with
lottery cheques (issue 12): ``Web3(PayingHTTPProvider(url, funder=…))`` reads the chain id,
the block number and a balance, pays a priced ``eth_getLogs``, sends a signed transfer that
is then mined, and a batch; the httpx ``PayingAuth`` pays the same gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest
from eth_account import Account
from web3 import Web3

from rpcpay.chain import JsonRpcChain, dev_keys
from rpcpay.chain.inprocess import DEV_BALANCE
from rpcpay.gateway.cheques import LotterySettings
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.stamper_server import RunningStamper, StamperConfig, start_stamper
from rpcpay.wallet.cheque_funding import ChequeFunder
from rpcpay.wallet.client import Funder
from rpcpay.wallet.funding import MiningFunder
from rpcpay.wallet.httpx_auth import PayingAuth
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.lottery_payer import LotteryPayer, ServerSpec
from rpcpay.wallet.lottery_payer_state import PayerStateFile
from rpcpay.wallet.web3_provider import PayingHTTPProvider
from tests.acceptance.conftest import (
    CONFIRMATIONS,
    DEPOSIT,
    FEE_BPS,
    GATEWAY_MARGIN,
    PARAMS,
    PRICE,
    STAMPER_MARGIN,
    rpc_chain,
    write_key,
)
from tests.gateway.conftest import gateway_config
from tests.support.anvil import AnvilPool, AnvilProcess, anvil_pool

__all__ = ["anvil_pool"]
pytestmark = pytest.mark.anvil

GET_LOGS_PRICE = 5
CHEQUE_CREDITS = 40  # one cheque a refusal: 40 credits of 1 gwei
REVEAL_IN = 40


@dataclass
class Net:
    node: AnvilProcess
    chain: JsonRpcChain
    contract: bytes
    payer_key: EthKey
    sender: EthKey
    stamper: RunningStamper
    gateway: RunningGateway

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.public_port}"


@pytest.fixture
async def net(anvil_pool: AnvilPool, tmp_path: Path) -> AsyncIterator[Net]:
    """anvil as the gateway's backend and as the lottery's chain; a stamper; the gateway."""
    node = anvil_pool.fresh(1337)
    keys = dev_keys(5, b"web3 acceptance")
    for key in keys:
        node.set_balance(key.address, DEV_BALANCE)
    deployer, stamper_key, payer_key, sender, gateway_key = keys
    chain = rpc_chain(node.url)
    contract = chain.deploy(deployer, PARAMS)
    chain.deposit_stamper(stamper_key, DEPOSIT)
    stamper_chain = rpc_chain(node.url)
    stamper_chain.attach(contract)
    stamper = await start_stamper(
        StamperConfig(bind_port=0, data_dir=tmp_path / "stamper", fee_bps=FEE_BPS,
                      reveal_margin=STAMPER_MARGIN, confirmations=CONFIRMATIONS,
                      store_sync="normal"),
        stamper_chain,
        stamper_key,
    )  # fmt: skip
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 1, "methods": {"eth_getLogs": GET_LOGS_PRICE}}))
    lottery = LotterySettings(
        contract=contract, chain_url=node.url,
        key_file=write_key(tmp_path / "gw" / "lottery.key", gateway_key),
        credit_price_wei=PRICE, min_stamper_deposit=DEPOSIT // 2,
        reveal_margin=GATEWAY_MARGIN, confirmations=CONFIRMATIONS, gossip_peers=(),
        claim_interval_s=0.2,
    )  # fmt: skip
    gateway = await start_gateway(
        gateway_config(node.url, tmp_path / "gw", price_file=prices, lottery=lottery)
    )
    try:
        yield Net(node, chain, contract, payer_key, sender, stamper, gateway)
    finally:
        await gateway.close()
        await stamper.close()
        stamper_chain.close()
        chain.close()


def web3_session(url: str, key: ClientKey, funder: Funder, sender: EthKey) -> dict[str, object]:
    """Everything the issue asks of web3.py, run with the paying provider (blocking)."""
    provider = PayingHTTPProvider(url, key, funder=funder)
    try:
        w3 = Web3(provider)
        seen: dict[str, object] = {"chain_id": w3.eth.chain_id}
        seen["block"] = w3.eth.block_number
        me = Web3.to_checksum_address(sender.address)
        seen["balance"] = w3.eth.get_balance(me)
        seen["logs"] = w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"})
        to = Web3.to_checksum_address(ClientKey().public[:20])
        tx = {
            "to": to, "value": 12345, "gas": 21_000, "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(me), "chainId": seen["chain_id"],
        }  # fmt: skip
        signed = Account.sign_transaction(tx, sender.secret)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)
        seen["receipt_status"] = receipt["status"]
        seen["mined_in"] = receipt["blockNumber"]
        seen["received"] = w3.eth.get_balance(to)
        with w3.batch_requests() as batch:
            batch.add(w3.eth.get_block_number())
            batch.add(w3.eth.get_balance(to))
            seen["batch"] = batch.execute()
        seen["credits"] = provider.credits
        return seen
    finally:
        provider.close()


def check_session(net: Net, seen: dict[str, object]) -> None:
    assert seen["chain_id"] == 1337
    assert isinstance(seen["block"], int) and seen["block"] >= 1
    assert isinstance(seen["balance"], int) and seen["balance"] > 0
    logs = seen["logs"]
    assert isinstance(logs, list) and logs, "the contract's deposit events"
    assert {log["address"].lower() for log in logs} == {"0x" + net.contract.hex()}
    assert seen["receipt_status"] == 1
    assert seen["received"] == 12345
    batch = seen["batch"]
    assert isinstance(batch, list) and batch[0] >= seen["mined_in"] and batch[1] == 12345


async def test_web3_pays_with_hashes(net: Net) -> None:
    key = ClientKey()
    funder = MiningFunder()
    try:
        seen = await asyncio.to_thread(web3_session, net.url, key, funder, net.sender)
    finally:
        funder.close()
    check_session(net, seen)
    account = await net.gateway.ledger.get(key.public)
    assert account is not None and account.credits_total % 50 == 0
    # The priced eth_getLogs cost its price; the ledger and the client agree.
    assert net.gateway.core.tracker._stats["eth_getLogs"].credits == GET_LOGS_PRICE
    assert seen["credits"] == account.balance


async def test_web3_pays_with_lottery_cheques(net: Net, tmp_path: Path) -> None:
    key = ClientKey()
    chain = rpc_chain(net.node.url)
    chain.attach(net.contract)
    state = PayerStateFile(tmp_path / "payer.json")
    server = ServerSpec(net.url, None, CHEQUE_CREDITS * PRICE)  # per minute = per interval

    def make_payer(session: aiohttp.ClientSession) -> LotteryPayer:
        return LotteryPayer(
            chain, net.payer_key, state, f"http://127.0.0.1:{net.stamper.port}", [server],
            key, session, interval=60.0, prize=100 * CHEQUE_CREDITS * PRICE,
            reveal_blocks=REVEAL_IN,
        )  # fmt: skip

    funder = ChequeFunder(make_payer, confirm_timeout=30, poll_s=0.2)

    async def confirm_new_lotteries() -> None:
        # anvil mines only on demand: give a new lottery its confirmation.
        while True:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(net.node.rpc, "evm_mine")

    miner = asyncio.create_task(confirm_new_lotteries())
    try:
        seen = await asyncio.to_thread(web3_session, net.url, key, funder, net.sender)
    finally:
        miner.cancel()
        chain.close()
    check_session(net, seen)
    account = await net.gateway.ledger.get(key.public)
    assert account is not None and account.nonces_good == 0  # not one hash
    assert account.credits_total > 0 and account.credits_total % CHEQUE_CREDITS == 0
    desk = net.gateway.cheques
    assert desk is not None


async def test_httpx_auth_pays(net: Net) -> None:
    funder = MiningFunder()
    auth = PayingAuth(net.url, funder=funder)
    try:
        async with httpx.AsyncClient(auth=auth) as http:
            body = {"jsonrpc": "2.0", "id": "x", "method": "eth_chainId", "params": []}
            response = await http.post(net.url + "/", json=body)
            assert response.status_code == 200
            assert response.json()["result"] == "0x539"
            unpaid = await httpx.AsyncClient().post(net.url + "/", json=body)
            assert unpaid.status_code == 402

        def sync_call() -> httpx.Response:
            with httpx.Client(auth=auth) as http:
                return http.post(net.url + "/", json=[body, {**body, "id": 2}])

        batch = await asyncio.to_thread(sync_call)
        assert [a["result"] for a in batch.json()] == ["0x539", "0x539"]
    finally:
        await auth.aclose()
        await asyncio.to_thread(auth.close)
        funder.close()


async def test_wallet_call_through_the_gateway_to_anvil(
    net: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rpcpay wallet call`` with Ethereum methods: no params, and array params."""
    from rpcpay.cli import build_parser
    from rpcpay.wallet.commands import run_wallet

    def call(*argv: str) -> int:
        args = build_parser().parse_args(
            ["wallet", "--daemon", net.url, "--wallet-file", str(tmp_path / "w.json"),
             "--mining-mode", "light", "call", *argv, "--threads", "1"]
        )  # fmt: skip
        return run_wallet(args)

    assert await asyncio.to_thread(call, "eth_blockNumber") == 0
    assert int(json.loads(capsys.readouterr().out), 16) >= 1
    who = "0x" + net.sender.address.hex()
    assert await asyncio.to_thread(call, "eth_getBalance", json.dumps([who, "latest"])) == 0
    assert json.loads(capsys.readouterr().out) == net.node.rpc("eth_getBalance", [who, "latest"])
