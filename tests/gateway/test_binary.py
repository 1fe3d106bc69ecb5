"""The binary (epee) endpoints against monerod 0.18 with payment on: same refusals, same
prices, the same cap on blocks by credits; and what the gateway adds (clean errors)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.gateway.binary_costs import BINARY_RULES, blocks_cost, hashes_cost
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire import epee
from rpcpay.wire.epee import Array, Int, Section, Type
from tests.gateway.conftest import CountingUpstream, Peer, gateway_config, post, post_bin, rpc
from tests.support.monerod import TEST_ADDRESS, MonerodProcess
from tests.wire.test_epee import SCALARS, SECTIONS, arrays

JSON = Any
pytestmark = pytest.mark.monerod


def u64(value: int) -> Int:
    return Int(Type.UINT64, value)


async def genesis(peer: Peer) -> bytes:
    answer = await peer.rpc("on_get_block_hash", [0])
    return bytes.fromhex(answer["result"])


async def coinbase_txid(peer: Peer, height: int) -> bytes:
    """The miner tx id of block ``height`` (get_block is charged, so a funded key asks)."""
    key = ClientKey()
    await peer.fund(key, 1)
    answer = await peer.rpc("get_block", {"height": height, "client": key.client_id()})
    return bytes.fromhex(answer["result"]["miner_tx_hash"])


def outputs(n: int) -> Array:
    return Array(Type.OBJECT, tuple({"amount": u64(0), "index": u64(i)} for i in range(n)))


async def requests(peer: Peer) -> dict[str, Section]:
    """One request per binary endpoint, valid on ``peer``'s chain."""
    gen = await genesis(peer)
    return {
        "/getblocks.bin": {"block_ids": gen, "prune": True, "start_height": u64(0)},
        "/getblocks_by_height.bin": {"heights": Array.of_ints(Type.UINT64, [1, 2, 3])},
        "/gethashes.bin": {"block_ids": gen, "start_height": u64(0)},
        "/get_o_indexes.bin": {"txid": await coinbase_txid(peer, 1)},
        "/get_outs.bin": {"get_txid": True, "outputs": outputs(3)},
        "/get_output_distribution.bin": {
            "amounts": Array.of_ints(Type.UINT64, [0]),
            "binary": True,
            "compress": False,
            "cumulative": False,
            "from_height": u64(0),
            "to_height": u64(0),
        },
    }


def signed(request: Section, key: ClientKey) -> Section:
    return {"client": key.client_id().encode(), **request}


def count(answer: Section, name: str) -> int:
    value = answer.get(name)
    if isinstance(value, Array):
        return len(value.items)
    return len(value) // 32 if isinstance(value, bytes) else 0


def expected_cost(path: str, answer: Section) -> int:
    """monerod's price for the answer it gave (the wallet checks exactly this)."""
    return {
        "/getblocks.bin": 1 + blocks_cost(count(answer, "blocks")),
        "/getblocks_by_height.bin": 1,
        "/gethashes.bin": 1 + hashes_cost(count(answer, "m_block_ids")),
        "/get_o_indexes.bin": 1,
        "/get_outs.bin": 3,
        "/get_output_distribution.bin": 20,
    }[path]


def credits_of(answer: Section | bytes) -> int:
    assert isinstance(answer, dict), answer
    value = answer["credits"]
    assert isinstance(value, Int)
    return value.value


async def test_refusals_match_monerod(peers: tuple[Peer, Peer, RunningGateway]) -> None:
    reference, ours, _ = peers
    key = ClientKey()
    for path, request in (await requests(reference)).items():
        for client in (None, b"not a client id", key.client_id().encode()):
            body = dict(request) if client is None else {"client": client, **request}
            answers = []
            for peer in (reference, ours):
                status, answer = await post_bin(peer.port, path, body)
                assert status == 200 and isinstance(answer, dict), (peer.name, path, answer)
                answer.pop("top_hash")
                answers.append(answer)
            # an unknown key has no credits: PAYMENT REQUIRED, like a bad signature
            assert answers[0] == answers[1], (path, client)


async def test_prices_match_monerod(peers: tuple[Peer, Peer, RunningGateway]) -> None:
    for peer in peers[:2]:
        key = ClientKey()
        funded = await peer.fund(key, 1000)
        for path, request in (await requests(peer)).items():
            status, answer = await post_bin(peer.port, path, signed(request, key))
            assert status == 200 and isinstance(answer, dict), (peer.name, path, answer)
            assert answer["status"] == b"OK", (peer.name, path, answer["status"])
            left = credits_of(answer)
            assert funded - left == expected_cost(path, answer), (peer.name, path)
            funded = left
        # /get_transaction_pool_hashes.bin is JSON, despite its name
        _, answer = await post(
            peer.port, "/get_transaction_pool_hashes.bin", {"client": key.client_id()}
        )
        assert answer["status"] == "OK" and funded - answer["credits"] == 1, peer.name


