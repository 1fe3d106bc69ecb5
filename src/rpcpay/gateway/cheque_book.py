"""The cheques a payee keeps in memory to catch overlaps: its own, and peers' gossip.

Per lottery, a ``RangeIndex``: ranges sorted by start, never overlapping (an overlapping
cheque is evidence, kept in the database instead), so the overlap check of a new cheque
is a bisection, O(log n), whatever the lottery's size.

Bounds (the gossip-blinding attack, issue 9): our own cheques are never dropped while
their lottery is open (they are what a double assignment is caught against). Peers'
cheques are kept per **sender** in a FIFO of at most ``per_peer`` (the oldest go first,
so honest traffic never fills it for good), at most ``max_peers`` senders tracked (the
rest share one FIFO), and at most ``per_recipient`` per recipient address over all
senders (one-wei cheques to made-up recipients fill only their own share). Every count
is O(1). A cap only limits what is *kept*: every incoming cheque is checked for overlaps
before any cap applies, so a full book never silences detection.

Memory: ≤ (``max_peers`` + 1) x ``per_peer`` peers' cheques, ~0.6 KB each with their
274-byte wire form (defaults: 17 x 8,192 ≈ 85 MB at the very worst).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass

from rpcpay.lottery.cheque import StampedCheque

__all__ = ["ChequeBook", "Kept", "RangeIndex"]

OTHERS = "*"
"""The shared FIFO of senders beyond ``max_peers``."""


@dataclass(frozen=True, slots=True)
class Kept:
    """One kept cheque: ours (``peer`` None; ``pending`` while held), or a peer's."""

    sc: StampedCheque
    wire: bytes
    cheque_id: bytes
    peer: str | None = None
    pending: bool = False

    @property
    def ours(self) -> bool:
        return self.peer is None

    @property
    def start(self) -> int:
        return self.sc.cheque.start

    @property
    def end(self) -> int:
        return self.sc.cheque.end


class RangeIndex:
    """Non-overlapping ranges of one lottery, sorted by start."""

    __slots__ = ("_items", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._items: list[Kept] = []

    def __len__(self) -> int:
        return len(self._items)

    def overlapping(self, start: int, end: int) -> list[Kept]:
        """The kept ranges sharing a ticket with ``[start, end)``."""
        i = bisect_right(self._starts, start)
        found: list[Kept] = []
        # The range starting before ours may reach into it.
        if i > 0 and self._items[i - 1].end > start:
            found.append(self._items[i - 1])
        while i < len(self._items) and self._starts[i] < end:
            found.append(self._items[i])
            i += 1
        return found

    def add(self, kept: Kept) -> None:
        """Insert ``kept``; the caller checked it overlaps nothing here."""
        i = bisect_right(self._starts, kept.start)
        self._starts.insert(i, kept.start)
        self._items.insert(i, kept)

    def remove(self, kept: Kept) -> None:
        i = bisect_right(self._starts, kept.start) - 1
        while i >= 0 and self._starts[i] == kept.start:
            if self._items[i].cheque_id == kept.cheque_id:
                del self._starts[i]
                del self._items[i]
                return
            i -= 1

    def items(self) -> list[Kept]:
        return list(self._items)


class ChequeBook:
    """Kept cheques by lottery and by id, with the bounds of the module docstring."""

    def __init__(self, per_peer: int = 8192, per_recipient: int = 8192, max_peers: int = 16):
        self.per_peer = per_peer
        self.per_recipient = per_recipient
        self.max_peers = max_peers
        self._index: dict[bytes, RangeIndex] = {}
        self._by_id: dict[bytes, Kept] = {}
        self._fifo: OrderedDict[str, deque[bytes]] = OrderedDict()
        self._recipients: dict[bytes, int] = {}
        self.loaded: set[bytes] = set()  # lotteries whose stored cheques are in memory
        self.capped = 0  # peers' cheques checked but not kept (a bound was reached)

    def __contains__(self, cheque_id: bytes) -> bool:
        return cheque_id in self._by_id

    def get(self, cheque_id: bytes) -> Kept | None:
        return self._by_id.get(cheque_id)

    def overlapping(self, lottery: bytes, start: int, end: int) -> list[Kept]:
        index = self._index.get(lottery)
        return [] if index is None else index.overlapping(start, end)

    def peers_kept(self) -> int:
        return sum(len(q) for q in self._fifo.values())

    def _insert(self, kept: Kept) -> bool:
        c = kept.sc.cheque
        index = self._index.setdefault(c.lottery, RangeIndex())
        # The index never holds two overlapping ranges (those are evidence).
        if index.overlapping(c.start, c.end):
            return False
        index.add(kept)
        self._by_id[kept.cheque_id] = kept
        return True

    def add_ours(self, kept: Kept) -> bool:
        """Keep one of our cheques (credited or held); False if it overlaps a kept range."""
        return self._insert(kept)

    def add_peers(self, kept: Kept) -> bool:
        """Keep a peer's cheque within the bounds; False (and counted) when not kept."""
        assert kept.peer is not None
        recipient = kept.sc.cheque.recipient
        # One recipient's cheques take at most their share, whoever sends them.
        if self._recipients.get(recipient, 0) >= self.per_recipient:
            self.capped += 1
            return False
        if not self._insert(kept):
            return False
        key = kept.peer if kept.peer in self._fifo or len(self._fifo) < self.max_peers else OTHERS
        fifo = self._fifo.setdefault(key, deque())
        fifo.append(kept.cheque_id)
        self._recipients[recipient] = self._recipients.get(recipient, 0) + 1
        # A sender's oldest cheque makes room for its newest.
        if len(fifo) > self.per_peer:
            self.remove(fifo.popleft())
        return True

    def remove(self, cheque_id: bytes) -> None:
        """Forget a kept cheque (a peer's FIFO may still name it: skipped when popped)."""
        kept = self._by_id.pop(cheque_id, None)
        if kept is None:
            return
        lottery = kept.sc.cheque.lottery
        index = self._index.get(lottery)
        if index is not None:
            index.remove(kept)
            if not len(index):
                del self._index[lottery]
        if kept.peer is not None:
            recipient = kept.sc.cheque.recipient
            left = self._recipients.get(recipient, 1) - 1
            if left:
                self._recipients[recipient] = left
            else:
                self._recipients.pop(recipient, None)

    def replace(self, kept: Kept) -> None:
        """Swap a kept cheque for an updated copy (e.g. a held one, now credited)."""
        old = self._by_id.get(kept.cheque_id)
        if old is None:
            return
        index = self._index[kept.sc.cheque.lottery]
        index.remove(old)
        index.add(kept)
        self._by_id[kept.cheque_id] = kept

    def ours(self, lottery: bytes) -> list[Kept]:
        index = self._index.get(lottery)
        return [] if index is None else [k for k in index.items() if k.ours]

    def drop_lottery(self, lottery: bytes) -> None:
        """Forget a closed lottery's cheques, ours and peers'."""
        index = self._index.get(lottery)
        for kept in [] if index is None else index.items():
            self.remove(kept.cheque_id)
        self.loaded.discard(lottery)
