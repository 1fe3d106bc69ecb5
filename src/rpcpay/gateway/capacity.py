"""Capacity: the free tier and paid priority, plugged into the paid-call pipeline's seams.

Contract (docs/gateway.md, "Capacity: free service with paid priority"):

- ``Capacity.admit`` is the pipeline's ``FreeTier`` seam: a call the ledger refused for
  payment (no id, a forged or replayed id, too few credits) is served free when its host's
  allowance (``free_tier``) holds the up-front price *and* the global free share is not spent
  (``AdmissionQueue.free_backlogged``); otherwise the refusal stands, as monerod words it
  (``PAYMENT REQUIRED``; HTTP 402 on JSON-RPC backends). Its ``FreeAdmission`` books the
  rest of the price (counted in the answer) to the allowance and gives the up-front price
  back if the call is refunded (upstream failure, shed). ``rpc_access_pay`` is not a
  pipeline call and is never served free.
- ``Capacity.slot`` is the ``Slots`` seam: each upstream request holds one of
  ``--upstream-concurrency`` slots, paid calls first (``priority.AdmissionQueue``). A call shed
  from a full line raises the pipeline's ``Shed``: it is refunded and answered "busy" in its
  protocol (monerod's ``BUSY`` status; JSON-RPC error -32005 on other backends).
- Bids (``--bids``, off by default; an extension of monerod's protocol that its clients never
  see): a paying client may send ``X-Rpc-Bid: N``; ``BiddingPayment`` charges N more with the
  call's first charge (refunded with it), and among paid calls waiting for a slot higher bids
  go first (by power of two, ``priority.bid_level``). Without ``--bids`` the header is ignored.
- ``Capacity.wrap`` tags each public request (a context variable) so its latency is counted
  by class: ``paid``, ``free``, ``refused`` (for payment), ``shed``.

With the free tier off and no ``--upstream-concurrency`` none of this is built: the pipeline
keeps its no-op seams and the gateway is exactly what it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rpcpay.gateway.free_tier import (
    FreeTable,
    FreeTierSettings,
    check_free_tier,
    total_settings,
)
from rpcpay.gateway.metrics import LoopMetric
from rpcpay.gateway.payment import Charge, PaymentService
from rpcpay.gateway.pipeline import Admitted, CallClass, PaidCall, Seams, Shed
from rpcpay.gateway.priority import (
    AdmissionQueue,
    QueueSettings,
    bid_level,
    check_queue_settings,
    queue_settings,
)
from rpcpay.ledger.account import U64_MAX
from rpcpay.wire.rpc import (
    HEADER_BID,
    STATUS_OK,
    is_payment_refusal_status,
)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DEFAULT_CONCURRENCY = 8
"""Upstream slots when the free tier or bids are on and --upstream-concurrency is not given: a
modest guess for a home PC's monerod; the operator sets what the upstream sustains."""
MESSAGE_BAD_BID = "X-Rpc-Bid must be a whole number of credits, 0 to 2^64-1; nothing was charged"
SHARE_REFUSAL_DELAY_S = 1.0
"""A free call refused because the global share is spent hears so this late. Its client (a
flood's connection, typically) asks again at once; held a second, 200 connections cost the
event loop 200 refusals a second instead of thousands, so paid calls keep their latency
(bench/priority.py). A wallet past the share waits a second to be told to pay."""
_EVERYONE = "*"
"""The one key of the global allowance (not an address: ``host_key`` keeps it as it is)."""
OUTCOMES = ("paid", "free", "refused", "shed")
"""Classes a finished call is counted in: charged, served free, refused for payment, shed."""


@dataclass(slots=True)
class CallTag:
    """One public request's class (mutable: the request's scratch pad, like ``CallNote``)."""

    cls: CallClass = "free"
    bid: int = 0  # credits offered per charge (X-Rpc-Bid, with --bids)
    bid_paid: int = 0  # what a passed charge took for it
    refused: bool = False
    shed: bool = False


_tag: ContextVar[CallTag | None] = ContextVar("rpcpay_call_tag", default=None)


@dataclass(frozen=True, slots=True)
class FreeAdmission(Admitted):
    """A call the free tier admitted: nothing debited; ``price`` credits were taken from the
    allowance of ``host``. The pipeline asks it for the call's second charge (owed to the
    allowance) and its refund (the price given back)."""

    capacity: Capacity | None = None
    host: str = ""
    price: int = 0

    async def charge_more(self, amount: int) -> Charge:
        if self.capacity is not None:
            self.capacity.owe(self.host, amount)
        return self.charge

    async def refund(self) -> int:
        if self.capacity is not None:
            self.capacity.give_back(self.host, self.price)
        return self.charge.credits


