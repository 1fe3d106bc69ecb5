"""The chain cache in front of a real monerod: settled blocks, hashes and outputs are served
without the upstream, byte for byte as monerod sends them, and reorgs are survived.

Each test gets its own regtest monerod, because reorgs rewrite its chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire import epee
from rpcpay.wire.address import encode_address
from rpcpay.wire.epee import Array, Int, Section, Type
from tests.gateway.conftest import CountingUpstream, gateway_config, post, post_bin, rpc
from tests.support.monerod import TEST_ADDRESS, MonerodProcess, start_monerod

pytestmark = pytest.mark.monerod

MARGIN = 5
#: another address, so regenerated blocks differ from the ones they replace
OTHER_ADDRESS = encode_address(ClientKey().public, ClientKey().public)


#: Credits that pay for 20 blocks once the first credit of /get_blocks.bin is taken.
TWENTY_BLOCKS = 2


@dataclass
class Chain:
    monerod: MonerodProcess
    gateway: RunningGateway
    upstream: CountingUpstream

    def block_hash(self, height: int) -> bytes:
        return bytes.fromhex(self.monerod.json_rpc("on_get_block_hash", [height])["result"])

    async def ask(self, path: str, request: Section, credits: int = 100_000) -> Section:
        """A paid call through the gateway by a new client holding ``credits``; the answer
        with credits and top hash removed."""
        key = ClientKey()
        await post(
            self.gateway.admin_port,
            "/json_rpc",
            rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": credits}),
        )
        signed = {"client": key.client_id().encode(), **request}
        status, answer = await post_bin(self.gateway.public_port, path, signed)
        assert status == 200 and isinstance(answer, dict), answer
        assert answer["status"] == b"OK", answer["status"]
        answer.pop("credits")
        answer.pop("top_hash")
        return answer

    def ask_monerod(self, path: str, request: Section) -> Section:
        """The same request straight to monerod, credits and top hash removed."""
        status, body = self.monerod.post_raw(path, epee.encode(request))
        assert status == 200
        answer = epee.decode(body)
        answer.pop("credits")
        answer.pop("top_hash")
        return answer

    async def caught_up(self) -> None:
        """Wait until the gateway has seen monerod's current top."""
        want = self.monerod.post("/get_height", {})["hash"]
        for _ in range(100):
            if (await self.gateway.jobs.top()).top_hash == want:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("gateway never saw the new top")

    def reorg(self, depth: int, extra: int) -> None:
        """Replace the top ``depth`` blocks with ``depth + extra`` different ones."""
        self.monerod.post("/pop_blocks", {"nblocks": depth})
        self.monerod.generate_blocks(depth + extra, OTHER_ADDRESS)


@pytest.fixture
def chain_monerod(tmp_path: Path) -> Iterator[MonerodProcess]:
    with start_monerod(tmp_path / "monerod") as mon:
        mon.generate_blocks(80, TEST_ADDRESS)
        yield mon


async def open_chain(monerod: MonerodProcess, data_dir: Path, margin: int) -> Chain:
    upstream = CountingUpstream(monerod.url)
    config = gateway_config(
        monerod.url,
        data_dir,
        upstream_kind="monero",
        payment_address=TEST_ADDRESS,
        cache_margin=margin,
    )
    return Chain(monerod, await start_gateway(config, upstream=upstream), upstream)


@pytest.fixture
async def chain(chain_monerod: MonerodProcess, tmp_path: Path) -> AsyncIterator[Chain]:
    opened = await open_chain(chain_monerod, tmp_path / "gw", MARGIN)
    yield opened
    await opened.gateway.close()


def u64(value: int) -> Int:
    return Int(Type.UINT64, value)


def history(chain: Chain, top: int) -> bytes:
    """A wallet's short chain history from ``top``: ten consecutive ids, then genesis."""
    heights = [h for h in range(top, max(top - 10, 0), -1)] + [0]
    return b"".join(chain.block_hash(h) for h in heights)


def truncated(answer: Section, blocks: int) -> Section:
    """``answer`` cut to its first ``blocks`` blocks (what a shorter answer holds)."""
    out = dict(answer)
    for name in ("blocks", "output_indices"):
        value = out[name]
        assert isinstance(value, Array)
        out[name] = Array(value.code, value.items[:blocks])
    return out


def blocks_in(answer: Section) -> int:
    value = answer.get("blocks")
    return len(value.items) if isinstance(value, Array) else 0


