"""The public listener of ``rpcpay serve --workers N``: the supervisor accepts, each worker
serves the connections it is handed.

Contract:

* The supervisor owns the one public listening socket (no SO_REUSEPORT, so no other process
  can join it). ``Balancer`` accepts new connections and passes each accepted socket to a
  worker over that worker's lifeline, a ``SOCK_SEQPACKET`` socket pair (one descriptor per
  message, SCM_RIGHTS), then closes its own copy: from then on the connection is the
  worker's alone, keep-alive and TLS included.
* The worker chosen is the ready one holding the fewest open connections, round-robin among
  ties. "Open" is what the worker last reported (``Adopter`` sends its count of adopted
  connections still open, and how many it has received, every ``REPORT_S`` when they
  change) plus what was handed to it since that report: a burst of new connections spreads
  evenly at once, and a close is seen within ``REPORT_S``.
* The accept loop never waits for a worker: the pair is non-blocking, and a worker whose
  pair is full (it has stopped reading) is skipped for the next one. A worker whose pair is
  broken, or whose process exited, gets nothing more at once; descriptors already in its
  pair die with it (their clients see the connection close, as when a single process dies).
  A restarted worker has a fresh pair and starts at zero.
* While no worker is ready (all starting or restarting), the supervisor stops accepting:
  new connections wait in the kernel's accept queue (``LISTEN_BACKLOG``) and are handed over
  as soon as a worker is ready, instead of being refused, because a restart takes a second
  or two and a client would rather wait that long than fail. If no worker comes back
  (``START_FAILURES``), the supervisor exits and the queued connections are reset.
* Stopping (SIGTERM) closes the listener first; connections already handed over are drained
  by their workers. A worker that is stopping closes a descriptor it receives late.
* Per-worker caps (``--max-connections``) stay the worker's: least-connections reaches a
  worker's cap only when every worker is at it, so the host holds N times the cap, filled
  evenly; the worker then evicts its longest-idle connection or refuses, as a single process.

Cost in the supervisor: one accept, one sendmsg and one close per new connection (measured
in docs/scaling.md); nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger("rpcpay.workers")

READY = b"r"
"""A worker's first message on its lifeline: it listens (can adopt connections)."""
HANDED = b"h"
"""The supervisor's message carrying one accepted socket."""
REPORT = b"o"
"""A worker's report: REPORT + received (u64) + open (u64), little-endian."""
_REPORT = struct.Struct("<QQ")
REPORT_S = 0.05
ACCEPT_BURST = 64
"""Connections accepted per wake-up of the accept loop, so a flood cannot starve the rest of
the supervisor (signals, restarts)."""
WARN_EVERY_S = 1.0
"""At most one warning a second about connections no worker could take (a flood)."""
ACCEPT_PAUSE_S = 0.1
"""After an accept error other than "nothing to accept" (out of descriptors), the loop rests
this long instead of spinning on a socket that stays readable."""


def lifeline_pair() -> tuple[socket.socket, socket.socket]:
    """A supervisor's end and a worker's end: message boundaries kept, EOF when either
    process is gone."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


@dataclass(eq=False)
class Link:
    """The supervisor's view of one worker process through its lifeline."""

    index: int
    channel: socket.socket
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    reported_received: int = 0
    reported_open: int = 0

    @property
    def load(self) -> int:
        """Connections the worker holds, as far as the supervisor knows."""
        return self.reported_open + self.sent - self.reported_received


