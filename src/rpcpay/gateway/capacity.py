"""Capacity: the free tier and paid priority, plugged into the gateway's call path.

Contract (docs/gateway.md, "Capacity: free service with paid priority"):

- Every public request gets a ``CallTag`` (a context variable, so nothing is plumbed through
  the handlers): its real client address and its class, ``free`` until a charge passes.
- ``FreeTierPayment.charge`` is ``PaymentService.charge`` plus one rule: a call the ledger
  refused for payment (no id, a forged or replayed id, too few credits) is served free when
  its host's allowance (``free_tier``) holds the up-front price *and* the global free share is
  not spent (``AdmissionQueue.free_backlogged``); otherwise the refusal stands, as monerod
  words it. The rest of a free call's price (counted in the answer) is owed to the allowance;
  an upstream failure gives the up-front price back. ``rpc_access_pay`` is never served free.
- ``AdmittedUpstream`` wraps the upstream the handlers forward to (the gateway's own calls,
  top polls and templates, use the bare upstream and are never queued): each forward holds one
  of ``--upstream-concurrency`` slots, paid calls first (``priority.AdmissionQueue``). A free
  call shed from a full line is answered "busy" in the caller's protocol (monerod's ``BUSY``
  status in JSON and epee; JSON-RPC error -32005 on other backends) and costs nothing; a paid
  call shed (only a line full of paid calls does that) is an upstream failure, refunded.

With the free tier off and no ``--upstream-concurrency`` none of this is built: the gateway
is exactly what it was. This module is the narrowest integration into the handlers of today
(``app.py``, ``binary.py``, ``paywall.py`` call ``payment.charge`` and ``upstream.post``); the
unified paid-call pipeline (branch i11-pipeline) is to expose the same two seams explicitly:
a refusal hook (``Capacity.admit_free``) and an admission wrapper (``Capacity.forward``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from aiohttp import web

from rpcpay.errors import UpstreamError
from rpcpay.gateway.binary_costs import BINARY_RULES, refused_answer
from rpcpay.gateway.free_tier import FreeTable, FreeTierSettings, check_free_tier
from rpcpay.gateway.jsoncodec import decode_json, encode_json
from rpcpay.gateway.payment import Charge, PaymentService
from rpcpay.gateway.priority import (
    AdmissionQueue,
    CallClass,
    QueueSettings,
    Shed,
    check_queue_settings,
    queue_settings,
)
from rpcpay.gateway.upstream import Upstream, UpstreamReply
from rpcpay.wire import epee
from rpcpay.wire.rpc import (
    ERROR_RATE_LIMITED,
    SIGNATURE_STATUS_PREFIX,
    STATUS_BUSY,
    STATUS_OK,
    STATUS_PAYMENT_REQUIRED,
)

log = logging.getLogger("rpcpay.capacity")

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
MESSAGE_BUSY = "Server busy: free capacity is full; paid calls are served first"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DEFAULT_CONCURRENCY = 8
"""Upstream slots when the free tier is on and --upstream-concurrency is not given (monerod
serves RPC on a pool of about that many threads on a home PC)."""
OUTCOMES = ("paid", "free", "refused", "shed")
"""Classes a finished call is counted in: charged, served free, refused for payment, shed."""


@dataclass(slots=True)
class CallTag:
    """One public request's class (mutable: the request's scratch pad, like ``CallNote``)."""

    address: str
    cls: CallClass = "free"
    free_price: int = 0  # up-front credits taken from the allowance (given back on failure)
    refused: bool = False
    shed: bool = False


_tag: ContextVar[CallTag | None] = ContextVar("rpcpay_call_tag", default=None)


def current_tag() -> CallTag | None:
    return _tag.get()


def is_payment_refusal(charge: Charge) -> bool:
    """Refused for want of payment or of a valid id (not for any other reason)."""
    return not charge.ok and (
        charge.status == STATUS_PAYMENT_REQUIRED
        or charge.status.startswith(SIGNATURE_STATUS_PREFIX)
    )


class Latency:
    """Seconds per finished call by outcome, as cumulative histogram counts (loop-only)."""

    def __init__(self) -> None:
        self.counts = {o: [0] * (len(LATENCY_BUCKETS) + 1) for o in OUTCOMES}
        self.sums = dict.fromkeys(OUTCOMES, 0.0)

    def observe(self, outcome: str, seconds: float) -> None:
        counts = self.counts[outcome]
        for n, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                counts[n] += 1
                break
        else:
            counts[-1] += 1
        self.sums[outcome] += seconds

    def quantile(self, outcome: str, q: float) -> float | None:
        """The bucket bound at quantile ``q`` (None if nothing was counted)."""
        counts = self.counts[outcome]
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
    ) -> None:
        self.free = free
        self.table = FreeTable(free)
        self.queue = AdmissionQueue(queue) if queue is not None else None
        self._clock = clock
        self.free_served = 0
        self.refused_allowance = 0
        self.refused_share = 0
        self.latency = Latency()

    # -- the refusal hook -----------------------------------------------------------------

    def admit_free(self, refusal: Charge, amount: int, address: str) -> Charge:
        """A payment refusal turned into a free admission when the free tier allows it;
        otherwise the refusal itself."""
        tag = _tag.get()
        # Only a public call refused for payment can be served free.
        if tag is None or not self.free.on or not is_payment_refusal(refusal):
            return refusal
        # The global free share is spent: free calls already wait for every free slot.
        if self.queue is not None and self.queue.free_backlogged():
            self.refused_share += 1
            tag.refused = True
            return refusal
        # The host's allowance must hold the whole up-front price.
        if not self.table.take(address, amount, self._clock()):
            self.refused_allowance += 1
            tag.refused = True
            return refusal
        tag.cls, tag.free_price = "free", amount
        self.free_served += 1
        # Served as monerod serves a free call: the balance as it is, nothing taken.
        return Charge(True, STATUS_OK, refusal.credits, refusal.top_hash)

    def owe(self, amount: int) -> None:
        """The rest of a free call's price, counted in its answer."""
        tag = _tag.get()
        if tag is not None and tag.free_price and amount > 0:
            self.table.owe(tag.address, amount, self._clock())

    def give_back(self) -> None:
        """The upstream failed a free call: its host gets the up-front price back."""
        tag = _tag.get()
        if tag is not None and tag.free_price:
            self.table.give_back(tag.address, tag.free_price, self._clock())
            tag.free_price = 0

    # -- the admission wrapper ------------------------------------------------------------

    async def forward(
        self, path: str, body: bytes, send: Callable[[], Awaitable[UpstreamReply]]
    ) -> UpstreamReply:
        """``send()`` inside an upstream slot for the current call's class; a shed free call
        gets a "busy" answer in its protocol instead, a shed paid call an ``UpstreamError``."""
        tag = _tag.get()
        # The gateway's own calls, and everything when concurrency is unbounded, go straight.
        if tag is None or self.queue is None:
            return await send()
        try:
            async with self.queue.slot(tag.cls, tag.address):
                return await send()
        except Shed:
            tag.shed = True
            self.give_back()  # a shed call costs nothing, free allowance included
            if tag.cls == "paid":
                raise UpstreamError(
                    "upstream busy: every slot and the whole line are paid"
                ) from None
            return busy_reply(path, body)

    # -- per request ------------------------------------------------------------------------

    def wrap(self, inner: Handler, address: Callable[[web.BaseRequest], str]) -> Handler:
        """The public handler with each request tagged, and its latency counted by class."""

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            tag = CallTag(address(request))
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


