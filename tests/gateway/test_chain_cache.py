"""ChainCache rules without a node: segments never mix chains, budgets hold, and only
settled, unlocked data is kept."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.gateway.binary_costs import blocks_cost, max_blocks_for
from rpcpay.gateway.chain_cache import BLOCK_OVERHEAD, MAX_ANSWER_TXS, CachedBlock, ChainCache
from rpcpay.wire.epee import Array, Int, Section, Type, encode_element

LENGTH = 60


def chain(name: str, fork: int) -> list[bytes]:
    """Block ids of a toy chain that shares heights below ``fork`` with chain "a"."""
    return [
        hashlib.sha256(f"{'a' if h < fork else name}:{h}".encode()).digest() for h in range(LENGTH)
    ]


runs = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(0, LENGTH - 1),
        st.integers(1, 15),
        st.booleans(),
    ),
    max_size=12,
)


def segments(cache: ChainCache) -> list[list[tuple[int, bytes]]]:
    """Each segment as (height, id) pairs."""
    return [[(start + i, h) for i, h in enumerate(ids)] for start, ids in cache.segments()]


@settings(max_examples=300, deadline=None)
@given(fork=st.integers(1, LENGTH - 1), ops=runs)
def test_segments_never_mix_chains(fork: int, ops: list[tuple[str, int, int, bool]]) -> None:
    chains = {"a": chain("a", fork), "b": chain("b", fork)}
    cache = ChainCache(margin=0, max_bytes=1 << 20)
    for name, start, length, linked in ops:
        ids = chains[name][start : start + length]
        prev = chains[name][start - 1] if linked and start > 0 else None
        cache.add_hashes(start, ids, prev)
        for height, block_id in (pair for seg in segments(cache) for pair in seg):
            # every cached id is the id one of the chains has at that height
            assert block_id in (chains["a"][height], chains["b"][height])
            assert cache.height_of(block_id) == height
        for segment in segments(cache):
            # a segment is all one chain
            assert any(all(chains[c][h] == i for h, i in segment) for c in chains)


@settings(max_examples=200, deadline=None)
@given(ops=runs)
def test_one_chain_is_never_cleared_and_nothing_is_lost(
    ops: list[tuple[str, int, int, bool]],
) -> None:
    ids = chain("a", LENGTH)
    cache = ChainCache(margin=0, max_bytes=1 << 20)
    added: set[int] = set()
    for _, start, length, linked in ops:
        run = ids[start : start + length]
        cache.add_hashes(start, run, ids[start - 1] if linked and start > 0 else None)
        added.update(range(start, start + len(run)))
    assert cache.stats.clears == 0
    for height in added:
        assert cache.hash_at(height) == ids[height]


def test_a_contradicting_run_clears_everything() -> None:
    a, b = chain("a", 30), chain("b", 30)
    cache = ChainCache(margin=0, max_bytes=1 << 20)
    cache.add_hashes(0, a[:40], None)
    cache.add_hashes(35, b[35:45], None)
    assert cache.stats.clears == 1
    assert cache.hash_at(10) is None and cache.hash_at(40) == b[40]
    # a run linked to a different block below it is a contradiction too
    cache.add_hashes(45, a[45:50], a[44])
    assert cache.stats.clears == 2 and cache.hash_at(40) is None


def test_hash_budget_clears() -> None:
    ids = chain("a", LENGTH)
    cache = ChainCache(margin=0, max_bytes=1 << 20, max_hashes=20)
    cache.add_hashes(0, ids[:20], None)
    assert cache.hash_count() == 20
    cache.add_hashes(20, ids[20:21], ids[19])
    assert cache.hash_count() == 0 and cache.stats.clears == 1


def entry(size: int, txs: int) -> Section:
    return {
        "block": bytes(size),
        "txs": Array(
            Type.OBJECT, tuple({"blob": b"x", "prunable_hash": bytes(32)} for _ in range(txs))
        ),
    }


def fill(cache: ChainCache, ids: list[bytes], heights: range, size: int, txs: int) -> None:
    """Put block entries straight in (``add_blocks`` needs real block blobs; the
    monerod tests cover it)."""
    cache.add_hashes(heights.start, ids[heights.start : heights.stop], None)
    for h in heights:
        cache._put_block(
            (h, True, False),
            CachedBlock(h, encode_element(entry(size, txs)), b"", size + txs, txs),
        )


def run(cache: ChainCache, start: int, count: int, settled: int, top: int) -> tuple[int, bool]:
    cached = cache.blocks_from(start, (True, False), count, settled, top)
    assert [b.height for b in cached.blocks] == list(range(start, start + len(cached.blocks)))
    assert cached.next_height == start + len(cached.blocks)
    return len(cached.blocks), cached.complete


def test_blocks_from_is_complete_only_when_monerod_would_stop_there() -> None:
    ids = chain("a", LENGTH)
    cache = ChainCache(margin=0, max_bytes=1 << 30)
    fill(cache, ids, range(0, 50), 10, 1)
    # the chain top, or the count the credits pay for: monerod's own stops
    assert run(cache, 0, 1000, 50, 50) == (50, True)
    assert run(cache, 0, 7, 50, 60) == (7, True)
    # the settled line or a missing block: monerod would send more
    assert run(cache, 0, 1000, 20, 60) == (20, False)
    assert cache.blocks_from(0, (True, False), 1000, 20, 60).at_settled_line
    assert run(cache, 0, 1000, 50, 60) == (50, False)
    assert not cache.blocks_from(0, (True, False), 1000, 60, 60).at_settled_line
    assert cache.blocks_from(0, (False, False), 1000, 50, 50).blocks == []
    cache._blocks.pop((25, True, False))
    assert run(cache, 10, 1000, 50, 50) == (15, False)
    assert run(cache, 10, 15, 50, 50) == (15, True)
    # the transaction limit applies once three blocks are in
    heavy = ChainCache(margin=0, max_bytes=1 << 30)
    fill(heavy, ids, range(0, 10), 10, MAX_ANSWER_TXS)
    assert run(heavy, 0, 1000, 10, 10) == (3, True)


def test_hashes_from_is_complete_only_when_monerod_would_stop_there() -> None:
    ids = chain("a", LENGTH)
    cache = ChainCache(margin=0, max_bytes=1 << 20)
    cache.add_hashes(0, ids[:40], None)
    assert cache.hashes_from(5, 40, 40) == (ids[5:40], True)
    assert cache.hashes_from(5, 30, 40) == (ids[5:30], False)
    assert cache.hashes_from(5, 60, 60) == (ids[5:40], False)
    assert cache.hashes_from(45, 60, 60) == ([], False)


def test_block_budget_evicts_least_recently_used() -> None:
    ids = chain("a", LENGTH)
    one = len(encode_element(entry(9, 1))) + BLOCK_OVERHEAD
    cache = ChainCache(margin=0, max_bytes=10 * one)
    fill(cache, ids, range(0, 20), 9, 1)
    assert cache.block_bytes() == 10 * one
    assert run(cache, 0, 1000, 20, 20) == (0, False)
    assert run(cache, 10, 1000, 20, 20) == (10, True)


def out(height: int, unlocked: bool) -> Section:
    return {"height": Int(Type.UINT64, height), "key": bytes(32), "unlocked": unlocked}


def test_only_settled_unlocked_outputs_are_kept() -> None:
    cache = ChainCache(margin=10, max_bytes=1 << 20, max_outputs=3)
    keys = [(0, i, True) for i in range(4)]
    cache.add_outputs(keys, [out(5, True), out(5, False), out(95, True), out(50, True)], 100)
    assert cache.outputs_for([keys[0], keys[3]]) == [out(5, True), out(50, True)]
    assert cache.outputs_for([keys[1]]) is None and cache.outputs_for([keys[2]]) is None
    more = [(0, i, True) for i in range(10, 13)]
    cache.add_outputs(more, [out(1, True)] * 3, 100)
    assert cache.outputs_for([keys[0]]) is None  # evicted: the budget is 3


def test_max_blocks_uses_monerods_double_arithmetic() -> None:
    # credits / 0.05, truncated, capped at 1000
    assert max_blocks_for(3) == 60
    assert max_blocks_for(0) == 0 and max_blocks_for(1) == 20
    assert max_blocks_for(10**6) == 1000
    assert blocks_cost(19) == 0 and blocks_cost(20) == 1 and blocks_cost(1000) == 50
