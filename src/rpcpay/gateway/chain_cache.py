"""Chain data that can no longer change, kept so paid reads of old blocks skip the upstream.

Every wallet that syncs asks a public node for the same old blocks, hashes and decoy
outputs. Below the top minus a reorg margin that data is settled, so the gateway keeps what
the upstream already sent and answers the next wallet itself, byte for byte as the upstream
would have.

Correctness rests on three rules:

* Only data the upstream reported at a height below ``current_height - margin`` is stored.
* Cached block hashes form *segments*: runs of consecutive heights known to be one chain
  (each block's ``prev_id`` is the hash below it). A run joins a neighbour only if the link
  or every overlapping hash agrees; any disagreement is proof of a reorg and empties the cache.
* Only complete answers are served: exactly the blocks or hashes monerod would send. A
  shorter answer would make the client ask again and pay the fixed part of the price twice.
* Before anything is served at a new chain top, the caller compares each segment's top hash
  with the upstream's (``segment_tops``); one hash vouches for the whole segment below it, and
  any difference empties the cache (``clear``).

So a reorg deeper than the margin costs a refill, never a wrong answer once noticed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass

from rpcpay.errors import WireError
from rpcpay.wire.block import hash_block, parse_block
from rpcpay.wire.epee import Array, Int, Section, encode_element

#: monerod stops adding blocks to one answer after 100 MB (FIND_BLOCKCHAIN_SUPPLEMENT_MAX_SIZE)
MAX_ANSWER_BYTES = 100 * 1024 * 1024
#: ... or after 20000 transactions (COMMAND_RPC_GET_BLOCKS_FAST_MAX_TX_COUNT)
MAX_ANSWER_TXS = 20000
#: ... but both limits only apply once it has this many blocks.
MIN_ANSWER_BLOCKS = 3
#: most hashes per /get_hashes.bin answer (BLOCKS_IDS_SYNCHRONIZING_DEFAULT_COUNT)
MAX_HASHES_PER_ANSWER = 10000

#: Python's own memory per cached block beyond its encoded bytes (the ``CachedBlock`` and
#: its two bytes objects and LRU slot), so ``max_bytes`` bounds what the process holds.
BLOCK_OVERHEAD = 300

BlockKey = tuple[int, bool, bool]
OutputKey = tuple[int, int, bool]


@dataclass(frozen=True, slots=True)
class CachedBlock:
    """One block as /get_blocks.bin delivers it, kept encoded: its entry and its output
    indices as array elements (``epee.encode_element``), plus what monerod's limits count."""

    height: int
    entry: bytes
    indices: bytes
    size: int
    tx_count: int


@dataclass(frozen=True, slots=True)
class CachedRun:
    """What the cache holds of one /get_blocks.bin answer.

    ``complete``: these are all the blocks monerod would send. Otherwise the run stopped at
    ``next_height``, either at the settled line (``at_settled_line``; the rest is recent
    and the upstream has it) or at a block the cache does not hold.
    """

    blocks: list[CachedBlock]
    complete: bool
    next_height: int
    at_settled_line: bool


def may_add_block(count: int, size: int, max_count: int) -> bool:
    """monerod's loop (``get_blocks_from``): another block goes in while fewer than
    ``max_count`` are in and, once three are in, while the answer is under 100 MB."""
    return count < max_count and (size < MAX_ANSWER_BYTES or count < MIN_ANSWER_BLOCKS)


def stops_after_block(count: int, txs: int) -> bool:
    """... and it stops after a block that brings the answer to 20000 transactions, once
    three blocks are in."""
    return count >= MIN_ANSWER_BLOCKS and txs >= MAX_ANSWER_TXS


