"""What each public call was and how it ended, for the access log and the metrics.

Contract: the HTTP layer says what a call is with ``note_call(method=..., outcome=...,
credits=...)``; ``ObservedHandler`` wraps the public handler, opens a ``CallNote`` for each
request (in a context variable, so the notes need no plumbing) and, once the answer is made,
hands (client address, method, outcome, credits, HTTP status, seconds) to the access log and
the metrics. Without either, the handler is not wrapped and ``note_call`` is one context
variable read (about 0.05 µs).

Outcomes: ``paid`` (charged and served), ``free`` (served unpaid: free method or free
loopback), ``unpaid`` (refused for payment: no or bad client id, too few credits),
``upstream_error`` (refunded), ``error`` (a JSON-RPC error: malformed, unknown method, rate
limited), ``ok`` (payment and lottery methods answered), ``http_error`` (any other 4xx/5xx).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple, Protocol

from aiohttp import web

from rpcpay.gateway.client_address import TrustedProxies, client_address

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class CallNote:
    """Filled in while one request is handled (mutable: it is the handler's scratch pad)."""

    method: str = ""
    outcome: str = ""
    credits: int = 0


_current: ContextVar[CallNote | None] = ContextVar("rpcpay_call_note", default=None)


def note_call(
    method: str | None = None, outcome: str | None = None, credits: int | None = None
) -> None:
    """Record what the current public call is; nothing when nobody observes."""
    note = _current.get()
    if note is None:
        return
    if method is not None:
        note.method = method
    if outcome is not None:
        note.outcome = outcome
    if credits is not None:
        note.credits = credits


class CallRecord(NamedTuple):
    """One finished public call (a NamedTuple: immutable, and made 4x faster than a frozen
    dataclass, once per call)."""

    ts: float
    address: str
    path: str
    method: str
    outcome: str
    credits: int
    status: int
    seconds: float


class CallSink(Protocol):
    """Something that takes finished calls (the access log, the metrics)."""

    def record(self, call: CallRecord) -> None: ...


class AccessLog:
    """JSON lines, one per public call, appended to a file (or written to stderr for ``-``).

    Fields: ts, addr (the real client address), path, method, outcome, credits, status, ms.
    Never a client id: an id is a bearer credential for its balance.

    Lines are buffered and written at least every ``FLUSH_S`` seconds (and on close and
    SIGHUP): a crash loses at most that last second of log, never a credit. Strings a client
    chose (path, method) are JSON-escaped and capped at 100 characters.
    """

    FLUSH_S = 1.0
    MAX_PENDING = 4096

    def __init__(self, path: Path | None, stream: IO[str] | None = None) -> None:
        self.path = path
        self._owned = stream is None
        self._out: IO[str] = stream if stream is not None else self._open(path)
        self._timer: asyncio.TimerHandle | None = None
        self._quoted: dict[str, str] = {}
        self._pending: list[CallRecord] = []

    @staticmethod
    def _open(path: Path | None) -> IO[str]:
        assert path is not None
        return path.open("a", encoding="utf-8", buffering=64 * 1024)

    def _quote(self, text: str) -> str:
        """``text`` as a JSON string (memoised: methods and paths repeat)."""
        quoted = self._quoted.get(text)
        if quoted is None:
            quoted = json.dumps(text[:100])
            if len(self._quoted) < 1024:
                self._quoted[text] = quoted
        return quoted

    def record(self, call: CallRecord) -> None:
        # Calls are formatted and written in batches: cheaper per line than one by one.
        self._pending.append(call)
        if len(self._pending) >= self.MAX_PENDING:
            self.flush()
        elif self._timer is None:
            # Idle or busy, a line is in the file within FLUSH_S of its call.
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write every pending line and flush the file."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        q = self._quote
        self._out.write(
            "".join(
                f'{{"ts":{c.ts:.3f},"addr":{q(c.address)},"path":{q(c.path)},'
                f'"method":{q(c.method)},"outcome":"{c.outcome}","credits":{c.credits},'
                f'"status":{c.status},"ms":{c.seconds * 1000:.3f}}}\n'
                for c in pending
            )
        )
        self._out.flush()

    def reopen(self) -> None:
        """Open the file again (after logrotate moved it; called on SIGHUP)."""
        self.flush()
        if self._owned and self.path is not None:
            self._out.close()
            self._out = self._open(self.path)

    def close(self) -> None:
        self.flush()
        if self._owned:
            self._out.close()


class ObservedHandler:
    """The public handler, with each call noted and handed to the sinks."""

    def __init__(self, inner: Handler, proxies: TrustedProxies, sinks: list[CallSink]) -> None:
        self._inner = inner
        self.proxies = proxies
        self._sinks = sinks
        # Only the access log writes the address; metrics never look at it.
        self._addresses = any(isinstance(sink, AccessLog) for sink in sinks)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        note = CallNote()
        token = _current.set(note)
        started = time.perf_counter()
        status = 500
        try:
            response = await self._inner(request)
            status = response.status
            return response
        finally:
            _current.reset(token)
            outcome = note.outcome or ("ok" if status < 400 else "http_error")
            call = CallRecord(
                time.time(),
                client_address(request, self.proxies) if self._addresses else "",
                request.path,
                note.method or request.path.lstrip("/"),
                outcome,
                note.credits,
                status,
                time.perf_counter() - started,
            )
            for sink in self._sinks:
                sink.record(call)


__all__ = [
    "AccessLog",
    "CallNote",
    "CallRecord",
    "CallSink",
    "ObservedHandler",
    "note_call",
]
