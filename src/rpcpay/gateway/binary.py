"""monerod's epee binary endpoints (``*.bin``): what wallets sync with.

Each request is decoded with our own epee codec; its ``client`` field is read and removed
before the request goes upstream; the call is charged as monerod 0.18 charges it; and the
answer gets the client's ``credits`` and the chain's ``top_hash``. Settled blocks, hashes
and outputs come from the ``ChainCache`` when it holds them, so paid reads of old blocks
don't reach the upstream; answers built from the cache are byte for byte what the upstream
would send.

``BinaryHandler`` is a pipeline envelope (``rpcpay.gateway.pipeline``): it decodes, prices
(including what /get_blocks.bin and /get_hashes.bin owe for the items in their answers),
stamps and encodes; the charges, refunds and tracking are the pipeline's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from rpcpay.errors import UpstreamError, WireError
from rpcpay.gateway.binary_costs import (
    BINARY_RULES,
    GET_BLOCKS_PATHS,
    GET_HASHES_PATHS,
    GET_OUTS_PATH,
    HASH_SIZE,
    BinaryRule,
    blocks_cost,
    hash_list,
    hashes_cost,
    max_blocks_for,
    refused_answer,
    uint_field,
)
from rpcpay.gateway.chain_cache import (
    CachedBlock,
    CachedRun,
    ChainCache,
    OutputKey,
    block_entry_size,
    chain_hashes,
    may_add_block,
    stops_after_block,
)
from rpcpay.gateway.costs import PriceError
from rpcpay.gateway.jobs import ChainTop
from rpcpay.gateway.observe import note_call
from rpcpay.gateway.payment import Charge
from rpcpay.gateway.pipeline import (
    CallRefused,
    Forward,
    PaidCall,
    Pipeline,
    PipelineParts,
)
from rpcpay.gateway.protocol import STATUS_BUSY, STATUS_OK, STATUS_PAYMENT_REQUIRED
from rpcpay.gateway.upstream import post_json
from rpcpay.wire import epee
from rpcpay.wire.epee import Array, Int, PackedArray, Section, Type

CACHE_CHECK_TIMEOUT_S = 3.0
"""Bound on re-checking the cache after a new top; past it the call is served uncached."""

log = logging.getLogger("rpcpay.binary")

BINARY_TYPE = "application/octet-stream"
UPSTREAM_FAILED = "Upstream unavailable; nothing was charged"


@dataclass(frozen=True, slots=True)
class BinaryCall:
    """One decoded binary request: the endpoint, its rule, the request without ``client``,
    the client id and the caller's address."""

    path: str
    rule: BinaryRule
    request: Section
    client: str | None
    peer: str


def binary_response(section: Section, status: int = 200) -> web.Response:
    return web.Response(body=epee.encode(section), status=status, content_type=BINARY_TYPE)


def bad_request(message: str) -> web.Response:
    """A request we cannot read: HTTP 400 with the reason as text (monerod sends 400 too)."""
    return web.Response(text=message, status=400, content_type="text/plain")


def _u64(value: int) -> Int:
    return Int(Type.UINT64, value)


def _bool_field(request: Section, name: str) -> bool:
    value = request.get(name, False)
    # flags are epee bools
    if not isinstance(value, bool):
        raise PriceError(f"'{name}' must be a bool")
    return value


def _output_keys(request: Section, get_txid: bool) -> list[OutputKey]:
    outputs = request.get("outputs")
    keys: list[OutputKey] = []
    if not isinstance(outputs, Array):
        return keys
    for item in outputs.items:
        # each requested output is an object with integer amount and index
        if not isinstance(item, dict):
            raise PriceError("'outputs' must hold objects")
        keys.append((uint_field(item, "amount"), uint_field(item, "index"), get_txid))
    return keys


@dataclass(frozen=True, slots=True)
class BinaryAnswer:
    """A binary call's answer, and the items it counts for monerod's second charge."""

    section: Section
    more: int = 0