def block_entry_size(entry: Section) -> tuple[int, int]:
    """Bytes monerod counts for one block entry (block blob plus tx blobs) and its tx count."""
    block = entry.get("block")
    txs = entry.get("txs")
    # a block entry holds its blob as a string
    if not isinstance(block, bytes):
        raise WireError("block entry has no block blob")
    size, count = len(block), 0
    if isinstance(txs, Array):
        for tx in txs.items:
            blob = tx.get("blob") if isinstance(tx, dict) else tx
            size += len(blob) if isinstance(blob, bytes) else 0
            count += 1
    return size, count


@dataclass(slots=True)
class _Segment:
    """Consecutive heights of one chain; ``prev`` is the hash below ``start`` if known."""

    start: int
    hashes: list[bytes]
    prev: bytes | None

    @property
    def end(self) -> int:
        """The segment's last height (inclusive)."""
        return self.start + len(self.hashes) - 1


@dataclass(slots=True)
class CacheStats:
    """Counters for logs and benchmarks."""

    block_hits: int = 0
    hash_hits: int = 0
    output_hits: int = 0
    clears: int = 0


def chain_hashes(blobs: list[bytes]) -> tuple[list[bytes], bytes]:
    """Block ids of consecutive blocks and the hash below the first.

    Each id is taken from the next block's ``prev_id`` where there is one (the chain's own
    word, right even for ids monerod hard-codes) and computed only for the last block.
    """
    blocks = [parse_block(blob) for blob in blobs]
    ids = [nxt.prev_id for nxt in blocks[1:]]
    ids.append(hash_block(blobs[-1]))
    return ids, blocks[0].prev_id


