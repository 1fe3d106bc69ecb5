"""Bounds on connections, so slow or idle peers cannot hold the gateway's sockets.

aiohttp's low-level server closes a connection that sends no complete request within its
keep-alive timeout, but by default that is an hour, a request body may trickle in forever,
and nothing caps how many connections are open. Here (contract):

* header-read timeout (``header_timeout_s``): once the first byte of a request arrives, its
  whole header must follow within this time, or the connection is closed (slowloris);
* idle timeout (``idle_timeout_s``, aiohttp's keep-alive timeout): a connection that starts
  no request this long after its last answer is closed; one that never sends a byte, after
  a random 50-100% of it (so sockets opened together are not closed together);
* body-read timeout (``body_timeout_s``): the body must arrive within this time of the
  header, or the client gets 408 and the connection is closed (after ``LINGER_S``);
* at most ``max_per_address`` connections from one address (``peers.transport_address``; the
  TCP peer, so a reverse proxy in front needs a high enough value) and ``max_connections``
  in total. A connection past the per-address cap is answered 503 and closed at once; past
  the total cap the longest-idle connection (no request in progress) is closed to make
  room, and only if every connection is busy is the new one refused with 503. An address
  holding idle sockets therefore cannot lock out anyone else. The caps, not the idle
  timeout, keep file descriptors bounded, so the idle timeout is long (60 s, near nginx's
  75 s): a peer that reopens whatever is closed makes the gateway pay for every close and
  accept (measured: 2,000 idle sockets churning every ~11 s raised good clients' p99 6x;
  held for 60 s they cost nothing measurable);
* refusals tarpitted (``Tarpit``): past 100 refused requests (then 10/s) from one host, each
  further refusal is answered 50 ms late, so a junk flood gets at most about 20 requests a
  second per connection; answers that serve a client are never delayed.

The open-file limit is raised to fit ``max_connections`` when the hard limit allows, and the
cap is lowered (with a warning) when it does not: running out of descriptors would stop
accept() for everyone, the upstream and the ledger included.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from rpcpay.errors import ConfigError
from rpcpay.gateway.limits import BucketTable
from rpcpay.gateway.peers import host_key, peer_address, transport_address

log = logging.getLogger("rpcpay.connections")

FD_RESERVE = 128
"""Descriptors kept for everything but client connections (ledger, upstream pool, logs)."""

LINGER_S = 1.0
"""After an early answer (408, 413), how long the unread rest of a body is read and dropped
before closing, so a client still sending can read the answer (aiohttp's default is 10 s,
which a trickling body would use to hold the connection)."""

_BUSY_BODY = b'{"status": "Too many connections; try again later"}'
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long a peer may take and how many connections it may hold."""

    header_timeout_s: float = 5.0
    idle_timeout_s: float = 60.0
    body_timeout_s: float = 10.0
    max_connections: int = 4096
    max_per_address: int = 64
    refusal_burst: float = 100.0
    refusals_per_second: float = 10.0
    refusal_delay_s: float = 0.05  # 0: refusals are never delayed


def check_connection_limits(limits: ConnectionLimits) -> None:
    """Refuse limits that cannot work, naming the flag."""
    # Timeouts are positive seconds.
    for flag, value in (
        ("--header-timeout", limits.header_timeout_s),
        ("--idle-timeout", limits.idle_timeout_s),
        ("--body-timeout", limits.body_timeout_s),
    ):
        if not 0 < value <= 3600:
            raise ConfigError(f"{flag} must be more than 0 and at most 3600 seconds")
    # The refusal delay is 0 (off) to 10 seconds, its budget positive.
    if not 0 <= limits.refusal_delay_s <= 10:
        raise ConfigError("--refusal-delay must be 0 to 10 seconds")
    if limits.refusal_burst <= 0 or limits.refusals_per_second <= 0:
        raise ConfigError("the refusal budget must be positive")
    # Caps allow at least one connection, and the per-address cap fits in the total.
    if not 1 <= limits.max_per_address <= limits.max_connections:
        raise ConfigError("--max-connections-per-address must be 1 to --max-connections")