async def test_blocks_capped_by_credits_like_monerod(
    peers: tuple[Peer, Peer, RunningGateway],
) -> None:
    reference, ours, _ = peers
    for credits, blocks, status, left in ((2, 20, b"OK", 0), (1, 0, b"PAYMENT REQUIRED", 0)):
        answers = []
        for peer in (reference, ours):
            key = ClientKey()
            await peer.fund(key, credits)
            request = {"block_ids": await genesis(peer), "prune": True, "start_height": u64(1)}
            _, answer = await post_bin(peer.port, "/getblocks.bin", signed(request, key))
            assert isinstance(answer, dict)
            answers.append((answer["status"], count(answer, "blocks"), credits_of(answer)))
        assert answers[0] == answers[1] == (status, blocks, left), answers


async def test_malformed_requests_are_refused_cleanly(
    peers: tuple[Peer, Peer, RunningGateway],
) -> None:
    _, ours, _ = peers
    key = ClientKey()
    funded = await ours.fund(key, 100)

    def client() -> bytes:
        return key.client_id().encode()

    bad: list[tuple[str, bytes | Section]] = [
        ("/getblocks.bin", b"not epee at all"),
        ("/getblocks.bin", {"client": client(), "block_ids": b"short"}),
        ("/getblocks.bin", {"client": client(), "block_ids": b"", "prune": u64(1)}),
        ("/getblocks_by_height.bin", {"client": client(), "heights": b"1,2"}),
        ("/get_outs.bin", {"client": client(), "outputs": Array(Type.STRING, (b"x",))}),
        ("/get_o_indexes.bin", {"client": client(), "txid": b"\x00" * 31}),
        ("/get_hashes.bin", {"client": u64(5)}),
    ]
    for path, body in bad:
        if isinstance(body, bytes):
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{ours.port}{path}"
                async with session.post(url, data=body) as response:
                    status, text = response.status, await response.text()
        else:
            status, raw = await post_bin(ours.port, path, body)
            assert isinstance(raw, bytes)
            text = raw.decode()
        assert status == 400, (path, status)
        assert text.startswith(("Malformed epee request", "Invalid parameters")), text
    _, data = await post(ours.admin_port, "/json_rpc", rpc("rpc_access_data"))
    entry = next(e for e in data["result"]["entries"] if e["client"] == key.public.hex())
    assert entry["balance"] == funded


async def test_restricted_limits_refuse_before_charging(
    peers: tuple[Peer, Peer, RunningGateway],
) -> None:
    _, ours, _ = peers
    key = ClientKey()
    funded = await ours.fund(key, 10_000)
    cases = {
        "/getblocks_by_height.bin": (
            {"heights": Array.of_ints(Type.UINT64, list(range(1001)))},
            b"Too many blocks requested in restricted mode",
        ),
        "/get_outs.bin": ({"outputs": outputs(5001)}, b"Too many outs requested"),
    }
    for path, (request, message) in cases.items():
        _, answer = await post_bin(ours.port, path, signed(request, key))
        assert isinstance(answer, dict) and answer["status"] == message
    entry = await ours.entry(key)
    assert entry["balance"] == funded


FIELD_NAMES = st.sampled_from(
    [
        "client",
        "block_ids",
        "start_height",
        "prune",
        "no_miner_tx",
        "heights",
        "txid",
        "outputs",
        "get_txid",
        "amounts",
        "binary",
        "compress",
        "from_height",
        "to_height",
        "x",
    ]
)
fuzz_sections = st.dictionaries(
    FIELD_NAMES, st.one_of(SCALARS, SECTIONS, arrays(SECTIONS)), max_size=6
)
fuzz_bodies = st.one_of(
    st.binary(max_size=200),
    fuzz_sections.map(epee.encode),
    fuzz_sections.map(lambda s: epee.encode(s)[: max(0, len(epee.encode(s)) - 3)]),
)


def test_binary_garbage_is_refused_cleanly(monerod: MonerodProcess, tmp_path: Path) -> None:
    """Any body on any binary path: a 200 epee refusal or a 400, never a server error; nothing
    reaches monerod unpaid and no account is touched."""
    loop = asyncio.new_event_loop()
    upstream = CountingUpstream(monerod.url)
    config = gateway_config(
        monerod.url, tmp_path / "gw", upstream_kind="monero", payment_address=TEST_ADDRESS
    )
    gateway = loop.run_until_complete(start_gateway(config, upstream=upstream))
    paths = sorted(BINARY_RULES)

    async def send(bodies: list[tuple[str, bytes]]) -> None:
        async with aiohttp.ClientSession() as session:
            for path, body in bodies:
                url = f"http://127.0.0.1:{gateway.public_port}{path}"
                async with session.post(url, data=body) as response:
                    raw = await response.read()
                    assert response.status in (200, 400), (response.status, path, body)
                    if response.status == 200:
                        answer = epee.decode(raw)
                        assert answer["status"] != b"OK", (path, body)

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.lists(st.tuples(st.sampled_from(paths), fuzz_bodies), min_size=1, max_size=6))
    def run(bodies: list[tuple[str, bytes]]) -> None:
        loop.run_until_complete(send(bodies))

    try:
        run()
        assert upstream.binary_calls() == 0
        assert all(a.credits_used == 0 for a in loop.run_until_complete(gateway.ledger.accounts()))
    finally:
        loop.run_until_complete(gateway.close())
        loop.close()