class ChainCache:
    """Settled blocks, block hashes and outputs, bounded in memory.

    ``max_bytes`` bounds the block entries (least recently used go first); more than
    ``max_hashes`` hashes or ``max_outputs`` outputs empties that part.
    """

    def __init__(
        self,
        margin: int,
        max_bytes: int,
        *,
        max_hashes: int = 1_000_000,
        max_outputs: int = 200_000,
    ) -> None:
        self.margin = margin
        self.max_bytes = max_bytes
        self.max_hashes = max_hashes
        self.max_outputs = max_outputs
        self.checked_top: str | None = None
        self.genesis: bytes | None = None
        self.stats = CacheStats()
        self._segments: list[_Segment] = []
        self._starts: list[int] = []
        self._height_of: dict[bytes, int] = {}
        self._blocks: OrderedDict[BlockKey, CachedBlock] = OrderedDict()
        self._block_bytes = 0
        self._outputs: OrderedDict[OutputKey, tuple[int, Section]] = OrderedDict()
        self._recent: dict[BlockKey, list[CachedBlock]] = {}
        self._recent_top: str | None = None

    # -- settled heights ------------------------------------------------------------------

    def settled_below(self, chain_height: int) -> int:
        """Heights below this are settled for a chain of ``chain_height`` blocks."""
        return chain_height - self.margin

    def clear(self) -> None:
        """Forget everything (a reorg below the margin, or a budget overrun)."""
        self._segments.clear()
        self._starts.clear()
        self._height_of.clear()
        self._blocks.clear()
        self._block_bytes = 0
        self._outputs.clear()
        self._recent.clear()
        self.checked_top = None
        self.stats.clears += 1

    # -- hashes ---------------------------------------------------------------------------

    def height_of(self, block_id: bytes) -> int | None:
        """The height of a cached block id, None if unknown."""
        return self._height_of.get(block_id)

    def hash_at(self, height: int) -> bytes | None:
        """The cached id of the block at ``height``, None if unknown."""
        segment = self._segment_holding(height)
        return None if segment is None else segment.hashes[height - segment.start]

    def _segment_holding(self, height: int) -> _Segment | None:
        i = bisect_right(self._starts, height) - 1
        if i >= 0 and self._segments[i].end >= height:
            return self._segments[i]
        return None

    def segments(self) -> list[tuple[int, tuple[bytes, ...]]]:
        """(first height, ids) of each run of consecutive cached ids, lowest first."""
        return [(s.start, tuple(s.hashes)) for s in self._segments]

    def segment_tops(self) -> list[tuple[int, bytes]]:
        """(height, id) of each segment's highest block: what a caller must re-check against
        the upstream whenever the chain top changes."""
        return [(s.end, s.hashes[-1]) for s in self._segments]

    def hash_count(self) -> int:
        """Cached block ids."""
        return len(self._height_of)

    def add_hashes(self, start: int, hashes: list[bytes], prev: bytes | None) -> None:
        """Record consecutive block ids from ``start``; ``prev`` is the id below ``start``
        when known. A contradiction with what is cached empties the cache first."""
        if not hashes:
            return
        if not self._agrees(start, hashes, prev):
            self.clear()
        run = _Segment(start, list(hashes), prev)
        merged: list[_Segment] = []
        for segment in self._segments:
            if self._joins(segment, run):
                run = self._merge(segment, run)
            else:
                merged.append(segment)
        merged.append(run)
        merged.sort(key=lambda s: s.start)
        self._segments = merged
        self._starts = [s.start for s in merged]
        for offset, block_id in enumerate(hashes):
            self._height_of[block_id] = start + offset
        # a hash index past its budget is rebuilt from scratch rather than trimmed
        if len(self._height_of) > self.max_hashes:
            self.clear()

    def _agrees(self, start: int, hashes: list[bytes], prev: bytes | None) -> bool:
        end = start + len(hashes) - 1
        for segment in self._segments:
            lo, hi = max(start, segment.start), min(end, segment.end)
            # every height both know must hold the same block
            for height in range(lo, hi + 1):
                if segment.hashes[height - segment.start] != hashes[height - start]:
                    return False
            # the block below the run must be the one the run links to
            below = start - 1
            linked = segment.start <= below <= segment.end and prev is not None
            if linked and segment.hashes[below - segment.start] != prev:
                return False
            # the run's top must be the block the segment above links to
            if segment.start == end + 1 and segment.prev not in (None, hashes[-1]):
                return False
        return True

    @staticmethod
    def _joins(segment: _Segment, run: _Segment) -> bool:
        """Overlapping runs (already checked to agree) or runs linked by a known prev id."""
        if segment.start <= run.end and run.start <= segment.end:
            return True
        if segment.end + 1 == run.start:
            return run.prev is not None and run.prev == segment.hashes[-1]
        if run.end + 1 == segment.start:
            return segment.prev is not None and segment.prev == run.hashes[-1]
        return False

    @staticmethod
    def _merge(a: _Segment, b: _Segment) -> _Segment:
        low, high = (a, b) if a.start <= b.start else (b, a)
        hashes = list(low.hashes)
        hashes.extend(high.hashes[low.end + 1 - high.start :])
        return _Segment(low.start, hashes, low.prev)

    def hashes_from(
        self, start: int, settled_below: int, chain_height: int
    ) -> tuple[list[bytes], bool]:
        """Cached ids from ``start`` upward, and whether they are all monerod would send
        (as many as it sends at most, or up to the chain top)."""
        segment = self._segment_holding(start)
        if segment is None:
            return [], False
        want = min(start + MAX_HASHES_PER_ANSWER, chain_height)
        stop = min(segment.end + 1, settled_below, want)
        hashes = segment.hashes[start - segment.start : max(0, stop - segment.start)]
        return hashes, stop == want

    # -- blocks ---------------------------------------------------------------------------

    def add_blocks(
        self,
        start: int,
        entries: list[Section],
        indices: list[Section],
        variant: tuple[bool, bool],
        chain_height: int,
    ) -> None:
        """Keep the settled part of a /get_blocks.bin answer (``variant`` is its request's
        ``prune`` and ``no_miner_tx``). Entries that are not blocks are refused."""
        settled = min(len(entries), len(indices), self.settled_below(chain_height) - start)
        if settled <= 0:
            return
        blobs = []
        for entry in entries[:settled]:
            blob = entry.get("block")
            # every entry carries its block blob
            if not isinstance(blob, bytes):
                raise WireError("block entry has no block blob")
            blobs.append(blob)
        ids, prev = chain_hashes(blobs)
        self.add_hashes(start, ids, prev)
        for offset in range(settled):
            size, tx_count = block_entry_size(entries[offset])
            height = start + offset
            self._put_block(
                (height, *variant),
                CachedBlock(
                    height,
                    encode_element(entries[offset]),
                    encode_element(indices[offset]),
                    size,
                    tx_count,
                ),
            )

    @staticmethod
    def _held(block: CachedBlock) -> int:
        return len(block.entry) + len(block.indices) + BLOCK_OVERHEAD

    def _put_block(self, key: BlockKey, block: CachedBlock) -> None:
        old = self._blocks.pop(key, None)
        if old is not None:
            self._block_bytes -= self._held(old)
        self._blocks[key] = block
        self._block_bytes += self._held(block)
        while self._block_bytes > self.max_bytes and self._blocks:
            _, evicted = self._blocks.popitem(last=False)
            self._block_bytes -= self._held(evicted)

    def blocks_from(
        self,
        start: int,
        variant: tuple[bool, bool],
        max_count: int,
        settled_below: int,
        chain_height: int,
    ) -> CachedRun:
        """The cached blocks monerod would send from ``start``, as far as the cache has them."""
        out: list[CachedBlock] = []
        size = txs = 0
        height = start
        segment = self._segment_holding(start)
        indexed_end = segment.end if segment is not None else -1
        while height < chain_height and may_add_block(len(out), size, max_count):
            block = self._blocks.get((height, *variant))
            # the cache ends at the settled line, or at a block it does not hold (or whose
            # id is not in the run the start is in)
            if height >= settled_below or block is None or height > indexed_end:
                return CachedRun(out, False, height, height >= settled_below)
            self._blocks.move_to_end((height, *variant))
            out.append(block)
            size += block.size
            txs += block.tx_count
            if stops_after_block(len(out), txs):
                break
            height += 1
        return CachedRun(out, True, start + len(out), False)

    def recent_blocks(
        self, start: int, variant: tuple[bool, bool], top_hash: str
    ) -> list[CachedBlock] | None:
        """The blocks from ``start`` (the settled line) up to the top, as the upstream sent
        them while the chain top was ``top_hash``; None if not held for this top."""
        if self._recent_top != top_hash:
            return None
        return self._recent.get((start, *variant))

    def keep_recent(
        self, start: int, variant: tuple[bool, bool], top_hash: str, blocks: list[CachedBlock]
    ) -> None:
        """Remember the unsettled blocks from ``start`` to the top ``top_hash``; they are good
        only until the top moves, and are dropped then."""
        if self._recent_top != top_hash:
            self._recent.clear()
            self._recent_top = top_hash
        self._recent[(start, *variant)] = blocks

    def block_bytes(self) -> int:
        """Memory the cached blocks take, as counted against ``max_bytes``."""
        return self._block_bytes

    # -- outputs --------------------------------------------------------------------------

    def add_outputs(self, keys: list[OutputKey], outs: list[Section], chain_height: int) -> None:
        """Keep the settled, unlocked outputs of a /get_outs.bin answer."""
        settled = self.settled_below(chain_height)
        for key, out in zip(keys, outs, strict=False):
            height = out.get("height")
            # only an unlocked output in a settled block can no longer change
            if out.get("unlocked") is True and isinstance(height, Int) and height.value < settled:
                self._outputs[key] = (height.value, out)
                self._outputs.move_to_end(key)
        while len(self._outputs) > self.max_outputs:
            self._outputs.popitem(last=False)

    def outputs_for(self, keys: list[OutputKey]) -> list[Section] | None:
        """The cached answers for every key, or None if any is missing."""
        found = []
        for key in keys:
            cached = self._outputs.get(key)
            if cached is None:
                return None
            self._outputs.move_to_end(key)
            found.append(cached[1])
        return found
