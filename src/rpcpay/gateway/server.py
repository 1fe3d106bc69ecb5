"""Assembling and running the gateway: ledger, jobs, verifier, listeners, housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from rpcpay.errors import ConfigError, LedgerError, RpcPayError, UpstreamError, WireError
from rpcpay.gateway.admin import AdminHandler
from rpcpay.gateway.app import GatewayCore, PublicHandler
from rpcpay.gateway.capacity import BiddingPayment, build_capacity
from rpcpay.gateway.capacity_metrics import CapacityCollector
from rpcpay.gateway.chain_cache import ChainCache
from rpcpay.gateway.cheques import ChequeDesk, LotterySettings
from rpcpay.gateway.client_address import TrustedProxies
from rpcpay.gateway.connections import (
    ConnectionLimits,
    GuardedServer,
    InFlight,
    check_connection_limits,
    guard_requests,
)
from rpcpay.gateway.costs import PriceList, load_price_list
from rpcpay.gateway.dashboard import BlockRecorder, DashboardPages, History
from rpcpay.gateway.free_tier import FreeTierSettings
from rpcpay.gateway.info_cache import InfoCache
from rpcpay.gateway.jobs import JobSource
from rpcpay.gateway.ledger_outage import answer_ledger_outages
from rpcpay.gateway.limits import AbuseGuard, AbuseLimits
from rpcpay.gateway.metrics import GatewayMetrics, MeteredLedger, MeteredUpstream, TimedHasher
from rpcpay.gateway.mode import detect_mode
from rpcpay.gateway.monerod_jobs import MonerodJobSource
from rpcpay.gateway.observe import AccessLog, CallSink, ObservedHandler
from rpcpay.gateway.ops_pages import OpsPages
from rpcpay.gateway.payment import Hasher, PaymentService, PaymentSettings, is_loopback
from rpcpay.gateway.peers import peer_address
from rpcpay.gateway.preflight import check_http_url, prepare_data_dir
from rpcpay.gateway.reload import reload_gateway
from rpcpay.gateway.synthetic_jobs import SyntheticJobSource
from rpcpay.gateway.tls import server_tls_context
from rpcpay.gateway.tracking import Tracker
from rpcpay.gateway.upstream import HttpUpstream, Upstream
from rpcpay.ledger.shared_ledger import SharedLedger
from rpcpay.ledger.store_setup import check_ledger_settings, open_gateway_store
from rpcpay.ledger.transactional import TransactionalStore
from rpcpay.pow.verifier import ShareVerifier
from rpcpay.wire.address import decode_address

if TYPE_CHECKING:
    from rpcpay.chain.settlement import SettlementChain

log = logging.getLogger("rpcpay.gateway")

HOUSEKEEPING_INTERVAL_S = 60.0
LISTEN_BACKLOG = 1024
SHUTDOWN_DRAIN_S = 5.0
"""How long close() waits, after the grace, for cancelled handlers to finish refunding."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything ``rpcpay serve`` is told on its command line."""

    upstream: str = "http://127.0.0.1:18081"
    upstream_kind: Literal["auto", "monero", "jsonrpc"] = "auto"
    payment_address: str | None = None
    difficulty: int = 1000
    credits_per_hash: int = 100
    allow_free_loopback: bool = False
    bind_ip: str = "127.0.0.1"
    bind_port: int = 18089
    admin_bind_ip: str = "127.0.0.1"
    admin_bind_port: int | None = 18090  # None: no admin listener; 0: any free port
    admin_token: str | None = None
    data_dir: Path = Path("rpcpay-data")
    price_file: Path | None = None
    pow_mode: Literal["light", "fast", "auto"] = "auto"
    verify_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_body_bytes: int = 4 * 1024 * 1024
    ledger_sync: Literal["full", "normal"] = "normal"
    ledger_url: str | None = None  # None: SQLite in data_dir; else a shared PostgreSQL
    ledger_pool_size: int = 8  # PostgreSQL connections per process
    ledger_queue_timeout_s: float = 5.0  # a call waits this long for a connection, then busy
    ledger_max_waiters: int = 64  # calls waiting for a connection at once; more: busy at once
    info_cache_ms: int = 1000
    cache_margin: int = 20
    cache_mb: int = 256
    limits: AbuseLimits = field(default_factory=AbuseLimits)
    lottery: LotterySettings | None = None  # None: the lottery rail is off
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    upstream_timeout_s: float = 20.0  # a charged call's bound; refunded past it
    shutdown_grace_s: float = 10.0  # SIGTERM: in-flight calls get this long, then a refund
    monero_flags: tuple[str, ...] = ()  # Monero-only flags given: they mean monero mode
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    metrics: bool = True  # /metrics on the admin listener
    access_log: Path | None = None  # JSON lines per public call; Path("-") is stderr
    ssl_certificate: Path | None = None  # TLS on the public listener (with ssl_private_key)
    ssl_private_key: Path | None = None
    dashboard_sample_s: float = 10.0  # the dashboard's charts: one sample every so often
    worker: int | None = None  # a --workers N worker's index: handed connections, shared /metrics
    free_tier: FreeTierSettings = field(default_factory=FreeTierSettings)  # off by default
    upstream_concurrency: int = 0  # 0: unbounded (8 with the free tier on)
    upstream_queue: int = 1024
    bids: bool = False  # X-Rpc-Bid: paying clients offer more per call to go first


