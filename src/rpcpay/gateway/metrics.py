"""Prometheus metrics of one gateway, served as text on the admin listener's ``/metrics``.

Contract: every series is ``rpcpay_*`` in a registry of this gateway's own (two gateways in
one process, as in the tests, never share counters). Counters are fed where things happen,
without touching the payment rules: ``MeteredLedger`` (a ``SharedLedger`` that counts shares by
verdict, credits earned and spent, and times each durable write), ``MeteredUpstream`` (times
upstream calls, counts failures), ``TimedHasher`` (times share verification) and the
``record`` of each public call (``observe.CallRecord``). Gauges are read at scrape time:
verifier queue, clients tracked, hash rate, blocks found, lottery state.

Cardinality is bounded: a JSON-RPC method name is the client's choice, so only the first
``MAX_METHOD_LABELS`` distinct names get their own label; the rest count as ``other``.

Cost per paid call with metrics on: one counter increment, one ledger histogram observation
and two dictionary reads, a few microseconds (bench/paid_calls.py --observability).
"""

from __future__ import annotations

import bisect
import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rpcpay.errors import LedgerError, UpstreamError
from rpcpay.gateway.observe import CallRecord
from rpcpay.gateway.upstream import Upstream, UpstreamReply
from rpcpay.ledger.account import Account, PaymentResult, ShareOutcome
from rpcpay.ledger.shared_ledger import SharedLedger
from rpcpay.ledger.transactional import RecordNonce, TransactionalStore, pay_step

if TYPE_CHECKING:
    from rpcpay.gateway.app import GatewayCore
    from rpcpay.gateway.payment import Hasher

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_METHOD_LABELS = 200
LEDGER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
VERIFY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UPSTREAM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class _Child:
    """One label set's value(s): a counter's total, or a histogram's buckets and sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.total += amount

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class LoopMetric:
    """A counter or histogram updated only from the event loop's thread.

    prometheus-client's own metrics take a lock on every update (they may be shared between
    threads); every update here happens on the gateway's one event loop, scrapes included,
    so plain numbers are enough and cost a fifth. ``prometheus-client`` still renders them
    (``collect``), in the standard text format.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] | None = None,
    ) -> None:
        self.name, self.documentation, self.label_names = name, documentation, labels
        self.buckets = buckets
        self._children: dict[tuple[str, ...], _Child] = {}
        if not labels:
            self._default = self.labels()

    def labels(self, *values: str) -> _Child:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _Child(self.buckets or ())
        return child

    def inc(self, amount: float = 1.0) -> None:
        self._default.total += amount

    def observe(self, value: float) -> None:
        self._default.observe(value)

    def family(self) -> Metric:
        labels = list(self.label_names)
        if self.buckets is None:
            counter = CounterMetricFamily(self.name, self.documentation, labels=labels)
            for values, child in self._children.items():
                counter.add_metric(list(values), child.total)
            return counter
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=labels)
        for values, child in self._children.items():
            cumulative, rows = 0, []
            for bound, count in zip((*self.buckets, math.inf), child.counts, strict=True):
                cumulative += count
                rows.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            histogram.add_metric(list(values), rows, child.total)
        return histogram