class BinaryHandler(Pipeline[BinaryCall, BinaryAnswer]):
    """Serves every ``*.bin`` path of a monerod upstream (a pipeline envelope)."""

    def __init__(self, parts: PipelineParts, cache: ChainCache | None) -> None:
        super().__init__(parts)
        self.payment = parts.payment
        self.upstream = parts.upstream
        self.cache = cache
        self._validating = asyncio.Lock()

    async def handle(self, request: web.BaseRequest, path: str, peer: str) -> web.Response:
        """Decode and price one request to ``path`` (bad input: HTTP 400), then run it."""
        rule = BINARY_RULES.get(path)
        if rule is None:
            return bad_request(f"Unknown binary endpoint {path}")
        body = await request.read()
        try:
            section = epee.decode(body)
            client = epee.get_string(section, "client")
            epee.remove(section, "client")
        except WireError as exc:
            return bad_request(f"Malformed epee request: {exc}")
        call = BinaryCall(path, rule, section, client.decode("latin-1") if client else None, peer)
        note_call(method=rule.rpc)
        try:
            refusal = rule.limit(section)
            upfront = rule.price(section)
        except PriceError as exc:
            return bad_request(f"Invalid parameters: {exc}")
        if refusal is not None:
            return binary_response(refused_answer(rule, refusal, 0, ""))
        return await self.run(PaidCall(call, rule.rpc, upfront, call.client, peer))

    async def fetch(
        self, call: PaidCall[BinaryCall], charge: Charge | None, forward: Forward
    ) -> BinaryAnswer:
        assert charge is not None  # every binary call is charged (upfront may be 0)
        request, path = call.request, call.request.path
        try:
            if path in GET_BLOCKS_PATHS:
                return await self._get_blocks(request, charge, forward)
            if path in GET_HASHES_PATHS:
                return await self._get_hashes(request, forward)
            if path == GET_OUTS_PATH:
                return await self._get_outs(request, forward)
            return BinaryAnswer(await self._forward(request, forward))
        except PriceError as exc:
            raise CallRefused(bad_request(f"Invalid parameters: {exc}")) from exc

    def price_after(self, call: PaidCall[BinaryCall], answer: BinaryAnswer) -> int:
        return answer.more

    def stamp(
        self, call: PaidCall[BinaryCall], answer: BinaryAnswer, charge: Charge
    ) -> BinaryAnswer:
        _stamp(answer.section, charge)
        return answer

    def encode(
        self, call: PaidCall[BinaryCall], answer: BinaryAnswer, charge: Charge | None
    ) -> web.Response:
        return binary_response(answer.section)

    def refuse(self, call: PaidCall[BinaryCall], charge: Charge) -> web.Response:
        rule = call.request.rule
        return binary_response(refused_answer(rule, charge.status, charge.credits, charge.top_hash))

    def failed(
        self, call: PaidCall[BinaryCall], charge: Charge | None, credits: int
    ) -> web.Response:
        top_hash = charge.top_hash if charge is not None else ""
        failed = refused_answer(call.request.rule, UPSTREAM_FAILED, credits, top_hash)
        return binary_response(failed, 502)

    def busy(self, call: PaidCall[BinaryCall], charge: Charge | None, credits: int) -> web.Response:
        """A shed free call: monerod's own "busy" status, in the endpoint's refusal shape,
        HTTP 200."""
        top_hash = charge.top_hash if charge is not None else ""
        return binary_response(refused_answer(call.request.rule, STATUS_BUSY, credits, top_hash))

    # -- upstream -------------------------------------------------------------------------

    async def _forward(self, call: BinaryCall, forward: Forward) -> Section:
        """The upstream's decoded answer to the request, without the client id."""
        reply = await forward(call.path, epee.encode(call.request), BINARY_TYPE)
        # Only an HTTP 200 answer carries a message.
        if reply.status != 200:
            raise UpstreamError(f"upstream answered HTTP {reply.status} for {call.path}")
        try:
            return epee.decode(reply.body)
        except WireError as exc:
            raise UpstreamError(f"upstream answered malformed epee for {call.path}") from exc

    # -- the cache ------------------------------------------------------------------------

    async def _checked_cache(self) -> tuple[ChainCache, ChainTop] | None:
        """The cache, re-checked against the upstream if the chain top moved; None if there
        is no cache or it cannot be checked now."""
        cache = self.cache
        if cache is None:
            return None
        top = await self.payment.jobs.top()
        if cache.checked_top == top.top_hash:
            return cache, top
        async with self._validating:
            if cache.checked_top != top.top_hash:
                try:
                    # Bounded: the lock is held across these upstream calls.
                    await asyncio.wait_for(self._recheck(cache, top), CACHE_CHECK_TIMEOUT_S)
                except (UpstreamError, TimeoutError) as exc:
                    log.warning("cache check failed", extra={"error": str(exc)})
                    return None
        return cache, top

    async def _recheck(self, cache: ChainCache, top: ChainTop) -> None:
        """Compare each cached segment's top with the upstream; a difference is a reorg
        below the margin, and the whole cache goes."""
        if cache.genesis is None:
            cache.genesis = await self._block_hash(0)
        for height, block_id in cache.segment_tops():
            # A settled segment must still be on the upstream's chain.
            if height >= top.height or await self._block_hash(height) != block_id:
                log.info("reorg below the cache margin; cache emptied", extra={"height": height})
                cache.clear()
                break
        cache.checked_top = top.top_hash

    async def _block_hash(self, height: int) -> bytes:
        answer = await post_json(
            self.upstream,
            "/json_rpc",
            {"jsonrpc": "2.0", "id": "0", "method": "on_get_block_hash", "params": [height]},
        )
        result = answer.get("result") if isinstance(answer, dict) else None
        # on_get_block_hash answers the id as 64 hex digits
        if not isinstance(result, str) or len(result) != 2 * HASH_SIZE:
            raise UpstreamError(f"upstream has no block at height {height}")
        return bytes.fromhex(result)

    @staticmethod
    def _split_height(cache: ChainCache, block_ids: list[bytes]) -> int | None:
        """Where monerod would start for this short chain history, if the cache can tell:
        the first id must be a cached (so main-chain) block and the last the genesis."""
        # monerod requires the history to end at its genesis block
        if not block_ids or cache.genesis is None or block_ids[-1] != cache.genesis:
            return None
        return cache.height_of(block_ids[0])

    # -- /get_blocks.bin ------------------------------------------------------------------

    async def _get_blocks(self, call: BinaryCall, charge: Charge, forward: Forward) -> BinaryAnswer:
        request = call.request
        block_ids = hash_list(request, "block_ids")
        start_height = uint_field(request, "start_height")
        variant = (_bool_field(request, "prune"), _bool_field(request, "no_miner_tx"))
        top = await self.payment.jobs.top()
        # A client already at the top gets monerod's empty answer.
        if block_ids and block_ids[0].hex() == top.top_hash:
            return BinaryAnswer(_noop_answer(top, charge))
        max_blocks = 1000 if charge.client is None else max_blocks_for(charge.credits)
        # monerod refuses when the credits left cannot pay for a single block.
        # (Its stamp repeats the credits and top hash it already has.)
        if max_blocks == 0:
            return BinaryAnswer(
                refused_answer(call.rule, STATUS_PAYMENT_REQUIRED, charge.credits, charge.top_hash)
            )
        answer = await self._cached_blocks(
            call, block_ids, start_height, variant, max_blocks, forward
        )
        if answer is None:
            answer = await self._forward(call, forward)
            _truncate_blocks(answer, max_blocks)
            self._keep_blocks(answer, variant)
        return BinaryAnswer(answer, blocks_cost(_array_len(answer, "blocks")))

    async def _cached_blocks(
        self,
        call: BinaryCall,
        block_ids: list[bytes],
        start_height: int,
        variant: tuple[bool, bool],
        limit: int,
        forward: Forward,
    ) -> Section | None:
        """monerod's whole answer, from the cache where the blocks are settled; None to
        forward the request instead."""
        checked = await self._checked_cache()
        if checked is None:
            return None
        cache, top = checked
        # monerod takes a requested start height over the history when it is on the chain
        start = start_height if start_height > 0 else self._split_height(cache, block_ids)
        if start is None or start >= top.height:
            return None
        run = cache.blocks_from(start, variant, limit, cache.settled_below(top.height), top.height)
        blocks = run.blocks
        if not run.complete:
            # Never a shorter answer (the client would pay again for the rest): past the
            # settled line come the recent blocks, linked to the cached run.
            if not blocks or not run.at_settled_line:
                return None
            recent = await self._recent_blocks(call, cache, run, variant, top, forward)
            if recent is None:
                return None
            blocks = blocks + _within_limits(blocks, recent, limit)
        cache.stats.block_hits += 1
        return {
            "blocks": PackedArray(Type.OBJECT, len(blocks), b"".join(b.entry for b in blocks)),
            "credits": _u64(0),
            "current_height": _u64(top.height),
            "output_indices": PackedArray(
                Type.OBJECT, len(blocks), b"".join(b.indices for b in blocks)
            ),
            "start_height": _u64(start),
            "status": STATUS_OK.encode(),
            "top_hash": top.top_hash.encode(),
            "untrusted": False,
        }

    async def _recent_blocks(
        self,
        call: BinaryCall,
        cache: ChainCache,
        run: CachedRun,
        variant: tuple[bool, bool],
        top: ChainTop,
        forward: Forward,
    ) -> list[CachedBlock] | None:
        """The blocks from the settled line to the top: held for this top, or fetched from
        the upstream; None if the upstream's do not continue the run up to our top."""
        held = cache.recent_blocks(run.next_height, variant, top.top_hash)
        if held is not None:
            return held
        request = dict(call.request)
        epee.set_uint64(request, "start_height", run.next_height)
        recent_call = BinaryCall(call.path, call.rule, request, None, call.peer)
        answer = await self._forward(recent_call, forward)
        blocks, indices = answer.get("blocks"), answer.get("output_indices")
        try:
            start = epee.get_int(answer, "start_height")
            height = epee.get_int(answer, "current_height")
            # The upstream must answer from where the run ends up to our top, blocks with
            # their indices ...
            if answer.get("status") != STATUS_OK.encode() or start != run.next_height:
                return None
            if not isinstance(blocks, Array) or not isinstance(indices, Array):
                return None
            entries = [b for b in blocks.items if isinstance(b, dict)]
            index_sections = [x for x in indices.items if isinstance(x, dict)]
            if height != top.height or not entries or len(entries) != len(index_sections):
                return None
            blobs = [e.get("block") for e in entries]
            if not all(isinstance(b, bytes) for b in blobs):
                return None
            ids, below = chain_hashes([b for b in blobs if isinstance(b, bytes)])
            # ... sitting on the last cached block and ending at our top (no reorg between).
            if below != cache.hash_at(run.next_height - 1) or ids[-1].hex() != top.top_hash:
                return None
            recent = [
                CachedBlock(
                    run.next_height + i,
                    epee.encode_element(entry),
                    epee.encode_element(index_sections[i]),
                    *block_entry_size(entry),
                )
                for i, entry in enumerate(entries)
            ]
        except WireError:
            return None
        cache.keep_recent(run.next_height, variant, top.top_hash, recent)
        return recent

    def _keep_blocks(self, answer: Section, variant: tuple[bool, bool]) -> None:
        if self.cache is None or answer.get("status") != STATUS_OK.encode():
            return
        blocks, indices = answer.get("blocks"), answer.get("output_indices")
        start, height = epee.get_int(answer, "start_height"), epee.get_int(answer, "current_height")
        # Only a complete answer (blocks with their indices, heights known) is kept.
        if not isinstance(blocks, Array) or not isinstance(indices, Array):
            return
        if start is None or height is None or len(blocks.items) != len(indices.items):
            return
        entries = [item for item in blocks.items if isinstance(item, dict)]
        index_sections = [item for item in indices.items if isinstance(item, dict)]
        try:
            self.cache.add_blocks(start, entries, index_sections, variant, height)
        except WireError as exc:
            log.warning("upstream block not cached", extra={"error": str(exc)})

    # -- /get_hashes.bin ------------------------------------------------------------------

    async def _get_hashes(self, call: BinaryCall, forward: Forward) -> BinaryAnswer:
        block_ids = hash_list(call.request, "block_ids")
        answer = await self._cached_hashes(block_ids)
        if answer is None:
            answer = await self._forward(call, forward)
            self._keep_hashes(answer)
        ids = answer.get("m_block_ids", b"")
        count = len(ids) // HASH_SIZE if isinstance(ids, bytes) else 0
        return BinaryAnswer(answer, hashes_cost(count))

    async def _cached_hashes(self, block_ids: list[bytes]) -> Section | None:
        checked = await self._checked_cache()
        if checked is None:
            return None
        cache, top = checked
        start = self._split_height(cache, block_ids)
        if start is None:
            return None
        hashes, complete = cache.hashes_from(start, cache.settled_below(top.height), top.height)
        # Only monerod's whole answer is served; a shorter one would cost a second call.
        if not complete or not hashes:
            return None
        cache.stats.hash_hits += 1
        return {
            "credits": _u64(0),
            "current_height": _u64(top.height),
            "m_block_ids": b"".join(hashes),
            "start_height": _u64(start),
            "status": STATUS_OK.encode(),
            "top_hash": top.top_hash.encode(),
            "untrusted": False,
        }

    def _keep_hashes(self, answer: Section) -> None:
        if self.cache is None or answer.get("status") != STATUS_OK.encode():
            return
        ids = answer.get("m_block_ids")
        start, height = epee.get_int(answer, "start_height"), epee.get_int(answer, "current_height")
        # Only a well-formed answer with its heights is kept.
        if not isinstance(ids, bytes) or len(ids) % HASH_SIZE or start is None or height is None:
            return
        hashes = [ids[i : i + HASH_SIZE] for i in range(0, len(ids), HASH_SIZE)]
        settled = max(0, min(len(hashes), self.cache.settled_below(height) - start))
        self.cache.add_hashes(start, hashes[:settled], None)

    # -- /get_outs.bin --------------------------------------------------------------------

    async def _get_outs(self, call: BinaryCall, forward: Forward) -> BinaryAnswer:
        keys = _output_keys(call.request, _bool_field(call.request, "get_txid"))
        checked = await self._checked_cache() if keys else None
        cached = checked[0].outputs_for(keys) if checked is not None else None
        if checked is not None and cached is not None:
            checked[0].stats.output_hits += 1
            answer: Section = {
                "credits": _u64(0),
                "outs": Array(Type.OBJECT, tuple(cached)),
                "status": STATUS_OK.encode(),
                "top_hash": checked[1].top_hash.encode(),
                "untrusted": False,
            }
        else:
            answer = await self._forward(call, forward)
            outs = answer.get("outs")
            ok = answer.get("status") == STATUS_OK.encode()
            if checked is not None and ok and isinstance(outs, Array):
                sections = [item for item in outs.items if isinstance(item, dict)]
                checked[0].add_outputs(keys, sections, checked[1].height)
        return BinaryAnswer(answer)


