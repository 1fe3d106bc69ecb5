"""Shared set-up of the lottery end-to-end tests: one anvil chain with the settlement
contract, a stamper service, and three gateways with the lottery rail in front of the toy
JSON-RPC backend, each gossiping to the other two (``lottery_net``)."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from rpcpay.chain import ContractParams, JsonRpcChain, dev_keys
from rpcpay.chain.inprocess import DEV_BALANCE
from rpcpay.gateway.cheques import ChequeDesk, LotterySettings
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.stamper_server import RunningStamper, StamperConfig, start_stamper
from tests.gateway.conftest import ToyBackend, gateway_config, toy_backend
from tests.support.anvil import AnvilPool, AnvilProcess, anvil_pool

# Fixtures used by name: listed so that ruff sees them used.
__all__ = ["anvil_pool", "toy_backend"]

PARAMS = ContractParams(
    max_reveal_delay=60, redeem_blocks=20, proof_grace=10, whistleblower_bps=1_000,
    compensation_bps=5_000,
)  # fmt: skip
DEPOSIT = 10**18
PRICE = 10**9  # wei per credit: 1 gwei
FEE_BPS = 100
CONFIRMATIONS = 1
STAMPER_MARGIN = 8
GATEWAY_MARGIN = 5


def write_key(path: Path, key: EthKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.secret.hex())
    return path


def rpc_chain(url: str) -> JsonRpcChain:
    return JsonRpcChain(url, chain_id=1337, poll_interval=0.001)


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait for ``check`` (plain or async) to hold."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await _holds(check):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def all_settled(desks: Sequence[ChequeDesk | None], lottery: bytes) -> bool:
    """Whether every desk's store has closed ``lottery`` (for ``until``)."""
    return all([d is not None and lottery in await d.store.cheques.outcomes() for d in desks])


async def _holds(check: Callable[[], bool | Awaitable[bool]]) -> bool:
    got = check()
    return await got if inspect.isawaitable(got) else got


@dataclass
class LotteryNet:
    """What ``lottery_net`` started. ``chain`` is the test's own view of the node."""

    node: AnvilProcess
    chain: JsonRpcChain
    contract: bytes
    stamper_key: EthKey
    payer_key: EthKey
    cheater: EthKey
    gateway_keys: list[EthKey]
    stamper: RunningStamper
    gateways: list[RunningGateway]

    @property
    def stamper_url(self) -> str:
        return f"http://127.0.0.1:{self.stamper.port}"

    @property
    def desks(self) -> list[ChequeDesk]:
        desks = [gw.cheques for gw in self.gateways]
        assert all(d is not None for d in desks)
        return [d for d in desks if d is not None]


def _free_ports(n: int) -> list[int]:
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


@pytest.fixture
async def lottery_net(
    request: pytest.FixtureRequest, anvil_pool: AnvilPool, toy_backend: ToyBackend, tmp_path: Path
) -> AsyncIterator[LotteryNet]:
    """A fresh anvil with the contract, a funded stamper (and a funded colluder), a
    stamper service, and three lottery gateways at ``PRICE`` wei a credit (or at the three
    prices an indirect parametrization passes)."""
    prices: tuple[int, int, int] = getattr(request, "param", (PRICE, PRICE, PRICE))
    node = anvil_pool.fresh(1337)
    keys = dev_keys(8, b"lottery e2e")
    for key in keys:
        node.set_balance(key.address, DEV_BALANCE)
    deployer, stamper_key, payer_key, cheater, *gateway_keys = keys
    chain = rpc_chain(node.url)
    contract = chain.deploy(deployer, PARAMS)
    chain.deposit_stamper(stamper_key, DEPOSIT)
    chain.deposit_stamper(cheater, DEPOSIT)
    stamper_chain = rpc_chain(node.url)
    stamper_chain.attach(contract)
    stamper = await start_stamper(
        StamperConfig(
            bind_port=0, data_dir=tmp_path / "stamper", fee_bps=FEE_BPS,
            reveal_margin=STAMPER_MARGIN, confirmations=CONFIRMATIONS, store_sync="normal",
        ),
        stamper_chain,
        stamper_key,
    )  # fmt: skip
    gateways: list[RunningGateway] = []
    try:
        # A gateway's peers are fixed at start: reserve the three ports first.
        ports = _free_ports(3)
        for i in range(3):
            settings = LotterySettings(
                contract=contract,
                chain_url=node.url,
                key_file=write_key(tmp_path / f"gw{i}" / "lottery.key", gateway_keys[i]),
                credit_price_wei=prices[i],
                min_stamper_deposit=DEPOSIT // 2,
                reveal_margin=GATEWAY_MARGIN,
                confirmations=CONFIRMATIONS,
                gossip_peers=tuple(f"http://127.0.0.1:{p}" for j, p in enumerate(ports) if j != i),
                claim_interval_s=0.2,
            )
            config = gateway_config(
                toy_backend.url, tmp_path / f"gw{i}", lottery=settings, bind_port=ports[i]
            )
            gateways.append(await start_gateway(config))
        yield LotteryNet(
            node, chain, contract, stamper_key, payer_key, cheater, gateway_keys[:3], stamper,
            gateways,
        )  # fmt: skip
    finally:
        for gw in gateways:
            await gw.close()
        await stamper.close()
        stamper_chain.close()
        chain.close()
