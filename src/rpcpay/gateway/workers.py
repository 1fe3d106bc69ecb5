"""``rpcpay serve --workers N``: N gateway processes on one port, one ledger, one supervisor.

Contract:

* The supervisor (the process the operator started) checks the settings once, before any
  worker starts, and refuses bad ones with the same one-line errors as a single process
  (``check_config``, the TLS files, the price file, the data directory, the ports). It makes
  the files every worker would otherwise race to create (the synthetic-job secret, the
  lottery key), opens the public listener (its own, without SO_REUSEPORT) and reserves the
  admin port (a socket bound with SO_REUSEPORT but never listening), so port 0 becomes one
  concrete port for all workers and no other program can take a port while a worker
  restarts.
* The supervisor accepts every public connection and hands it to the worker holding the
  fewest, round-robin among ties (``rpcpay.gateway.handoff``): a few long kept-alive
  connections spread evenly. SO_REUSEPORT's hash of the addresses did not: with 4
  connections on 2 workers it put 3 or 4 on one worker half the time (measured: one round
  7,505 paid calls/s on 1.77 cores, the next 4,499/s on 1.01). The supervisor's cost is
  about 40 us of CPU per new connection, nothing per request (docs/scaling.md).
* Each worker is ``rpcpay serve`` run again with the same arguments (so it reads the same
  config file) plus the resolved ports, and ``RPCPAY_WORKER`` in its environment. It binds
  the admin listener with SO_REUSEPORT (low traffic: the kernel's spreading is enough) and no
  public listener: it serves the connections it is handed, terminating TLS itself if the
  gateway does. Each has its own RandomX verifier (``--verify-threads`` defaults to the CPUs
  divided by N), upstream pool, caches and metrics; the ledger is shared (SQLite in WAL mode
  in ``--data-dir``, or PostgreSQL with ``--ledger-url``).
* A worker tells the supervisor it is ready over a socket pair, which also carries the
  handed connections and the worker's count of open ones, and is its lifeline: if the
  supervisor dies (even by SIGKILL), the worker sees the pair close and stops gracefully, so
  no orphan keeps serving. A dead worker is handed nothing more at once (its pair closes);
  a connection handed to it just before it died is lost with it, as the ones it held.
* SIGTERM and SIGINT close the public listener (new connections are refused) and are
  forwarded to every worker, which drains the calls on its connections within
  ``--shutdown-grace`` (refunding what it cuts off) as a single process does; the supervisor
  exits 0 once all have exited (SIGKILL to one still running a grace plus 15 s later).
  SIGHUP is forwarded: each worker reloads the config file by itself.
* A worker that dies unexpectedly is restarted after a backoff (0.25 s, doubling up to
  10 s, back to 0.25 s after 30 s of steady running), logged with its exit status. While no
  worker is ready, new connections wait in the listener's queue (not refused) and go to the
  first worker back. A worker
  that exits before it listens ``START_FAILURES`` times in a row means the settings cannot
  work (e.g. the upstream refuses): the supervisor stops the others and exits 1.

What is per worker, not shared: connection caps (``--max-connections`` and the per-address
cap bound one process's file descriptors, which is what they protect; the supervisor fills
the workers evenly, so one reaches its cap only when all do), abuse budgets (an address
spreads over the workers, so it gets up to N times each budget), the info and chain caches,
and the dashboard's charts of hash rate and credits (the worker a browser's
connection reached; its client table is the shared ledger's). A client's address is the
peer of its accepted socket, as in a single process (``--trusted-proxy`` applies the same),
and each worker writes its own access-log lines. The admin listener is bound by every worker
with SO_REUSEPORT: its JSON-RPC methods (``rpcpay payments``) read and write the shared
ledger, so any worker answers the same. /metrics answers with every worker's
series, labelled ``worker`` (``rpcpay.gateway.worker_metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from rpcpay.errors import ConfigError
from rpcpay.gateway.handoff import Adopter, Balancer, Link, lifeline_pair
from rpcpay.gateway.server import GatewayConfig, RunningGateway
from rpcpay.gateway.worker_metrics import WorkerMetrics, clear_snapshots

log = logging.getLogger("rpcpay.workers")

WORKER_ENV = "RPCPAY_WORKER"
"""Set in a worker's environment to ``INDEX:FD`` (its number and its lifeline's descriptor)."""

START_FAILURES = 5
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 10.0
STEADY_S = 30.0
STOP_MARGIN_S = 15.0


def run_workers(
    config: GatewayConfig,
    workers: int,
    argv: Sequence[str],
    reload: Callable[[], GatewayConfig],
) -> int:
    """``rpcpay serve --workers N``: the supervisor, or (with ``RPCPAY_WORKER``) a worker."""
    spec = os.environ.get(WORKER_ENV)
    if spec is not None:
        return run_worker(config, spec, reload)
    reservations = prepare(config)
    try:
        overrides = port_overrides(config, reservations)
        supervisor = Supervisor(
            workers, [*argv, *overrides], stop_timeout_s(config), Balancer(reservations[0])
        )
        return asyncio.run(supervisor.run())
    finally:
        for reservation in reservations:
            reservation.close()


def stop_timeout_s(config: GatewayConfig) -> float:
    """How long a worker may take to stop after SIGTERM before it is killed."""
    from rpcpay.gateway.server import SHUTDOWN_DRAIN_S

    return config.shutdown_grace_s + SHUTDOWN_DRAIN_S + STOP_MARGIN_S


def prepare(config: GatewayConfig) -> list[socket.socket]:
    """Check ``config`` as a single process would at start, make the shared files, and
    reserve the ports; ConfigError (one line) before any worker exists."""
    from rpcpay.gateway.server import load_secret, preflight

    preflight(config)
    # Made once here: workers creating it together would race (O_EXCL fails for all but one).
    load_secret(config.data_dir)
    if config.lottery is not None:
        from rpcpay.lottery.keyfile import load_key

        load_key(config.lottery.key_file or config.data_dir / "lottery.key", create=True)
    prepare_ledger(config)
    clear_snapshots(config.data_dir / "workers")
    reservations = [listen_public(config.bind_ip, config.bind_port)]
    if config.admin_bind_port is not None:
        try:
            reservations.append(reserve_port(config.admin_bind_ip, config.admin_bind_port))
        except ConfigError:
            reservations[0].close()
            raise
    return reservations


def prepare_ledger(config: GatewayConfig) -> None:
    """Open the ledger once (SQLite file or PostgreSQL), creating or migrating its schema, so
    an unusable one is a one-line error before any worker starts."""
    from rpcpay.ledger.store_setup import open_gateway_store

    async def open_and_close() -> None:
        store = await open_gateway_store(
            config.ledger_url, config.data_dir, config.ledger_sync, pool_size=1
        )
        await store.close()

    asyncio.run(open_and_close())


def listen_public(host: str, port: int) -> socket.socket:
    """The public listener, the supervisor's alone (no SO_REUSEPORT: nothing can join it)."""
    from rpcpay.gateway.server import LISTEN_BACKLOG

    sock = reserve_port(host, port, reuse_port=False)
    sock.listen(LISTEN_BACKLOG)
    return sock