def is_payment_refusal(charge: Charge) -> bool:
    """Refused for want of payment or of a valid id (not for any other reason)."""
    return not charge.ok and is_payment_refusal_status(charge.status)


class Latency:
    """Seconds per finished call by outcome: the ``rpcpay_call_seconds_by_class`` histogram
    (a ``LoopMetric``: loop-only), with the quantiles ``summary`` shows."""

    def __init__(self) -> None:
        self.metric = LoopMetric(
            "rpcpay_call_seconds_by_class",
            "Public call latency by class",
            ("class",),
            LATENCY_BUCKETS,
        )
        self._by_outcome = {o: self.metric.labels(o) for o in OUTCOMES}

    def observe(self, outcome: str, seconds: float) -> None:
        self._by_outcome[outcome].observe(seconds)

    def quantile(self, outcome: str, q: float) -> float | None:
        """The bucket bound at quantile ``q`` (None if nothing was counted)."""
        counts = self._by_outcome[outcome].counts
        total = sum(counts)
        if total == 0:
            return None
        seen = 0
        for n, count in enumerate(counts):
            seen += count
            if seen >= q * total:
                return LATENCY_BUCKETS[n] if n < len(LATENCY_BUCKETS) else float("inf")
        return float("inf")


class Capacity:
    """The free tier's allowances, the admission queue and their counters."""

    def __init__(
        self,
        free: FreeTierSettings,
        queue: QueueSettings | None,
        clock: Callable[[], float] = time.monotonic,
        *,
        bids: bool = False,
    ) -> None:
        self.free = free
        self.bids = bids
        self.table = FreeTable(free)
        # All hosts together, when the operator bounds free work in credits too (one key).
        self.total = FreeTable(total_settings(free), max_hosts=1)
        self.queue = AdmissionQueue(queue) if queue is not None else None
        self._clock = clock
        self.share_refusal_delay_s = SHARE_REFUSAL_DELAY_S
        self.free_served = 0
        self.refused_allowance = 0
        self.refused_share = 0
        self.latency = Latency()

    # -- seam (a): the free tier -----------------------------------------------------------

    async def admit(self, call: PaidCall[Any], refused: Charge) -> Admitted | None:
        """A payment refusal turned into a free admission when the free tier allows it;
        None (the refusal stands) otherwise."""
        tag = _tag.get()
        if tag is not None:
            tag.refused = True
        free = self.free
        # Only a call refused for payment (or a bad id) can be served free.
        if not free.on or not is_payment_refusal(refused):
            return None
        # The global free share is spent: free calls already wait for every free slot.
        if self.queue is not None and self.queue.free_backlogged():
            self.refused_share += 1
            await asyncio.sleep(self.share_refusal_delay_s)
            return None
        price = call.upfront or 0
        now = self._clock()
        # The global rate, when set, must hold the price (before any host's is spent).
        if free.total_credits_per_second > 0 and self.total.tokens(_EVERYONE, now) < price:
            self.refused_share += 1
            await asyncio.sleep(self.share_refusal_delay_s)
            return None
        # The host's allowance must hold the whole up-front price.
        if not self.table.take(call.peer, price, now):
            self.refused_allowance += 1
            return None
        if free.total_credits_per_second > 0:
            self.total.take(_EVERYONE, price, now)
        if tag is not None:
            tag.refused, tag.cls = False, "free"
        self.free_served += 1
        # Served as monerod serves a free call: the balance as it is, nothing debited.
        charge = Charge(True, STATUS_OK, refused.credits, refused.top_hash)
        return FreeAdmission(charge, "free", self, call.peer, price)

    def owe(self, host: str, amount: int) -> None:
        """The rest of a free call's price, counted in its answer."""
        if amount > 0:
            self.table.owe(host, amount, self._clock())

    def give_back(self, host: str, price: int) -> None:
        """A free call refunded (upstream failure, shed): its host gets the price back."""
        if price > 0:
            self.table.give_back(host, price, self._clock())

    # -- seam (b): upstream slots ------------------------------------------------------------

    def slot(self, klass: CallClass, address: str) -> AbstractAsyncContextManager[object]:
        """One upstream slot for a call of class ``klass`` from ``address``."""
        tag = _tag.get()
        if tag is not None:
            tag.cls = klass
        if self.queue is None:
            return contextlib.nullcontext()
        level = bid_level(tag.bid_paid) if tag is not None and klass == "paid" else 0
        return self._slot(self.queue, klass, address, tag, level)

    @contextlib.asynccontextmanager
    async def _slot(
        self,
        queue: AdmissionQueue,
        klass: CallClass,
        address: str,
        tag: CallTag | None,
        level: int,
    ) -> AsyncIterator[object]:
        try:
            await queue.acquire(klass, address, level)
        except Shed:
            if tag is not None:
                tag.shed = True
            raise
        try:
            yield None
        finally:
            queue.release(klass)

    def seams(self) -> Seams:
        """The pipeline's seams, both served by this object."""
        return Seams(free_tier=self, slots=self)

    # -- per request ------------------------------------------------------------------------

    def wrap(self, inner: Handler) -> Handler:
        """The public handler with each request tagged, and its latency counted by class."""

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            tag = CallTag()
            if self.bids:
                bid = parse_bid(request.headers.get(HEADER_BID))
                # A bid is a whole number of credits; anything else is refused, for nothing.
                if bid is None:
                    return web.json_response({"status": MESSAGE_BAD_BID}, status=400)
                tag.bid = bid
            token = _tag.set(tag)
            started = time.perf_counter()
            try:
                return await inner(request)
            finally:
                _tag.reset(token)
                self.latency.observe(outcome_of(tag), time.perf_counter() - started)

        return handle

    def summary(self) -> dict[str, object]:
        """What ``rpcpay payments`` and the dashboard show."""
        queue = self.queue
        summary: dict[str, object] = {
            "free_tier": self.free.on,
            "free_served": self.free_served,
            "free_refused_allowance": self.refused_allowance,
            "free_refused_share": self.refused_share,
            "free_hosts": len(self.table),
            "latency_p50_s": {o: self.latency.quantile(o, 0.5) for o in OUTCOMES},
            "latency_p99_s": {o: self.latency.quantile(o, 0.99) for o in OUTCOMES},
        }
        if queue is not None:
            summary.update(
                concurrency=queue.settings.concurrency,
                free_slots=queue.settings.free_slots,
                queue_limit=queue.settings.queue,
                in_flight=dict(queue.in_flight),
                waiting={c: queue.waiting(c) for c in queue.in_flight},
                admitted=dict(queue.stats.admitted),
                shed=dict(queue.stats.shed),
            )
        return summary


