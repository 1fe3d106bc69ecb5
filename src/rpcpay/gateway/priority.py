"""Bounded upstream concurrency with paid calls first: the admission queue.

Contract: at most ``concurrency`` calls are in flight to the upstream. Free calls together
hold at most ``free_slots`` of them (the global free share: ``--free-share`` x concurrency,
at least one). A call that finds no slot waits in a bounded line (``queue`` calls in all):
whenever a slot frees, the longest-waiting *paid* call goes first; a free call goes only when
no paid call waits and a free slot is open. Within a class, waiting calls are served round
robin by host (``peers.host_key``), so one address with many connections gets no more turns
than an address with one. The line is bounded: when it is full, a new free call is shed at
once, and a new paid call sheds the newest free call of the host with the most waiting (it
is told "busy"); only a line full of paid calls sheds a paid call. A shed call never reached
the upstream, so it costs nothing.

``free_backlogged()`` is how the free tier knows the global share is spent: the free calls
already waiting could fill every free slot ``FREE_BACKLOG_ROUNDS`` times over. A new free
call is then refused for payment rather than queued (see ``capacity.Capacity``).

Bids (``--bids``, off by default): a paid call may carry a bid level (``bid_level``); among
paid calls waiting, the highest level goes first, then round robin by host as before.

Everything here runs on the event loop's one thread; nothing blocks. Cost per admitted call
with a free slot open: two dictionary reads and a counter, under 1 µs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from rpcpay.errors import ConfigError
from rpcpay.gateway.peers import host_key
from rpcpay.gateway.pipeline import CallClass, Shed

CLASSES: tuple[CallClass, ...] = ("paid", "free")
DEFAULT_QUEUE = 1024
"""Calls that may wait for a slot: enough for a flood's every connection to wait (a flooder
answered at once only asks again, and costs the event loop more)."""
FREE_BACKLOG_ROUNDS = 4
"""Free calls may queue up to this many times their slots before new ones are refused."""


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """``concurrency`` upstream slots, ``free_slots`` of them open to free calls, and at most
    ``queue`` calls waiting."""

    concurrency: int
    free_slots: int
    queue: int


def queue_settings(concurrency: int, share: float, queue: int) -> QueueSettings:
    """The free share as whole slots: ``share`` x ``concurrency``, rounded down, at least 1."""
    return QueueSettings(concurrency, max(1, min(concurrency, int(share * concurrency))), queue)


def check_queue_settings(settings: QueueSettings) -> None:
    """Refuse bounds that cannot work, naming the flag."""
    # At least one call can be in flight.
    if not 1 <= settings.concurrency <= 100_000:
        raise ConfigError("--upstream-concurrency must be between 1 and 100000 (0: unbounded)")
    # A line of zero would shed every call that finds the slots busy.
    if not 1 <= settings.queue <= 1_000_000:
        raise ConfigError("--upstream-queue must be between 1 and 1000000")


@dataclass(slots=True)
class _Waiter:
    key: str
    future: asyncio.Future[None]
    level: int = 0


@dataclass(slots=True)
class _Line:
    """One class's waiting calls: per host a FIFO, hosts in round-robin order."""

    hosts: OrderedDict[str, deque[_Waiter]] = field(default_factory=OrderedDict)
    size: int = 0

    def push(self, waiter: _Waiter) -> None:
        self.hosts.setdefault(waiter.key, deque()).append(waiter)
        self.size += 1

    def pop(self) -> _Waiter:
        """The next host's oldest call; that host goes to the back of the round."""
        key, calls = next(iter(self.hosts.items()))
        waiter = calls.popleft()
        del self.hosts[key]
        if calls:
            self.hosts[key] = calls
        self.size -= 1
        return waiter

    def pop_newest_of_busiest(self) -> _Waiter:
        """The newest call of the host with the most waiting (what shedding takes)."""
        key = max(self.hosts, key=lambda k: len(self.hosts[k]))
        calls = self.hosts[key]
        waiter = calls.pop()
        if not calls:
            del self.hosts[key]
        self.size -= 1
        return waiter

    def remove(self, waiter: _Waiter) -> bool:
        calls = self.hosts.get(waiter.key)
        if calls is None or waiter not in calls:
            return False
        calls.remove(waiter)
        if not calls:
            del self.hosts[waiter.key]
        self.size -= 1
        return True