def check_config(config: GatewayConfig) -> None:
    """Refuse settings that cannot work or would be unsafe, with a clear message."""
    # Difficulty and credits are positive u64 values.
    if not 1 <= config.difficulty < 2**64:
        raise ConfigError("--rpc-payment-difficulty must be between 1 and 2^64-1")
    if not 1 <= config.credits_per_hash < 2**64:
        raise ConfigError("--rpc-payment-credits must be between 1 and 2^64-1")
    # Admin methods can mint credits: off loopback they need a token.
    if (
        config.admin_bind_port is not None
        and not is_loopback(config.admin_bind_ip)
        and not config.admin_token
    ):
        raise ConfigError("--admin-token is required when --admin-bind-ip is not loopback")
    check_ledger_settings(config.ledger_url, config.ledger_pool_size)
    # Two listeners cannot share a port.
    if config.admin_bind_port and config.admin_bind_port == config.bind_port:
        raise ConfigError("--admin-bind-port must differ from --rpc-bind-port")
    if config.payment_address is not None:
        try:
            decode_address(config.payment_address)
        except WireError as exc:
            raise ConfigError(f"--rpc-payment-address is not a Monero address: {exc}") from exc
    if config.lottery is not None:
        check_lottery(config.lottery)
    check_connection_limits(config.connections)
    # Upstream and shutdown bounds are positive seconds.
    if not 0 < config.upstream_timeout_s <= 3600 or not 0 < config.shutdown_grace_s <= 3600:
        raise ConfigError("--upstream-timeout and --shutdown-grace must be 0 to 3600 seconds")
    check_http_url("--upstream", config.upstream)
    build_capacity(
        config.free_tier, config.upstream_concurrency, config.upstream_queue, config.bids
    )


def check_lottery(settings: LotterySettings) -> None:
    """Refuse lottery settings that cannot work, naming the flag."""
    # A credit has a price of at least one wei.
    if settings.credit_price_wei < 1:
        raise ConfigError("--credit-price-wei must be at least 1")
    # Margins and depths are block counts, deposits wei.
    if settings.reveal_margin < 0 or settings.confirmations < 0:
        raise ConfigError("--reveal-margin and --confirmations must be 0 or more")
    if settings.min_stamper_deposit < 1:
        raise ConfigError("--min-stamper-deposit must be at least 1 wei")
    # The contract is a 20-byte address.
    if len(settings.contract) != 20:
        raise ConfigError("--lottery-contract must be a 20-byte address")
    # Pacing is a rate, a burst and a hold, none negative.
    if settings.rate_wei_per_minute < 0 or settings.burst_wei < 0 or settings.hold_s < 0:
        raise ConfigError("--credit-rate-wei, --credit-burst-wei and --cheque-hold-s must be >= 0")
    # Gossip peers are HTTP URLs.
    for peer in settings.gossip_peers:
        if not peer.startswith(("http://", "https://")):
            raise ConfigError(f"--gossip-peer must be an http(s) URL, not {peer!r}")