def build_capacity(
    free: FreeTierSettings, concurrency: int, queue: int, bids: bool = False
) -> Capacity | None:
    """The capacity rules the flags ask for; None when they ask for none (today's gateway).
    ConfigError names a bad flag."""
    check_free_tier(free)
    # Neither a free tier, nor a bound on the upstream, nor bids: nothing to build.
    if not free.on and concurrency == 0 and not bids:
        return None
    slots = concurrency or DEFAULT_CONCURRENCY
    settings = queue_settings(slots, free.share, queue)
    check_queue_settings(settings)
    return Capacity(free, settings, bids=bids)


def parse_bid(text: str | None) -> int | None:
    """The ``X-Rpc-Bid`` header: 0 when absent, None when it is not a u64 of credits."""
    if text is None:
        return 0
    text = text.strip()
    # Decimal digits only, and a u64.
    if not text.isdecimal() or not text.isascii() or len(text) > 20 or int(text) > U64_MAX:
        return None
    return int(text)


class BiddingPayment(PaymentService):
    """``PaymentService`` that adds the request's bid (``X-Rpc-Bid``, with ``--bids``) to each
    first charge: paid with the call, refunded with it, and a balance short of price + bid
    is refused as any short balance is (nothing charged). A charge of a request that bids
    nothing is the plain one."""

    async def charge(
        self, client: object, amount: int, rpc: str, address: str, *, same_ts: bool = False
    ) -> Charge:
        tag = _tag.get()
        # Only a priced first charge carries the bid (monerod's second charge never does).
        if tag is None or tag.bid == 0 or amount <= 0 or same_ts:
            return await super().charge(client, amount, rpc, address, same_ts=same_ts)
        result = await super().charge(client, amount + tag.bid, rpc, address)
        if result.ok and result.client is not None:
            tag.bid_paid = tag.bid
        return result


def outcome_of(tag: CallTag) -> str:
    """The class a finished call is counted in."""
    if tag.shed:
        return "shed"
    if tag.refused:
        return "refused"
    return tag.cls