def _within_limits(
    head: list[CachedBlock], tail: list[CachedBlock], limit: int
) -> list[CachedBlock]:
    """The part of ``tail`` monerod would add after ``head``: its count, size and
    transaction limits run on across both."""
    count, size = len(head), sum(b.size for b in head)
    txs = sum(b.tx_count for b in head)
    taken: list[CachedBlock] = []
    for block in tail:
        if not may_add_block(count, size, limit):
            break
        taken.append(block)
        count, size, txs = count + 1, size + block.size, txs + block.tx_count
        if stops_after_block(count, txs):
            break
    return taken


def _array_len(section: Section, name: str) -> int:
    value = section.get(name)
    if isinstance(value, PackedArray):
        return value.count
    return len(value.items) if isinstance(value, Array) else 0


def _truncate_blocks(answer: Section, max_blocks: int) -> None:
    """Cut an upstream answer to the blocks the client's credits pay for (monerod caps the
    count before reading blocks; the upstream, not charging, sent up to 1000)."""
    for name in ("blocks", "output_indices"):
        value = answer.get(name)
        if isinstance(value, Array) and len(value.items) > max_blocks:
            answer[name] = Array(value.code, value.items[:max_blocks])


def _noop_answer(top: ChainTop, charge: Charge) -> Section:
    """monerod's answer to a client whose newest block is the chain top."""
    return {
        "credits": _u64(charge.credits),
        "current_height": _u64(top.height),
        "start_height": _u64(0),
        "status": STATUS_OK.encode(),
        "top_hash": charge.top_hash.encode(),
        "untrusted": False,
    }


def _stamp(answer: Section, charge: Charge) -> None:
    """Tell the client its balance and the chain top (the fields every answer has)."""
    epee.set_uint64(answer, "credits", charge.credits)
    epee.set_string(answer, "top_hash", charge.top_hash.encode())