def build_capacity(free: FreeTierSettings, concurrency: int, queue: int) -> Capacity | None:
    """The capacity rules the flags ask for; None when they ask for none (today's gateway).
    ConfigError names a bad flag."""
    check_free_tier(free)
    # Neither a free tier nor a bound on the upstream: nothing to build.
    if not free.on and concurrency == 0:
        return None
    slots = concurrency or DEFAULT_CONCURRENCY
    settings = queue_settings(slots, free.share, queue)
    check_queue_settings(settings)
    return Capacity(free, settings)


def outcome_of(tag: CallTag) -> str:
    """The class a finished call is counted in."""
    if tag.shed:
        return "shed"
    if tag.refused:
        return "refused"
    return tag.cls


def busy_reply(path: str, body: bytes) -> UpstreamReply:
    """What a shed free call is told, as its upstream would have said "busy"."""
    rule = BINARY_RULES.get(path)
    if rule is not None:
        answer = epee.encode(refused_answer(rule, STATUS_BUSY, 0, ""))
        return UpstreamReply(200, answer, "application/octet-stream")
    if path == "/json_rpc":
        request_id = _request_id(body)
        document: object = {
            "id": request_id,
            "jsonrpc": "2.0",
            "result": {"status": STATUS_BUSY, "untrusted": False},
        }
    elif path == "":
        document = _jsonrpc_busy(body)
    else:
        document = {"status": STATUS_BUSY, "untrusted": False}
    return UpstreamReply(200, encode_json(document), "application/json")