def load_secret(data_dir: Path) -> bytes:
    """The gateway's own secret for synthetic seeds, made once and kept owner-only."""
    path = data_dir / "synthetic-seed.key"
    if path.exists():
        secret = path.read_bytes()
        # The stored secret must be the 32 bytes we wrote.
        if len(secret) == 32:
            return secret
        raise ConfigError(f"{path} is corrupt; delete it to make a new one")
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


@dataclass
class RunningGateway:
    """A started gateway; ``close()`` stops it cleanly, flushing nothing (the ledger is
    always durable already)."""

    core: GatewayCore
    jobs: JobSource
    verifier: ShareVerifier
    ledger: SharedLedger
    runners: list[web.BaseRunner]
    housekeeping: asyncio.Task[None]
    public_port: int
    admin_port: int
    cheques: ChequeDesk | None = None
    metrics: GatewayMetrics | None = None
    access_log: AccessLog | None = None
    public: PublicHandler | None = None
    admin: AdminHandler | None = None
    observed: ObservedHandler | None = None
    history: History | None = None
    inflight: InFlight = field(default_factory=InFlight)

    def swap_core(self, core: GatewayCore) -> None:
        """Serve from ``core`` from now on (a SIGHUP reload's prices and proxies)."""
        self.core = core
        if self.public is not None:
            self.public.core = core  # its envelopes read prices and proxies from it
        if self.admin is not None:
            self.admin.core = core
            if self.admin.pages is not None:
                self.admin.pages.core = core
        if self.observed is not None:
            self.observed.proxies = core.proxies

    async def close(self) -> None:
        self.housekeeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.housekeeping
        if self.history is not None:
            await self.history.close()
        # Listeners stop together, so shutdown takes one grace period, not one per listener.
        await asyncio.gather(*(runner.cleanup() for runner in self.runners))
        # Handlers cancelled past the grace refund their charges as they unwind.
        await self.inflight.drain(SHUTDOWN_DRAIN_S)
        if self.cheques is not None:
            await self.cheques.close()
        await self.jobs.close()
        await self.core.upstream.close()
        self.verifier.close()
        await self.ledger.close()
        if self.access_log is not None:
            self.access_log.close()


def worker_metrics(config: GatewayConfig) -> GatewayMetrics:
    """A worker's metrics: its own series and its siblings', labelled by worker."""
    from rpcpay.gateway.worker_metrics import WorkerMetrics

    assert config.worker is not None
    return WorkerMetrics(config.worker, config.data_dir / "workers")


def open_access_log(path: Path | None) -> AccessLog | None:
    """The access log at ``path`` (``-``: stderr), or None; ConfigError if it cannot be
    opened."""
    if path is None:
        return None
    if str(path) == "-":
        return AccessLog(None, sys.stderr)
    try:
        return AccessLog(path)
    except OSError as exc:
        raise ConfigError(
            f"--access-log {path}: cannot open it ({exc.strerror}); choose a writable file"
        ) from None


def _server(
    handler_fn: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    max_body: int,
    limits: ConnectionLimits,
    address: Callable[[web.BaseRequest], str] = peer_address,
    inflight: InFlight | None = None,
) -> web.Server:
    """aiohttp's low-level server: every path goes to one handler, with no router or
    middleware in the hot path of a paid call, behind the connection bounds. ``address`` names
    the client whose refusals the tarpit counts (the real one, behind trusted proxies)."""
    loop = asyncio.get_running_loop()

    def make_request(
        message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=max_body
        )

    return GuardedServer(
        guard_requests(handler_fn, limits, address, inflight),
        limits=limits,
        request_factory=make_request,
        access_log=None,
    )