def reserve_port(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    """A socket bound to ``host:port`` (with SO_REUSEPORT unless told otherwise) that does not
    listen yet: it holds the port (and turns port 0 into a concrete one) while the workers'
    admin listeners join it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or choose "
            "another port or address"
        ) from None
    return sock


def port_overrides(config: GatewayConfig, reservations: list[socket.socket]) -> list[str]:
    """Flags that give every worker the reserved ports (port 0 resolved)."""
    flags = ["--rpc-bind-port", str(reservations[0].getsockname()[1])]
    if config.admin_bind_port is not None:
        flags += ["--admin-bind-port", str(reservations[1].getsockname()[1])]
    return flags


@dataclass
class Supervisor:
    """Starts ``workers`` processes of ``rpcpay <argv>``, keeps them running, stops them."""

    workers: int
    argv: list[str]
    stop_timeout_s: float
    balancer: Balancer
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    failure: str | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.forward, signal.SIGHUP)
        log.info("supervisor starting workers", extra={"workers": self.workers})
        slots = [asyncio.create_task(self.keep(index)) for index in range(self.workers)]
        await asyncio.gather(*slots)
        self.balancer.close()
        if self.failure is not None:
            print(f"rpcpay serve: {self.failure}", file=sys.stderr)
            return 1
        log.info("all workers stopped")
        return 0

    def stop(self, sig: int) -> None:
        """Stop every worker gracefully (SIGTERM/SIGINT forwarded)."""
        if not self.stopping.is_set():
            log.info("stopping workers", extra={"signal": signal.Signals(sig).name})
        # New connections are refused before the workers drain the ones they hold.
        self.balancer.close()
        self.stopping.set()
        self.forward(sig)

    def forward(self, sig: int) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    def give_up(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            log.error("giving up", extra={"reason": reason})
        self.stop(signal.SIGTERM)

    async def keep(self, index: int) -> None:
        """Run worker ``index`` until stopped, restarting it when it dies."""
        backoff = BACKOFF_FIRST_S
        start_failures = 0
        while not self.stopping.is_set():
            began = time.monotonic()
            code, ready = await self.run_once(index)
            if self.stopping.is_set():
                return
            up_s = time.monotonic() - began
            if up_s >= STEADY_S:
                backoff = BACKOFF_FIRST_S
            if ready:
                start_failures = 0
                log.error(
                    "worker died; restarting",
                    extra={"worker": index, "status": describe(code), "up_s": round(up_s, 1),
                           "restart_in_s": backoff},
                )  # fmt: skip
            else:
                start_failures += 1
                log.error(
                    "worker failed at start-up",
                    extra={"worker": index, "status": describe(code), "attempt": start_failures},
                )
                if start_failures >= START_FAILURES:
                    self.give_up(
                        f"worker {index} failed at start-up {start_failures} times in a row "
                        f"(last: {describe(code)}); see its errors above"
                    )
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def run_once(self, index: int) -> tuple[int, bool]:
        """Start worker ``index`` and wait for it to exit: (exit status, whether it listened)."""
        mine, theirs = lifeline_pair()
        with mine:
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "rpcpay",
                    *self.argv,
                    env={**os.environ, WORKER_ENV: f"{index}:{theirs.fileno()}"},
                    pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                )
            finally:
                theirs.close()
            self.processes[index] = process
            log.info("worker started", extra={"worker": index, "pid": process.pid})
            if self.stopping.is_set():
                # A stop that came while it was being started.
                process.send_signal(signal.SIGTERM)
            link = Link(index, mine)
            self.balancer.attach(link)
            heard: asyncio.Future[object] = asyncio.ensure_future(link.ready.wait())
            exited: asyncio.Future[object] = asyncio.ensure_future(process.wait())
            await asyncio.wait({heard, exited}, return_when=asyncio.FIRST_COMPLETED)
            ready = link.ready.is_set()
            if ready:
                log.info("worker listening", extra={"worker": index, "pid": process.pid})
            heard.cancel()
            try:
                await self.wait_exit(process, exited)
            finally:
                # Dead (or never started): no connection is handed to it any more.
                self.balancer.detach(link)
            del self.processes[index]
            return process.returncode or 0, ready

    async def wait_exit(
        self, process: asyncio.subprocess.Process, exited: asyncio.Future[object]
    ) -> None:
        """Wait for ``process`` to exit; once stopping, SIGKILL it past the stop timeout."""
        while not exited.done():
            stopping: asyncio.Future[object] = asyncio.ensure_future(self.stopping.wait())
            pending: set[asyncio.Future[object]] = {exited, stopping}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if exited.done():
                break
            try:
                await asyncio.wait_for(asyncio.shield(exited), self.stop_timeout_s)
            except TimeoutError:
                log.error("worker did not stop in time; killing it", extra={"pid": process.pid})
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await exited
        await exited


def describe(code: int) -> str:
    """An exit status as words: ``exit 2`` or ``killed by SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit {code}"


class _WorkerTag(logging.Filter):
    """Adds ``worker`` to every log line of a worker."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def run_worker(config: GatewayConfig, spec: str, reload: Callable[[], GatewayConfig]) -> int:
    """One worker: the gateway serving the connections its supervisor hands it (and the
    SO_REUSEPORT admin listener), stopped if the supervisor goes."""
    from rpcpay.gateway.server import serve_forever
    from rpcpay.gateway.tls import server_tls_context

    try:
        index_text, fd_text = spec.split(":")
        index, fd = int(index_text), int(fd_text)
    except ValueError:
        raise ConfigError(
            f"{WORKER_ENV}={spec!r} is not INDEX:FD (set only by the supervisor)"
        ) from None
    for handler in logging.getLogger("rpcpay").handlers:
        handler.addFilter(_WorkerTag(index))
    lifeline = socket.socket(fileno=fd)
    config = dataclasses.replace(config, worker=index)

    def reload_worker() -> GatewayConfig:
        return dataclasses.replace(reload(), worker=index)

    tasks: set[asyncio.Task[None]] = set()

    # Read once, as a single process does (SIGHUP does not reload the TLS files).
    tls = server_tls_context(config.ssl_certificate, config.ssl_private_key)
    adopters: list[Adopter] = []

    def started(gateway: RunningGateway, stop: asyncio.Event) -> None:
        server = gateway.runners[0].server
        assert isinstance(server, web.Server)
        adopters.append(Adopter(lifeline, server, tls, stop))
        adopters[0].start()
        loop = asyncio.get_running_loop()
        if isinstance(gateway.metrics, WorkerMetrics):
            tasks.add(loop.create_task(gateway.metrics.publish_forever()))

    with lifeline:
        asyncio.run(serve_forever(config, reload_worker, started))
    return 0