def _request_id(body: bytes) -> object:
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        document = decode_json(body)
        if isinstance(document, dict):
            return document.get("id")
    return None


def _jsonrpc_busy(body: bytes) -> object:
    """JSON-RPC 2.0 error -32005 for each call of a single call or a batch."""

    def error(request_id: object) -> dict[str, object]:
        return {
            "error": {"code": ERROR_RATE_LIMITED, "message": MESSAGE_BUSY},
            "id": request_id,
            "jsonrpc": "2.0",
        }

    try:
        document = decode_json(body)
    except (ValueError, UnicodeDecodeError):
        return error(None)
    if isinstance(document, list):
        return [error(item.get("id")) for item in document if isinstance(item, dict)]
    return error(document.get("id") if isinstance(document, dict) else None)


class AdmittedUpstream:
    """An ``Upstream`` whose forwards wait for a slot (``Capacity.forward``)."""

    def __init__(self, inner: Upstream, capacity: Capacity) -> None:
        self._inner = inner
        self._capacity = capacity

    async def post(self, path: str, body: bytes, content_type: str) -> UpstreamReply:
        return await self._capacity.forward(
            path, body, lambda: self._inner.post(path, body, content_type)
        )

    async def close(self) -> None:
        await self._inner.close()


class FreeTierPayment(PaymentService):
    """``PaymentService`` with the free tier's refusal hook (see the module docstring)."""

    capacity: Capacity

    async def charge(
        self,
        client: object,
        amount: int,
        rpc: str,
        address: str,
        *,
        same_ts: bool = False,
        free: bool = True,
    ) -> Charge:
        result = await super().charge(client, amount, rpc, address, same_ts=same_ts)
        tag = _tag.get()
        if result.ok and result.client is not None and tag is not None:
            tag.cls = "paid"
            return result
        # rpc_access_pay (free=False) must never see a free pass as payment.
        if not free:
            return result
        return self.capacity.admit_free(result, amount, address)

    def charge_more(self, first: Charge, amount: int) -> Charge:
        if first.client is None:
            self.capacity.owe(amount)
        return super().charge_more(first, amount)

    def refund(self, charge: Charge) -> int:
        if charge.client is None:
            self.capacity.give_back()
        return super().refund(charge)


@contextlib.contextmanager
def tagged(address: str) -> Iterator[CallTag]:
    """A request tag outside an HTTP handler (tests, the benchmark's driver)."""
    tag = CallTag(address)
    token = _tag.set(tag)
    try:
        yield tag
    finally:
        _tag.reset(token)