@dataclass(slots=True)
class _Levels:
    """Paid calls waiting, one ``_Line`` per bid level (``bid_level``): the highest level
    with a call waiting goes first."""

    lines: dict[int, _Line] = field(default_factory=dict)
    size: int = 0

    def push(self, waiter: _Waiter) -> None:
        self.lines.setdefault(waiter.level, _Line()).push(waiter)
        self.size += 1

    def pop(self) -> _Waiter:
        level = max(lvl for lvl, line in self.lines.items() if line.size)
        self.size -= 1
        return self.lines[level].pop()

    def overtaking(self) -> bool:
        """Would the next pop pass a call waiting at a lower level?"""
        busy = [lvl for lvl, line in self.lines.items() if line.size]
        return len(busy) > 1

    def remove(self, waiter: _Waiter) -> bool:
        line = self.lines.get(waiter.level)
        if line is None or not line.remove(waiter):
            return False
        self.size -= 1
        return True


def bid_level(bid: int) -> int:
    """Bids count by their power of two (1, 2-3, 4-7, ...): precedence needs a bid at least
    twice as high, and the levels stay few whatever clients offer."""
    return max(0, bid).bit_length()


@dataclass(slots=True)
class QueueStats:
    """Counters since start, by class (for /metrics and ``rpcpay payments``)."""

    admitted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    shed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    waited: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    overtakes: int = 0  # paid calls handed a slot before an earlier one with a lower bid


class AdmissionQueue:
    """Upstream slots handed out by class and host (see the module docstring)."""

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self.in_flight: dict[CallClass, int] = dict.fromkeys(CLASSES, 0)
        self._lines: dict[CallClass, _Line | _Levels] = {"paid": _Levels(), "free": _Line()}
        self._free = self._lines["free"]
        self.stats = QueueStats()

    def waiting(self, cls: CallClass | None = None) -> int:
        """Calls waiting (of one class, or all)."""
        if cls is None:
            return sum(line.size for line in self._lines.values())
        return self._lines[cls].size

    def free_backlogged(self) -> bool:
        """Is the free share spent: enough free calls waiting to fill every free slot
        ``FREE_BACKLOG_ROUNDS`` times?"""
        return self._free.size >= FREE_BACKLOG_ROUNDS * self.settings.free_slots

    def _may_start(self, cls: CallClass) -> bool:
        # A slot must be open, and for a free call one of the free share's.
        if sum(self.in_flight.values()) >= self.settings.concurrency:
            return False
        return cls == "paid" or self.in_flight["free"] < self.settings.free_slots

    async def acquire(self, cls: CallClass, address: str, level: int = 0) -> None:
        """Wait for a slot for a call of class ``cls`` from ``address`` (a paid call's bid
        ``level``: higher levels go first); ``Shed`` if the line is full (see the module
        docstring for who is shed)."""
        # Nobody of this class or above is waiting and a slot is open: start at once.
        ahead = self._lines["paid"].size + (self._lines["free"].size if cls == "free" else 0)
        if ahead == 0 and self._may_start(cls):
            self.in_flight[cls] += 1
            self.stats.admitted[cls] += 1
            return
        # A full line sheds a free call first: this one, or (for a paid call) a waiting one.
        if self.waiting() >= self.settings.queue:
            if cls == "free" or self._free.size == 0:
                self.stats.shed[cls] += 1
                raise Shed()
            assert isinstance(self._free, _Line)
            victim = self._free.pop_newest_of_busiest()
            self.stats.shed["free"] += 1
            victim.future.set_exception(Shed())
        waiter = _Waiter(host_key(address), asyncio.get_running_loop().create_future(), level)
        self._lines[cls].push(waiter)
        self.stats.waited[cls] += 1
        try:
            await waiter.future
        except asyncio.CancelledError:
            # Cancelled while waiting: leave the line; granted just before: give the slot back.
            future = waiter.future
            granted = future.done() and not future.cancelled() and future.exception() is None
            if not self._lines[cls].remove(waiter) and granted:
                self.release(cls)
            raise
        self.stats.admitted[cls] += 1

    def release(self, cls: CallClass) -> None:
        """A call of class ``cls`` left the upstream: hand its slot on."""
        self.in_flight[cls] -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        """Give open slots to waiting calls: paid first, free while the free share allows."""
        while True:
            for cls in CLASSES:
                line = self._lines[cls]
                if line.size and self._may_start(cls):
                    if isinstance(line, _Levels) and line.overtaking():
                        self.stats.overtakes += 1
                    waiter = line.pop()
                    self.in_flight[cls] += 1
                    waiter.future.set_result(None)
                    break
            else:
                return

    @contextlib.asynccontextmanager
    async def slot(self, cls: CallClass, address: str) -> AsyncIterator[None]:
        """Hold an upstream slot for the body of the ``async with``."""
        await self.acquire(cls, address)
        try:
            yield
        finally:
            self.release(cls)