class GatewayMetrics(Collector):
    """The gateway's counters and histograms; ``exposition()`` renders them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.clients_tracked: int | None = None  # set by ``refresh`` before each scrape
        self.calls = LoopMetric(
            "rpcpay_calls", "Public calls by method and outcome", ("method", "outcome")
        )
        self.credits_earned = LoopMetric(
            "rpcpay_credits_earned", "Credits earned by clients, by rail", ("rail",)
        )
        self.credits_spent = LoopMetric("rpcpay_credits_spent", "Credits clients paid for calls")
        self.credits_refunded = LoopMetric(
            "rpcpay_credits_refunded", "Credits given back after upstream failures"
        )
        self.shares = LoopMetric("rpcpay_shares", "Shares booked, by verdict", ("verdict",))
        self.verify_seconds = LoopMetric(
            "rpcpay_verify_seconds", "Share hash time", buckets=VERIFY_BUCKETS
        )
        self.ledger_seconds = LoopMetric(
            "rpcpay_ledger_seconds",
            "Ledger operation time, durable write included",
            ("op",),
            buckets=LEDGER_BUCKETS,
        )
        self.upstream_seconds = LoopMetric(
            "rpcpay_upstream_seconds", "Upstream call time", buckets=UPSTREAM_BUCKETS
        )
        self.upstream_errors = LoopMetric(
            "rpcpay_upstream_errors", "Upstream calls that failed or answered non-200"
        )
        self.lottery_cheques = LoopMetric(
            "rpcpay_lottery_cheques", "Lottery cheques accepted and credited"
        )
        self._all = [v for v in vars(self).values() if isinstance(v, LoopMetric)]
        self.registry.register(self)
        self._methods: dict[tuple[str, str], Callable[[float], None]] = {}
        self._known: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        for metric in self._all:
            yield metric.family()

    def record(self, call: CallRecord) -> None:
        """Count one finished public call (the access log's sibling)."""
        key = (call.method, call.outcome)
        inc = self._methods.get(key)
        if inc is None:
            method = call.method[:64]
            # Client-chosen names: only the first few hundred get a series of their own.
            if method not in self._known and len(self._known) >= MAX_METHOD_LABELS:
                method = "other"
            self._known.add(method)
            inc = self.calls.labels(method, call.outcome).inc
            self._methods[key] = inc
        inc(1)

    def watch(self, core: GatewayCore, verifier_pending: Callable[[], int]) -> None:
        """Gauges read at scrape time from the running gateway."""
        self.registry.register(_StateCollector(core, verifier_pending, self))

    async def refresh(self, core: GatewayCore) -> None:
        """Read what lives in the shared ledger (the collectors run synchronously at scrape
        time, so the scrape handler awaits this first): the stored accounts, every process's."""
        try:
            self.clients_tracked = await core.payment.ledger.store.count()
        except LedgerError:
            self.clients_tracked = None

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(
        self, core: GatewayCore, verifier_pending: Callable[[], int], metrics: GatewayMetrics
    ) -> None:
        self._core = core
        self._pending = verifier_pending
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        core = self._core
        payment = core.payment
        yield GaugeMetricFamily(
            "rpcpay_verifier_queue", "Shares waiting for or in verification", self._pending()
        )
        clients = self._metrics.clients_tracked
        # None: the shared ledger did not answer (that shows in /readyz); the rest still matter.
        if clients is not None:
            yield GaugeMetricFamily("rpcpay_clients_tracked", "Client accounts known", clients)
        rate = payment.hashrate.rate(time.time())
        yield GaugeMetricFamily("rpcpay_hashrate", "Clients' hash rate, H/s", rate)
        blocks = payment.blocks_found
        yield CounterMetricFamily("rpcpay_blocks_found", "Blocks found by clients' shares", blocks)
        desk = core.cheques
        if desk is not None:
            yield CounterMetricFamily(
                "rpcpay_lottery_claims", "Won lotteries claimed", len(desk.claims)
            )
            yield CounterMetricFamily(
                "rpcpay_lottery_fraud_proofs", "Fraud proofs filed", len(desk.proofs)
            )
            with contextlib.suppress(LedgerError):
                held = desk.open_lottery_count()
                yield GaugeMetricFamily(
                    "rpcpay_lottery_open", "Lotteries holding our cheques", held
                )


class MeteredLedger(SharedLedger):
    """A SharedLedger that counts what it books and times each operation (the store's
    transaction included: what the client waits)."""

    def __init__(self, store: TransactionalStore, metrics: GatewayMetrics) -> None:
        super().__init__(store)
        self._m = metrics
        self._pay_time = metrics.ledger_seconds.labels("pay").observe
        self._share_time = metrics.ledger_seconds.labels("share").observe
        self._other_time = metrics.ledger_seconds.labels("other").observe
        self._spent = metrics.credits_spent.inc
        self._verdicts = {o: metrics.shares.labels(o.name.lower()).inc for o in ShareOutcome}

    async def pay(
        self, client: bytes, ts_us: int, payment: int, same_ts: bool = False
    ) -> PaymentResult:
        started = time.perf_counter()
        # SharedLedger.pay's one line, inlined: a paid call's every frame costs.
        step = pay_step(ts_us, payment, same_ts)
        result = (await self.store.apply(client, step, now=int(self._clock()))).outcome
        self._pay_time(time.perf_counter() - started)
        if result.ok:
            self._spent(payment)
        return result

    def _booked(self, outcome: ShareOutcome, credits_per_hash_found: int) -> None:
        self._verdicts[outcome]()
        # Only a good share earns, exactly its credits (saturation aside, as the rule).
        if outcome is ShareOutcome.GOOD:
            self._m.credits_earned.labels("hash").inc(credits_per_hash_found)

    async def record_share(
        self, client: bytes, outcome: ShareOutcome, credits_per_hash_found: int
    ) -> Account:
        started = time.perf_counter()
        account = await super().record_share(client, outcome, credits_per_hash_found)
        self._share_time(time.perf_counter() - started)
        self._booked(outcome, credits_per_hash_found)
        return account

    async def record_submitted_share(
        self, client: bytes, nonce: RecordNonce, outcome: ShareOutcome, credits_per_hash_found: int
    ) -> tuple[Account, ShareOutcome]:
        started = time.perf_counter()
        account, booked = await super().record_submitted_share(
            client, nonce, outcome, credits_per_hash_found
        )
        self._share_time(time.perf_counter() - started)
        self._booked(booked, credits_per_hash_found)
        return account, booked

    async def record_unbooked_nonce(
        self, client: bytes, nonce: RecordNonce, credits_per_hash_found: int
    ) -> bool:
        started = time.perf_counter()
        fresh = await super().record_unbooked_nonce(client, nonce, credits_per_hash_found)
        self._share_time(time.perf_counter() - started)
        if not fresh:
            self._booked(ShareOutcome.DUPE, credits_per_hash_found)
        return fresh

    async def refund(self, client: bytes, amount: int) -> Account:
        started = time.perf_counter()
        account = await super().refund(client, amount)
        self._other_time(time.perf_counter() - started)
        self._m.credits_refunded.inc(amount)
        return account

    def lottery_credit(self, credits: int) -> None:
        """Count a cheque's credit (booked by the cheque desk, `ChequeDesk(on_credit=...)`)."""
        self._m.credits_earned.labels("lottery").inc(credits)
        self._m.lottery_cheques.inc()


class MeteredUpstream:
    """An Upstream whose calls are timed and whose failures are counted."""

    def __init__(self, inner: Upstream, metrics: GatewayMetrics) -> None:
        self.inner = inner
        self._time = metrics.upstream_seconds.observe
        self._errors = metrics.upstream_errors.inc

    async def post(self, path: str, body: bytes, content_type: str) -> UpstreamReply:
        started = time.perf_counter()
        try:
            reply = await self.inner.post(path, body, content_type)
        except UpstreamError:
            self._errors()
            raise
        finally:
            self._time(time.perf_counter() - started)
        if reply.status != 200:
            self._errors()
        return reply

    async def close(self) -> None:
        await self.inner.close()


class TimedHasher:
    """A Hasher whose hashes are timed (queue wait included: what a client waits)."""

    def __init__(self, inner: Hasher, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._time = metrics.verify_seconds.observe

    async def hash(self, seed_hash: bytes, blob: bytes) -> bytes:
        started = time.perf_counter()
        try:
            return await self._inner.hash(seed_hash, blob)
        finally:
            self._time(time.perf_counter() - started)

    async def prepare(self, seed_hash: bytes) -> None:
        await self._inner.prepare(seed_hash)


__all__ = [
    "CONTENT_TYPE",
    "GatewayMetrics",
    "MeteredLedger",
    "MeteredUpstream",
    "TimedHasher",
]