async def _housekeeping(payment: PaymentService, cache: ChainCache | None) -> None:
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
        try:
            forgotten = await payment.ledger.forget_idle()
            nonces = await payment.ledger.forget_nonces()
            sessions = await payment.sessions.forget_idle(time.time())
        except LedgerError as exc:
            log.warning("could not forget idle clients", extra={"error": str(exc)})
        else:
            if forgotten or nonces or sessions:
                log.info(
                    "forgot idle clients",
                    extra={"count": forgotten, "nonces": nonces, "sessions": sessions},
                )
        if cache is not None:
            stats = cache.stats
            log.info(
                "chain cache",
                extra={
                    "block_hits": stats.block_hits,
                    "hash_hits": stats.hash_hits,
                    "output_hits": stats.output_hits,
                    "clears": stats.clears,
                    "hashes": cache.hash_count(),
                    "block_bytes": cache.block_bytes(),
                },
            )


async def _listen(
    server: web.Server,
    host: str,
    port: int,
    grace_s: float,
    tls: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> tuple[web.BaseRunner, int]:
    runner = web.ServerRunner(server, shutdown_timeout=grace_s)
    await runner.setup()
    # A deep accept queue: under a connection flood, a good client's SYN is not dropped
    # (a dropped one waits a second for its retransmission).
    site = web.TCPSite(
        runner, host, port, backlog=LISTEN_BACKLOG, ssl_context=tls, reuse_port=reuse_port or None
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or choose "
            "another port or address"
        ) from exc
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


def open_lottery(
    settings: LotterySettings,
    data_dir: Path,
    store: TransactionalStore,
    ledger: SharedLedger,
    chain: SettlementChain | None,
) -> ChequeDesk:
    """The payee desk: the chain (``chain`` or ``--lottery-chain-url``), the key, and the
    gateway's own store and ledger (shared with every process on the same database)."""
    from rpcpay.errors import ChainError
    from rpcpay.lottery.eth import checksum_address
    from rpcpay.lottery.keyfile import load_key

    key_file = settings.key_file or data_dir / "lottery.key"
    key, made = load_key(key_file, create=True)
    if chain is None:
        from rpcpay.chain.jsonrpc import JsonRpcChain

        # Without a URL there is no chain a payer could share with us.
        if settings.chain_url is None:
            raise ConfigError("--lottery-chain-url is required with --lottery-contract")
        try:
            rpc_chain = JsonRpcChain(settings.chain_url)
            rpc_chain.attach(settings.contract)
        except ChainError as exc:
            raise ConfigError(f"lottery chain unusable: {exc}") from exc
        chain = rpc_chain
    # An embedded chain must carry the configured contract.
    elif chain.contract != settings.contract:
        raise ConfigError("--lottery-contract is not the chain's deployed contract")
    log.info(
        "lottery rail on",
        extra={
            "recipient": checksum_address(key.address),
            "new_key": made,
            "chain_id": chain.chain_id,
            "contract": checksum_address(settings.contract),
            "credit_price_wei": settings.credit_price_wei,
            "gossip_peers": len(settings.gossip_peers),
        },
    )
    on_credit = ledger.lottery_credit if isinstance(ledger, MeteredLedger) else None
    return ChequeDesk(chain, key, store, ledger, settings, on_credit=on_credit)


def preflight(config: GatewayConfig) -> tuple[ssl.SSLContext | None, PriceList]:
    """The start-up checks that need no upstream or ledger: the settings, the TLS files, the
    data directory and the price file; ConfigError (one line) if any is unusable."""
    check_config(config)
    tls = server_tls_context(config.ssl_certificate, config.ssl_private_key)
    prepare_data_dir(config.data_dir)
    prices = load_price_list(config.price_file) if config.price_file else PriceList(1, {})
    return tls, prices


async def start_gateway(
    config: GatewayConfig,
    *,
    upstream: Upstream | None = None,
    hasher: Hasher | None = None,
    lottery_chain: SettlementChain | None = None,
) -> RunningGateway:
    """Build every part and open the listeners. Port 0 picks a free port (tests).

    ``lottery_chain`` replaces ``--lottery-chain-url`` (the in-process chain in tests)."""
    tls, prices = preflight(config)
    # Whatever was opened is closed again if the start fails (no "Unclosed" dumps).
    async with contextlib.AsyncExitStack() as undo:
        running = await _assemble(config, prices, undo, upstream, hasher, lottery_chain, tls)
        undo.pop_all()
        return running
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the stack swallows nothing)