async def test_settled_blocks_come_from_the_cache(chain: Chain) -> None:
    request: Section = {"block_ids": history(chain, 40), "prune": True, "start_height": u64(0)}
    first = await chain.ask("/getblocks.bin", request)
    assert blocks_in(first) == 81 - 40  # up to the top; the settled 40..75 are kept
    before = chain.upstream.binary_calls()
    second = await chain.ask("/getblocks.bin", request, TWENTY_BLOCKS)
    assert chain.upstream.binary_calls() == before, "a settled read reached the upstream"
    assert blocks_in(second) == 20  # capped by credits: blocks 40..59
    assert epee.encode(second) == epee.encode(truncated(first, 20))
    assert epee.encode(second) == epee.encode(
        truncated(chain.ask_monerod("/getblocks.bin", request), 20)
    )
    # a start height works the same way (monerod then ignores the history)
    by_height = await chain.ask("/getblocks.bin", {**request, "start_height": u64(50)}, 2)
    assert chain.upstream.binary_calls() == before
    assert by_height["start_height"] == u64(50) and blocks_in(by_height) == 20
    # an answer that reaches past the settled line (75 for 81 blocks) is still monerod's
    # whole answer, never a shorter one that would make the client pay for a second call:
    # the cached 70..75 and the recent 76..80 from the upstream
    cache = chain.gateway.core.chain_cache
    assert cache is not None
    hits = cache.stats.block_hits
    near_top = {**request, "start_height": u64(70)}
    answer = await chain.ask("/getblocks.bin", near_top)
    assert chain.upstream.binary_calls() == before + 1 and cache.stats.block_hits == hits + 1
    assert epee.encode(answer) == epee.encode(chain.ask_monerod("/getblocks.bin", near_top))
    assert blocks_in(answer) == 81 - 70


async def test_settled_hashes_and_outputs_come_from_the_cache(
    chain_monerod: MonerodProcess, tmp_path: Path
) -> None:
    # monerod sends up to 10000 hashes, so on a short chain only a cache reaching the top
    # (margin 0) has whole answers to give
    chain = await open_chain(chain_monerod, tmp_path / "gw0", 0)
    try:
        await check_hashes_and_outputs(chain)
    finally:
        await chain.gateway.close()


async def check_hashes_and_outputs(chain: Chain) -> None:
    request: Section = {"block_ids": chain.block_hash(0), "start_height": u64(0)}
    first = await chain.ask("/gethashes.bin", request)
    before = chain.upstream.binary_calls()
    second = await chain.ask("/gethashes.bin", request)
    assert chain.upstream.binary_calls() == before
    assert epee.encode(first) == epee.encode(second)
    assert epee.encode(second) == epee.encode(chain.ask_monerod("/gethashes.bin", request))

    # coinbase outputs unlock after 60 blocks: indices 0..9 (heights 1..10) are unlocked
    outs: Section = {
        "get_txid": True,
        "outputs": Array(
            Type.OBJECT, tuple({"amount": u64(0), "index": u64(i)} for i in range(10))
        ),
    }
    first = await chain.ask("/get_outs.bin", outs)
    before = chain.upstream.binary_calls()
    second = await chain.ask("/get_outs.bin", outs)
    assert chain.upstream.binary_calls() == before
    assert (
        epee.encode(first)
        == epee.encode(second)
        == epee.encode(chain.ask_monerod("/get_outs.bin", outs))
    )
    # outputs that are still locked are never cached
    recent: Section = {
        "get_txid": False,
        "outputs": Array(Type.OBJECT, ({"amount": u64(0), "index": u64(75)},)),
    }
    await chain.ask("/get_outs.bin", recent)
    before = chain.upstream.binary_calls()
    await chain.ask("/get_outs.bin", recent)
    assert chain.upstream.binary_calls() == before + 1


async def test_deep_reorg_empties_the_cache(chain: Chain) -> None:
    request: Section = {"block_ids": history(chain, 40), "prune": True, "start_height": u64(0)}
    wide = {**request, "block_ids": history(chain, 56)}
    await chain.ask("/getblocks.bin", wide)  # caches the settled blocks 56..75
    await chain.ask("/getblocks.bin", request, TWENTY_BLOCKS)
    cache = chain.gateway.core.chain_cache
    assert cache is not None and cache.stats.block_hits == 0
    orphaned = {**request, "block_ids": history(chain, 65)}
    # 20 blocks replaced: deeper than the margin, so cached blocks 61..75 are orphaned
    chain.reorg(20, 2)
    await chain.caught_up()
    after = await chain.ask("/getblocks.bin", request, TWENTY_BLOCKS)
    assert cache.stats.clears == 1
    assert after == truncated(chain.ask_monerod("/getblocks.bin", request), 20)
    # a wallet whose newest block was orphaned is sent back to where the chains split
    rewound = await chain.ask("/getblocks.bin", orphaned)
    assert rewound["start_height"] == u64(60)
    assert rewound == chain.ask_monerod("/getblocks.bin", orphaned)
    # the refilled cache serves the new chain
    again = await chain.ask("/getblocks.bin", request, TWENTY_BLOCKS)
    assert cache.stats.block_hits == 1
    assert again == after


async def test_shallow_reorg_keeps_the_cache(chain: Chain) -> None:
    request: Section = {"block_ids": history(chain, 30), "prune": True, "start_height": u64(0)}
    await chain.ask("/getblocks.bin", request)
    cache = chain.gateway.core.chain_cache
    assert cache is not None
    chain.reorg(3, 1)
    await chain.caught_up()
    before = chain.upstream.binary_calls()
    served = await chain.ask("/getblocks.bin", request, TWENTY_BLOCKS)
    assert chain.upstream.binary_calls() == before and cache.stats.clears == 0
    assert served == truncated(chain.ask_monerod("/getblocks.bin", request), 20)
