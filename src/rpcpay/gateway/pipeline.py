"""One paid call, start to end: charge, forward, refund or second charge, stamp, track.

Every call the public listener serves for credits goes through ``Pipeline.run``: monerod's
JSON-RPC (``/json_rpc``), its JSON endpoints (``/get_transactions``, ...), its epee binary
endpoints (``*.bin``) and the paywall in front of a JSON-RPC backend. Each is an *envelope*,
a subclass that says only what differs between them:

- **parse**: its own front reads the HTTP request into a ``PaidCall`` (bad input is answered
  there, before anything is charged); ``fetch`` encodes the upstream request and parses the
  reply (or answers from a cache), reaching the upstream only through the ``Forward`` it is
  handed;
- **price**: ``PaidCall.upfront``, and ``price_after`` for monerod's second charge of the
  items counted in the answer;
- **stamp**: ``stamp`` puts the balance (``credits``, ``top_hash``) where the protocol wants it;
- **encode**: ``encode``, ``refuse`` and ``failed`` write the answer, a payment refusal and an
  upstream failure, byte for byte as the envelope answered before this module existed.

The base owns the money and its order, and an envelope may not change it:

1. Charge ``upfront`` (``None``: a free call, never charged). If the charge is refused,
   ``FreeTier.admit`` (seam a, default: never) may serve the call free; otherwise the
   envelope's ``refuse`` answers and nothing reaches the upstream. For an admitted call,
   the ``Admitted`` it returned takes the second charge and the refunds below.
2. Fetch, each upstream request inside the call's ``Slots.slot`` (seam b, default: no-op),
   slot wait and request together bounded by ``--upstream-timeout``.
3. Refund rules. The whole charge goes back, before the client hears, when:
   - the upstream fails (unreachable, timeout, non-200, malformed; ``UpstreamError``): the
     envelope's ``failed`` answers with the balance after the refund;
   - the call is shed by its slot (``Shed``): ``failed`` answers a paid call, ``busy`` a free
     one (default: as ``failed``);
   - the envelope finds the call unservable after the charge (``CallRefused``: its answer);
   - the call is cancelled (shutdown past its grace) while it is fetched or its second
     charge is made: the first charge is refunded in a task of its own, which a second
     cancellation cannot stop and ``InFlight.drain`` waits for. (A second charge the store
     committed just before the cancellation landed is not known here and stays charged.)
     A cancellation during the first charge is safe too: the charge runs at once, and if it
     has to wait, in a task of its own (``eager``), and what it debited is refunded once it
     commits; a charge that never waits (SQLite's) cannot be cancelled half way.
   Never refunded: an answer the upstream gave with its own error (it did the work), and
   the first charge when the second is refused (monerod keeps it too).
4. The second, same-timestamp charge (``PaymentService.charge_more``) of ``price_after``;
   refused, the envelope's ``refuse`` answers with the balance left (noted ``unpaid`` and
   tracked with the first charge's credits, which it kept).
5. Stamp (only charged or admitted calls), then track: ``observe.note_call`` (the access log
   and the metrics) and the ``Tracker`` behind rpc_access_tracking.

Refusals before the charge (bad input, unknown method) are the fronts'; they and refused
first charges are noted for the access log but not tracked.

The seams are for issue 14 (free tier, paid priority): ``Seams(free_tier, slots)`` is given
to ``PublicHandler``. A call's class is ``paid`` when its charge debited a verified client,
and ``free`` for everything else (free methods, free loopback, the free tier's admissions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from aiohttp import web

from rpcpay.errors import UpstreamError
from rpcpay.gateway.connections import InFlight
from rpcpay.gateway.eager import start_eagerly
from rpcpay.gateway.observe import note_call
from rpcpay.gateway.payment import Charge, PaymentService
from rpcpay.gateway.tracking import Tracker
from rpcpay.gateway.upstream import Upstream, UpstreamReply

log = logging.getLogger("rpcpay.pipeline")

R = TypeVar("R")
A = TypeVar("A")

CallClass = Literal["paid", "free"]
"""A call's priority class: ``paid`` when its charge debited a verified client, ``free``
otherwise (free methods, free loopback, and calls the free tier admitted)."""


@dataclass(frozen=True, slots=True)
class PaidCall(Generic[R]):
    """One parsed and priced call, as the base sees it.

    ``request`` is the envelope's own parsed request; ``rpc`` the name it is charged and
    tracked under; ``upfront`` the credits due before forwarding (``None``: not charged at
    all); ``client`` the client id as sent (the charge verifies it); ``peer`` the real client
    address. ``items`` is set for a batch: (method, price) of each forwarded item, tracked
    one by one."""

    request: R
    rpc: str
    upfront: int | None
    client: object
    peer: str
    items: tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """The free tier's yes: serve the call with ``charge`` (ok, usually debiting nobody),
    in class ``klass``. For this call the pipeline asks it, not the ledger, for the second
    charge and the refunds: a free tier that took the price from an allowance subclasses it
    to take the rest (``charge_more``) or give the price back (``refund``)."""

    charge: Charge
    klass: CallClass = "free"

    async def charge_more(self, amount: int) -> Charge:
        """The second charge of ``amount`` (default: free, so ``charge`` unchanged)."""
        return self.charge

    async def refund(self) -> int:
        """The call was not served: give back what was taken; the balance to report."""
        return self.charge.credits


class FreeTier(Protocol):
    """Seam (a): may turn a refused charge into a free admission (issue 14)."""

    async def admit(self, call: PaidCall[Any], refused: Charge) -> Admitted | None:
        """``None`` refuses the call as the charge did; ``Admitted`` serves it."""
        ...


class Slots(Protocol):
    """Seam (b): wraps each upstream request of a call (issue 14's priority queue). May
    raise ``Shed`` to refuse the call; the pipeline then refunds it."""

    def slot(self, klass: CallClass, address: str) -> AbstractAsyncContextManager[object]: ...


class NoFreeTier:
    """The default: a refused charge stays refused (monerod's behaviour)."""

    async def admit(self, call: PaidCall[Any], refused: Charge) -> Admitted | None:
        return None


class NoSlots:
    """The default: every upstream request goes at once."""

    _none: AbstractAsyncContextManager[object] = contextlib.nullcontext()

    def slot(self, klass: CallClass, address: str) -> AbstractAsyncContextManager[object]:
        return self._none


class Shed(Exception):
    """Raised by a slot: the call is not served now (it is refunded, and costs nothing)."""


class CallRefused(Exception):
    """Raised by ``fetch``: the call cannot be served after all (its parameters turned out
    malformed); it is refunded and ``response`` is the answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("call refused")
        self.response = response


@dataclass(frozen=True, slots=True)
class Seams:
    """Where issue 14 hooks in; both no-ops by default."""

    free_tier: FreeTier = field(default_factory=NoFreeTier)
    slots: Slots = field(default_factory=NoSlots)


@dataclass(frozen=True, slots=True)
class PipelineParts:
    """What every envelope shares: the payment service, the upstream, the tracker, the
    in-flight set a shutdown drains, the forward's bound and the seams."""

    payment: PaymentService
    upstream: Upstream
    tracker: Tracker
    inflight: InFlight = field(default_factory=InFlight)
    upstream_timeout_s: float = 20.0
    seams: Seams = field(default_factory=Seams)


class Forward:
    """The one way an envelope reaches the upstream for a call: inside the call's slot,
    bounded by ``--upstream-timeout``. A timeout is an ``UpstreamError``.

    Without slots (the default) the bound is the upstream's own (``HttpUpstream`` is built
    with ``--upstream-timeout``), so the common path pays for no second timer (an
    ``asyncio.timeout`` measured 5 to 17 µs a call on the shared 2-core test machine); with
    slots, the wait for a slot and the request together get the bound here."""

    __slots__ = ("_parts", "klass", "peer")

    def __init__(self, parts: PipelineParts, klass: CallClass, peer: str) -> None:
        self._parts = parts
        self.klass = klass
        self.peer = peer

    async def __call__(self, path: str, body: bytes, content_type: str) -> UpstreamReply:
        parts = self._parts
        if type(parts.seams.slots) is NoSlots:
            return await parts.upstream.post(path, body, content_type)
        try:
            async with asyncio.timeout(parts.upstream_timeout_s):
                async with parts.seams.slots.slot(self.klass, self.peer):
                    return await parts.upstream.post(path, body, content_type)
        except TimeoutError:
            raise UpstreamError(f"upstream timed out for {path or '/'}") from None


def class_of(charge: Charge | None) -> CallClass:
    """``paid`` when the charge debited a verified client, ``free`` otherwise."""
    return "paid" if charge is not None and charge.client is not None else "free"


class Pipeline(Generic[R, A]):
    """The base of every envelope (see the module docstring for what each may override)."""

    def __init__(self, parts: PipelineParts) -> None:
        self.parts = parts

    # -- what an envelope overrides ---------------------------------------------------------

    async def fetch(self, call: PaidCall[R], charge: Charge | None, forward: Forward) -> A:
        """The answer to the call, from the upstream (through ``forward`` only) or a cache.
        Raises ``UpstreamError`` if the upstream fails, ``CallRefused`` to refuse."""
        raise NotImplementedError

    def price_after(self, call: PaidCall[R], answer: A) -> int:
        """Credits due for the items counted in ``answer`` (monerod's second charge)."""
        return 0

    def stamp(self, call: PaidCall[R], answer: A, charge: Charge) -> A:
        """``answer`` with the client's balance and the chain top in it."""
        return answer

    def encode(self, call: PaidCall[R], answer: A, charge: Charge | None) -> web.Response:
        """The HTTP answer for a served call."""
        raise NotImplementedError

    def refuse(self, call: PaidCall[R], charge: Charge) -> web.Response:
        """The HTTP answer when a charge (first or second) is refused."""
        raise NotImplementedError

    def failed(self, call: PaidCall[R], charge: Charge | None, credits: int) -> web.Response:
        """The HTTP answer when the upstream failed; ``credits``: the balance, refunded."""
        raise NotImplementedError

    def busy(self, call: PaidCall[R], charge: Charge | None, credits: int) -> web.Response:
        """The HTTP answer when the call's slot shed a free call, refunded (default: as an
        upstream failure; issue 14 answers it "busy" in the envelope's protocol). A shed paid
        call is answered by ``failed``."""
        return self.failed(call, charge, credits)

    # -- the one path ------------------------------------------------------------------------

    async def run(self, call: PaidCall[R]) -> web.Response:
        """Serve one call: charge, fetch, refund or charge the rest, stamp, track."""
        started = time.perf_counter()
        payment = self.parts.payment
        charge: Charge | None = None
        admission: Admitted | None = None  # the free tier's, for a call it let through
        klass: CallClass = "free"
        if call.upfront is not None:
            charge = await self._charge(call, call.upfront)
            if charge.ok:
                klass = class_of(charge)
            else:
                admitted = await self.parts.seams.free_tier.admit(call, charge)
                if admitted is None:
                    note_call(outcome="unpaid")
                    return self.refuse(call, charge)
                admission, charge, klass = admitted, admitted.charge, admitted.klass
        try:
            answer = await self.fetch(call, charge, Forward(self.parts, klass, call.peer))
        except asyncio.CancelledError:  # shutdown past its grace: the call never happened
            if charge is not None:
                await self._refund_despite_cancel(charge, admission)
            raise
        except UpstreamError as exc:
            log.warning("upstream failed", extra={"rpc": call.rpc, "error": str(exc)})
            note_call(outcome="upstream_error")
            credits = await self._refund(charge, admission)
            return self.failed(call, charge, credits)
        except Shed:
            note_call(outcome="shed")
            credits = await self._refund(charge, admission)
            if klass == "paid":
                return self.failed(call, charge, credits)
            return self.busy(call, charge, credits)
        except CallRefused as refused:
            await self._refund(charge, admission)
            return refused.response
        paid = charge.amount if charge is not None else 0
        if charge is not None:
            more = self.price_after(call, answer)
            if more > 0:
                try:
                    if admission is None:
                        final = await payment.charge_more(charge, more)
                    else:
                        final = await admission.charge_more(more)
                except asyncio.CancelledError:  # the client will never see the answer
                    await self._refund_despite_cancel(charge, admission)
                    raise
                if not final.ok:
                    # The first charge stands (monerod keeps it); the answer is withheld.
                    note_call(outcome="unpaid", credits=paid)
                    self._track(call, started, paid, charge)
                    return self.refuse(call, final)
                if final is not charge:
                    paid += final.amount
                charge = final
            answer = self.stamp(call, answer, charge)
        note_call(outcome="paid" if paid else "free", credits=paid)
        self._track(call, started, paid, charge)
        return self.encode(call, answer, charge)

    def _track(self, call: PaidCall[R], started: float, paid: int, charge: Charge | None) -> None:
        elapsed = int((time.perf_counter() - started) * 1e6)
        if call.items is None:
            self.parts.tracker.record(call.rpc, elapsed, paid)
            return
        # A batch: each item under its own method, at its own price if it was charged.
        share = elapsed // len(call.items) if call.items else 0
        for method, price in call.items:
            self.parts.tracker.record(method, share, price if charge is not None else 0)

    async def _charge(self, call: PaidCall[R], upfront: int) -> Charge:
        """The first charge, which a cancellation cannot lose: it runs at once, and if it
        has to wait (for the store's transaction), the rest runs in a task of its own
        (``eager``), so a handler cancelled while it commits (shutdown past its grace) leaves
        a task that waits for the commit and refunds what it debited, and ``InFlight.drain``
        waits for that task before the ledger closes. A charge that never waits (SQLite's
        commit on the loop) cannot be cancelled half way, and needs no task. Only a store that
        binds no task runs eagerly (``PaymentService.charges_eagerly``): both stores do
        (PostgreSQL's first part only queues the call for its group commit, whose batches
        run the driver in a task of their own)."""
        payment = self.parts.payment
        charging = payment.charge(call.client, upfront, call.rpc, call.peer)
        pending = (
            start_eagerly(charging, "rpcpay-charge")
            if payment.charges_eagerly
            else asyncio.ensure_future(charging)
        )
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            self._track_task(
                asyncio.get_running_loop().create_task(
                    self._refund_when_charged(pending), name="rpcpay-refund"
                )
            )
            raise

    async def _refund_when_charged(self, pending: asyncio.Future[Charge]) -> None:
        """Refund a cancelled call's first charge once its transaction has ended."""
        try:
            charge = await pending
        except Exception:  # nothing was charged: a failed transaction changed nothing
            return
        if charge.ok and charge.client is not None:
            await self._refund_logged(charge, None)

    def _track_task(self, task: asyncio.Task[None]) -> None:
        tasks = self.parts.inflight.tasks
        tasks.add(task)
        task.add_done_callback(_discarder(tasks))

    async def _refund(self, charge: Charge | None, admission: Admitted | None) -> int:
        """Give the call's charge back; the balance to report (0 for an uncharged call)."""
        if admission is not None:
            return await admission.refund()
        return await self.parts.payment.refund(charge) if charge is not None else 0

    async def _refund_despite_cancel(self, charge: Charge, admission: Admitted | None) -> None:
        """Refund in a task of its own: a second cancellation cannot stop it half way, and
        the shutdown's ``InFlight.drain`` waits for it before the ledger closes."""
        task = asyncio.get_running_loop().create_task(
            self._refund_logged(charge, admission), name="rpcpay-refund"
        )
        self._track_task(task)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def _refund_logged(self, charge: Charge, admission: Admitted | None) -> None:
        try:
            await self._refund(charge, admission)
        except Exception as exc:  # nobody is left to answer; the operator must hear of it
            log.error(
                "refund of a cancelled call failed",
                extra={"amount": charge.amount, "error": f"{type(exc).__name__}: {exc}"},
            )


def _discarder(tasks: set[asyncio.Task[object]]) -> Callable[[asyncio.Task[None]], None]:
    def discard(task: asyncio.Task[None]) -> None:
        tasks.discard(task)

    return discard