async def _assemble(
    config: GatewayConfig,
    prices: PriceList,
    undo: contextlib.AsyncExitStack,
    upstream: Upstream | None,
    hasher: Hasher | None,
    lottery_chain: SettlementChain | None,
    tls: ssl.SSLContext | None,
) -> RunningGateway:
    """start_gateway's parts, each registered in ``undo`` as soon as it is open."""
    metrics = None
    if config.metrics:
        metrics = GatewayMetrics() if config.worker is None else worker_metrics(config)
    upstream = upstream or HttpUpstream(config.upstream, timeout_s=config.upstream_timeout_s)
    undo.push_async_callback(upstream.close)
    if metrics is not None:
        upstream = MeteredUpstream(upstream, metrics)
    monero_flags = config.monero_flags
    if config.payment_address is not None and "--rpc-payment-address" not in monero_flags:
        monero_flags = ("--rpc-payment-address", *monero_flags)
    mode = await detect_mode(upstream, config.upstream_kind, monero_flags, url=config.upstream)
    jobs: JobSource
    if mode == "monero":
        # A monerod upstream pays real blocks to the operator, so it needs an address.
        if config.payment_address is None:
            raise ConfigError("--rpc-payment-address is required in front of monerod")
        jobs = MonerodJobSource(upstream, config.payment_address)
    else:
        jobs = SyntheticJobSource(load_secret(config.data_dir))
    # The dashboard lists the heights of blocks clients' shares found.
    blocks = BlockRecorder(jobs)
    jobs = blocks
    store = await open_gateway_store(config.ledger_url, config.data_dir, config.ledger_sync,
                                     config.ledger_pool_size, config.ledger_queue_timeout_s,
                                     config.ledger_max_waiters)  # fmt: skip
    ledger = MeteredLedger(store, metrics) if metrics is not None else SharedLedger(store)
    undo.push_async_callback(ledger.close)
    cheques = None
    if config.lottery is not None:
        cheques = open_lottery(config.lottery, config.data_dir, store, ledger, lottery_chain)
        undo.push_async_callback(cheques.close)
    verifier = ShareVerifier(threads=config.verify_threads, mode=config.pow_mode)
    undo.push_async_callback(verifier.aclose)
    hasher = hasher or verifier
    if metrics is not None:
        hasher = TimedHasher(hasher, metrics)
    try:
        await jobs.start()
    except UpstreamError as exc:
        raise ConfigError(
            f"upstream {config.upstream} is not usable: {exc}; start it or fix --upstream"
        ) from exc
    undo.push_async_callback(jobs.close)
    capacity = build_capacity(
        config.free_tier, config.upstream_concurrency, config.upstream_queue, config.bids
    )
    payment = (BiddingPayment if config.bids else PaymentService)(
        PaymentSettings(config.difficulty, config.credits_per_hash, config.allow_free_loopback),
        ledger,
        jobs,
        hasher,
        AbuseGuard(config.limits),
    )
    try:
        # Learn the current seed now, so its cache (and dataset) builds before any share.
        payment.warm_seed((await jobs.new_job(bytes(32), 0)).seed_hash)
    except UpstreamError as exc:
        log.warning("could not learn the current seed yet", extra={"error": str(exc)})
    chain_cache = (
        ChainCache(config.cache_margin, config.cache_mb * 1024 * 1024)
        if mode == "monero" and config.cache_mb > 0
        else None
    )
    core = GatewayCore(
        payment,
        upstream,
        Tracker(),
        mode,
        prices,
        InfoCache(config.info_cache_ms / 1000),
        chain_cache=chain_cache,
        cheques=cheques,
        proxies=config.proxies,
        upstream_timeout_s=config.upstream_timeout_s,
        capacity=capacity,
    )
    inflight = InFlight()
    # Issue 14's seams: only calls clients make wait for slots; the gateway's polls never do.
    public = PublicHandler(core, inflight, capacity.seams() if capacity is not None else None)
    sinks: list[CallSink] = []
    access_log = open_access_log(config.access_log)
    if access_log is not None:
        undo.callback(access_log.close)
        sinks.append(access_log)
    if metrics is not None:
        metrics.watch(core, lambda: verifier.stats().pending)
        if capacity is not None:
            metrics.registry.register(CapacityCollector(capacity))
        sinks.append(metrics)
    # A ledger that cannot answer means a clean "busy", never a 500 (ledger_outage).
    handle: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]] = answer_ledger_outages(
        public.handle, mode
    )
    observed = ObservedHandler(handle, config.proxies, sinks) if sinks else None
    if observed is not None:
        handle = observed.handle
    if capacity is not None:
        handle = capacity.wrap(handle)
    public_server = _server(
        handle, config.max_body_bytes, config.connections, public.peer, inflight
    )
    if config.worker is None:
        runner, public_port = await _listen(
            public_server, config.bind_ip, config.bind_port, config.shutdown_grace_s, tls
        )
    else:
        # A --workers worker listens on nothing public: its supervisor hands it connections.
        runner, public_port = (
            web.ServerRunner(public_server, shutdown_timeout=config.shutdown_grace_s),
            config.bind_port,
        )
        await runner.setup()
    undo.push_async_callback(runner.cleanup)
    runners = [runner]
    admin_port = 0
    admin = None
    history = None
    if config.admin_bind_port is not None:
        history = History(core, config.dashboard_sample_s)
        dashboard = DashboardPages(history, blocks)
        pages = OpsPages(core, metrics, store.probe, dashboard.routes())
        admin = AdminHandler(core, config.admin_token, pages)
        admin_runner, admin_port = await _listen(
            _server(answer_ledger_outages(admin.handle, "monero"), 64 * 1024, config.connections),
            config.admin_bind_ip,
            config.admin_bind_port,
            config.shutdown_grace_s,
            reuse_port=config.worker is not None,
        )
        undo.push_async_callback(admin_runner.cleanup)
        runners.append(admin_runner)
    if cheques is not None:
        cheques.start()
    if history is not None:
        history.start()
        undo.push_async_callback(history.close)
    housekeeping = asyncio.create_task(
        _housekeeping(payment, chain_cache), name="rpcpay-housekeeping"
    )
    log.info(
        "gateway listening",
        extra={
            "mode": mode,
            "public": f"{'https' if tls else 'http'}://{config.bind_ip}:{public_port}",
            "admin": f"{config.admin_bind_ip}:{admin_port}" if admin_port else "off",
            "difficulty": config.difficulty,
            "credits_per_share": config.credits_per_hash,
        },
    )
    return RunningGateway(
        core,
        jobs,
        verifier,
        ledger,
        runners,
        housekeeping,
        public_port,
        admin_port,
        cheques,
        metrics,
        access_log,
        public,
        admin,
        observed,
        history,
        inflight,
    )


async def serve_forever(
    config: GatewayConfig,
    reload: Callable[[], GatewayConfig] | None = None,
    started: Callable[[RunningGateway, asyncio.Event], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, then close cleanly. SIGHUP reads the settings again with
    ``reload`` and applies the reloadable ones (``rpcpay.gateway.reload``). ``started`` is
    called once listening, with the event that stops the gateway (a worker's supervisor)."""
    gateway = await start_gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    current = config

    def on_hangup() -> None:
        nonlocal current
        log.info("SIGHUP: reloading")
        try:
            new = reload() if reload is not None else current
        except (RpcPayError, OSError) as exc:
            log.error("reload refused; keeping the old settings", extra={"error": str(exc)})
            return
        except SystemExit:
            # argparse refused a flag value in the file (its message went to stderr).
            log.error("reload refused; keeping the old settings", extra={"error": "bad flag"})
            return
        if reload_gateway(gateway, current, new):
            current = new

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    if started is not None:
        started(gateway, stop)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": config.shutdown_grace_s})
    await gateway.close()