def fit_fd_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards ``wanted`` connections plus a reserve; the
    number of connections that fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit", extra={"error": str(exc)})
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    fitted = max(1, soft - FD_RESERVE)
    log.warning(
        "open-file limit too low; fewer connections allowed",
        extra={"wanted": wanted, "allowed": fitted, "limit": soft},
    )
    return fitted


class GuardedHandler(RequestHandler):
    """One connection: adds the header-read timer and tells the server when it is busy."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._header_timer: asyncio.TimerHandle | None = None
        self._silent_timer: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A connection that never sends a byte is idle from the start (aiohttp arms its own
        # keep-alive timer at connection start only in recent versions). Its deadline is
        # spread over the second half of the idle timeout: a crowd of sockets opened together
        # is then not closed together, and not reopened together either (measured: closing
        # and reopening 2,000 at once stalled the loop for about 0.3 s every cycle).
        self._silent_timer = self._loop.call_later(
            self._guard.limits.idle_timeout_s * random.uniform(0.5, 1.0), self._never_spoke
        )

    def _never_spoke(self) -> None:
        self._silent_timer = None
        if self._request_count == 0 and not self.busy:
            self.force_close()

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        # A whole header arrived: the request's handler takes over (body timeout).
        if self._request_count > parsed:
            self._stop_header_timer()
        # The first bytes of a header: the rest must follow within the header timeout.
        elif not self.busy and self._header_timer is None and self.transport is not None:
            self._header_timer = self._loop.call_later(
                self._guard.limits.header_timeout_s, self._header_too_slow
            )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_too_slow(self) -> None:
        self._header_timer = None
        log.debug("closed a connection that sent its header too slowly")
        self.force_close()

    def request_started(self) -> None:
        self._stop_header_timer()
        self.busy = True
        self._guard.mark_busy(self)

    def request_done(self) -> None:
        self.busy = False
        self._guard.mark_idle(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        if self._silent_timer is not None:
            self._silent_timer.cancel()
            self._silent_timer = None
        super().connection_lost(exc)


class GuardedServer(web.Server):
    """aiohttp's low-level server with the caps of ``ConnectionLimits``."""

    def __init__(self, handler: Handler, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(
            handler,
            keepalive_timeout=limits.idle_timeout_s,
            lingering_time=LINGER_S,
            **kwargs,
        )
        self.limits = limits
        self.max_connections = fit_fd_limit(limits.max_connections)
        self._address_of: dict[RequestHandler, str] = {}
        self._per_address: Counter[str] = Counter()
        # Connections with no request in progress, longest idle first.
        self._idle: OrderedDict[RequestHandler, None] = OrderedDict()
        self.refused = 0
        self.evicted = 0

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    @property
    def open_connections(self) -> int:
        """Connections counted against the caps now."""
        return len(self._address_of)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        address = transport_address(transport.get_extra_info("peername"))
        # One address holds at most max_per_address connections.
        if self._per_address[address] >= self.limits.max_per_address:
            self._refuse(transport)
            return
        # At the total cap the longest-idle connection makes room; if none is idle, refuse.
        if len(self._address_of) >= self.max_connections:
            if not self._idle:
                self._refuse(transport)
                return
            oldest, _ = self._idle.popitem(last=False)
            self.evicted += 1
            oldest.force_close()
            self._forget(oldest)
        self._address_of[handler] = address
        self._per_address[address] += 1
        self._idle[handler] = None

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._forget(handler)

    def _forget(self, handler: RequestHandler) -> None:
        address = self._address_of.pop(handler, None)
        self._idle.pop(handler, None)
        if address is not None:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    def _refuse(self, transport: asyncio.Transport) -> None:
        self.refused += 1
        transport.write(REFUSAL)
        transport.close()

    def mark_busy(self, handler: RequestHandler) -> None:
        self._idle.pop(handler, None)

    def mark_idle(self, handler: RequestHandler) -> None:
        if handler in self._address_of:
            self._idle[handler] = None
            self._idle.move_to_end(handler)


def is_refusal(response: web.StreamResponse) -> bool:
    """Whether an answer refused the request: an HTTP error, a JSON-RPC error the gateway
    wrote (its ``error`` key comes first), or a short answer saying payment is required or
    the client id does not verify."""
    if response.status >= 400:
        return True
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return False
    return body.startswith(b'{"error": ') or (
        len(body) < 400 and (b"PAYMENT REQUIRED" in body or b"does not verify" in body)
    )


class Tarpit:
    """Slows down the refusals of an address that keeps sending refused requests.

    A junk flood costs the gateway one event-loop turn per request however cheap the
    refusal, and that turn delays everyone (issue 10: good clients' p99 under a flood). Past
    ``burst`` refusals (refilling at ``per_second``), each further refusal to the same host
    is answered ``delay_s`` late, so one connection can make at most 1/``delay_s`` refused
    requests a second; answers that are not refusals are never delayed.
    """

    def __init__(
        self,
        burst: float,
        per_second: float,
        delay_s: float,
        address: Callable[[web.BaseRequest], str] = peer_address,
    ) -> None:
        self._budget = BucketTable(per_second, burst)
        self.delay_s = delay_s
        self._address = address

    async def after(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Wait before sending ``response`` if it refuses and its host is over budget."""
        # Answers that serve the client, and refusals within the host's budget, go at once.
        if self.delay_s <= 0 or not is_refusal(response):
            return
        if self._budget.spend(host_key(self._address(request)), asyncio.get_running_loop().time()):
            return
        await asyncio.sleep(self.delay_s)


class InFlight:
    """The tasks of the requests being handled now.

    aiohttp cancels a handler still running when the shutdown grace ends, but does not wait
    for it; a cancelled paid call refunds its charge on the way out, so the gateway must let
    those handlers finish before it closes the ledger (``drain``)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for every task still running to end, including those
        added while waiting (a cancelled call's refund task, ``rpcpay.gateway.pipeline``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            pending = [t for t in self.tasks if not t.done()]
            left = deadline - loop.time()
            if not pending or left <= 0:
                return
            await asyncio.wait(pending, timeout=left)


def guard_requests(
    handler: Handler,
    limits: ConnectionLimits,
    address: Callable[[web.BaseRequest], str] = peer_address,
    inflight: InFlight | None = None,
) -> Handler:
    """``handler`` behind the body-read timeout and the refusal tarpit (keyed by ``address``),
    telling its connection when it is busy, with its task in ``inflight`` while it runs."""
    tarpit = Tarpit(
        limits.refusal_burst, limits.refusals_per_second, limits.refusal_delay_s, address
    )

    async def guarded(request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        if isinstance(connection, GuardedHandler):
            connection.request_started()
        task = asyncio.current_task()
        if inflight is not None and task is not None:
            inflight.tasks.add(task)
        try:
            try:
                # The whole body, within the body timeout (read() keeps it for the handler).
                # A body already received in full needs no timer (nor wait_for's task): the
                # common case, measured at 10-15 us a call.
                if request.content.is_eof():
                    await request.read()
                else:
                    await asyncio.wait_for(request.read(), limits.body_timeout_s)
            except TimeoutError:
                too_slow = web.json_response(
                    {"status": "Request body too slow; connection closed"}, status=408
                )
                too_slow.force_close()
                return too_slow
            response = await handler(request)
            await tarpit.after(request, response)
            return response
        finally:
            if inflight is not None and task is not None:
                inflight.tasks.discard(task)
            if isinstance(connection, GuardedHandler):
                connection.request_done()

    return guarded