@dataclass(eq=False)
class Balancer:
    """Accepts on ``listener`` and hands each connection to the least-loaded ready worker."""

    listener: socket.socket
    links: list[Link] = field(default_factory=list)
    cursor: int = 0
    accepting: bool = False
    closed: bool = False
    dropped: int = 0
    warned_at: float = -WARN_EVERY_S

    def attach(self, link: Link) -> None:
        """Listen to a newly started worker's lifeline (its READY and its reports)."""
        link.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(link.channel, self._on_message, link)

    def detach(self, link: Link) -> None:
        """Send nothing more to ``link``'s worker (it exited or its pair broke)."""
        if link.gone.is_set():
            return
        link.gone.set()
        asyncio.get_running_loop().remove_reader(link.channel)
        if link in self.links:
            self.links.remove(link)
        self._pause_if_idle()

    def close(self) -> None:
        """Stop accepting for good and close the listener (queued connections are reset)."""
        self.closed = True
        self._pause()
        self.listener.close()

    def _on_message(self, link: Link) -> None:
        while True:
            try:
                message = link.channel.recv(64)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self.detach(link)
                return
            if message == READY:
                link.ready.set()
                self.links.append(link)
                self._resume()
            elif message[:1] == REPORT and len(message) == 1 + _REPORT.size:
                link.reported_received, link.reported_open = _REPORT.unpack(message[1:])

    def _resume(self) -> None:
        if not self.accepting and not self.closed and self.links:
            self.listener.setblocking(False)
            asyncio.get_running_loop().add_reader(self.listener, self._on_accept)
            self.accepting = True

    def _pause(self) -> None:
        if self.accepting:
            asyncio.get_running_loop().remove_reader(self.listener)
            self.accepting = False

    def _pause_if_idle(self) -> None:
        # No worker ready: new connections wait in the accept queue for one.
        if not self.links:
            self._pause()

    def _on_accept(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                connection, _ = self.listener.accept()
            except BlockingIOError:
                return
            except ConnectionError:
                continue  # the client gave up before it was accepted
            except OSError as exc:
                log.warning("cannot accept a connection", extra={"error": exc.strerror})
                self._pause()
                asyncio.get_running_loop().call_later(ACCEPT_PAUSE_S, self._resume)
                return
            with connection:
                self.hand(connection)

    def hand(self, connection: socket.socket) -> bool:
        """Pass ``connection`` to the least-loaded ready worker; False (and the caller closes
        it) if no worker could take it."""
        for link in self.candidates():
            try:
                socket.send_fds(link.channel, [HANDED], [connection.fileno()])
            except BlockingIOError:
                continue  # its pair is full: it is not reading; try the next
            except ConnectionError:
                self.detach(link)  # its pair is broken: it has exited
                continue
            except OSError:
                continue  # e.g. too many descriptors in flight: the next may take it
            link.sent += 1
            self.cursor = link.index + 1
            return True
        self.dropped += 1
        now = time.monotonic()
        if now - self.warned_at >= WARN_EVERY_S:
            self.warned_at = now
            log.warning(
                "no worker could take a connection; closed it", extra={"count": self.dropped}
            )
        return False

    def candidates(self) -> list[Link]:
        """Ready workers, fewest connections first; among equals, the next in turn after the
        last one chosen."""
        turn = sorted(self.links, key=lambda link: (link.index - self.cursor) % 65536)
        return sorted(turn, key=lambda link: link.load)


@dataclass(eq=False)
class Adopter:
    """A worker's side of its lifeline: serves each handed connection on ``server`` (with
    ``tls`` if the gateway terminates TLS), reports its count, and sets ``stop`` when the
    supervisor is gone."""

    lifeline: socket.socket
    server: web.Server
    tls: ssl.SSLContext | None
    stop: asyncio.Event
    received: int = 0
    handshaking: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        """Tell the supervisor this worker is ready, then take connections."""
        self.lifeline.sendall(READY)
        self.lifeline.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.lifeline, self._on_readable)
        self._spawn(self._report_forever())

    @property
    def open(self) -> int:
        """Handed connections not yet closed (a TLS one counts from its handshake)."""
        return len(self.server.connections) + self.handshaking

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_readable(self) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.lifeline, 16, 1, socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message and not fds:
                # The pair closed: the supervisor has gone (even by SIGKILL).
                asyncio.get_running_loop().remove_reader(self.lifeline)
                log.warning("supervisor gone; stopping")
                self.stop.set()
                return
            for fd in fds:
                self.received += 1
                connection = socket.socket(fileno=fd)
                if self.stop.is_set():
                    connection.close()  # handed just as this worker began to stop
                    continue
                connection.setblocking(False)
                self._spawn(self._adopt(connection))

    async def _adopt(self, connection: socket.socket) -> None:
        self.handshaking += 1
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                self.server, connection, ssl=self.tls
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # A client that left, or failed its TLS handshake: its problem, not ours.
            log.debug("handed connection lost before serving", extra={"error": str(exc)})
            connection.close()
        finally:
            self.handshaking -= 1

    async def _report_forever(self) -> None:
        last = (-1, -1)
        while True:
            await asyncio.sleep(REPORT_S)
            now = (self.received, self.open)
            if now == last:
                continue
            # Full: the next round sends it. Broken: the supervisor is gone (_on_readable).
            with contextlib.suppress(OSError):
                self.lifeline.send(REPORT + _REPORT.pack(*now))
                last = now
