"""Fixtures for gateway tests: a toy JSON-RPC backend that counts what reaches it, a
gateway (in-process, real listeners on loopback) in front of it, and ``peers``: a gateway
in front of a plain monerod beside a monerod with payment on, for differential tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rpcpay.errors import WireError
from rpcpay.gateway.connections import ConnectionLimits
from rpcpay.gateway.jsoncodec import decode_json
from rpcpay.gateway.limits import AbuseLimits
from rpcpay.gateway.server import GatewayConfig, RunningGateway, start_gateway
from rpcpay.gateway.upstream import HttpUpstream, UpstreamReply
from rpcpay.testing import ToyBackend
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.miner import LightMiner
from rpcpay.wire import epee
from rpcpay.wire.epee import Section
from tests.conftest import PAYING_CREDITS, PAYING_DIFFICULTY
from tests.support.monerod import TEST_ADDRESS, MonerodProcess

JSON = Any


@pytest.fixture
async def toy_backend() -> AsyncIterator[ToyBackend]:
    async with ToyBackend() as backend:
        yield backend


def gateway_config(upstream: str, data_dir: Path, **overrides: Any) -> GatewayConfig:
    """A test gateway: light-mode PoW, tiny difficulty, free ports."""
    settings: dict[str, Any] = {
        "upstream": upstream,
        "upstream_kind": "jsonrpc",
        "difficulty": 2,
        "credits_per_hash": 50,
        "bind_port": 0,
        "admin_bind_port": 0,
        "data_dir": data_dir,
        "pow_mode": "light",
        "verify_threads": 1,
        "ledger_sync": "normal",
        "limits": AbuseLimits(),
        # Refusals undelayed: fuzz and differential tests send hundreds of them on purpose
        # (the delay has its own test in test_connections.py).
        "connections": ConnectionLimits(refusal_delay_s=0),
    }
    settings.update(overrides)
    return GatewayConfig(**settings)


@pytest.fixture
async def gateway(toy_backend: ToyBackend, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw"))
    yield running
    await running.close()


async def post(
    port: int, path: str, body: bytes | JSON, headers: dict[str, str] | None = None
) -> tuple[int, JSON]:
    """POST to a local listener; (HTTP status, decoded JSON or None)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {}
        ) as response,
    ):
        raw = await response.read()
        try:
            return response.status, decode_json(raw)
        except ValueError:
            return response.status, None


def rpc(method: str, params: JSON = None, **extra: JSON) -> JSON:
    body: dict[str, JSON] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        body["params"] = params
    body.update(extra)
    return body


async def access_info(port: int, key: ClientKey) -> JSON:
    """rpc_access_info's result for ``key`` (fails the test on an error)."""
    status, answer = await post(
        port, "/json_rpc", rpc("rpc_access_info", {"client": key.client_id()})
    )
    assert status == 200 and "result" in answer, answer
    return answer["result"]


def find_nonce(info: JSON, start: int = 0) -> int:
    """Search the job in ``info`` for a nonce meeting its difficulty (light mode)."""
    miner = LightMiner()
    try:
        nonce, _ = miner.search(
            bytes.fromhex(info["seed_hash"]),
            bytes.fromhex(info["hashing_blob"]),
            int(info["diff"]),
            start,
            100_000,
        )
    finally:
        miner.close()
    assert nonce is not None
    return nonce


async def earn_share(port: int, key: ClientKey, start: int = 0) -> JSON:
    """Mine and submit one good share, searching nonces from ``start``; the submit answer."""
    info = await access_info(port, key)
    nonce = find_nonce(info, start)
    _, answer = await post(
        port,
        "/json_rpc",
        rpc(
            "rpc_access_submit_nonce",
            {"client": key.client_id(), "nonce": nonce, "cookie": info["cookie"]},
        ),
    )
    return answer


@dataclass
class Peer:
    """One side of the comparison: where to send public and admin calls."""

    name: str
    port: int
    admin_port: int

    async def rpc(self, method: str, params: JSON = None) -> JSON:
        return (await post(self.port, "/json_rpc", rpc(method, params)))[1]

    async def endpoint(self, path: str, body: JSON) -> JSON:
        return (await post(self.port, path, body))[1]

    async def fund(self, key: ClientKey, amount: int) -> int:
        _, answer = await post(
            self.admin_port,
            "/json_rpc",
            rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": amount}),
        )
        return int(answer["result"]["credits"])

    async def entry(self, key: ClientKey) -> JSON:
        _, answer = await post(self.admin_port, "/json_rpc", rpc("rpc_access_data"))
        for entry in answer["result"].get("entries", []):
            if entry["client"] == key.public.hex():
                return entry
        return None


def _port(mon: MonerodProcess) -> int:
    return int(mon.url.rsplit(":", 1)[1])


@pytest.fixture
async def peers(
    monerod: MonerodProcess, paying_monerod: MonerodProcess, tmp_path: Path
) -> AsyncIterator[tuple[Peer, Peer, RunningGateway]]:
    config = gateway_config(
        monerod.url,
        tmp_path,
        upstream_kind="monero",
        payment_address=TEST_ADDRESS,
        difficulty=PAYING_DIFFICULTY,
        credits_per_hash=PAYING_CREDITS,
    )
    running = await start_gateway(config)
    reference = Peer("monerod", _port(paying_monerod), _port(paying_monerod))
    ours = Peer("rpcpay", running.public_port, running.admin_port)
    yield reference, ours, running
    await running.close()


async def post_bin(port: int, path: str, request: Section) -> tuple[int, Section | bytes]:
    """POST an epee request; (HTTP status, decoded epee answer, or the raw body if the
    answer is not epee)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", data=epee.encode(request)) as response,
    ):
        raw = await response.read()
        try:
            return response.status, epee.decode(raw)
        except WireError:
            return response.status, raw


@dataclass
class CountingUpstream(HttpUpstream):
    """The real HTTP upstream, noting which paths reach it."""

    paths: list[str] = field(default_factory=list)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.paths = []

    async def post(self, path: str, body: bytes, content_type: str) -> UpstreamReply:
        self.paths.append(path)
        return await super().post(path, body, content_type)

    def binary_calls(self) -> int:
        return sum(1 for p in self.paths if p.endswith(".bin"))
