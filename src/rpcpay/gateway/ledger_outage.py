"""A ledger that cannot answer (PostgreSQL down or restarting, its pool exhausted, SQLite
locked past its timeout) gets the client monerod's "busy" answer, never an HTTP 500.

Contract: ``answer_ledger_outages(handler, mode)`` wraps a listener's handler; a
``LedgerError`` that escapes it (from a charge, a share, an account read, a refund) becomes,
in the request's own envelope:

* JSON-RPC (``/json_rpc``, and ``/`` in front of a JSON-RPC backend): an error object with
  the request's id, code -9 (monerod's ``CORE_RPC_ERROR_CODE_CORE_BUSY``; -32005 "limit
  exceeded" in front of a JSON-RPC backend), a batch getting one per request;
* monerod's JSON endpoints (``/get_info``, ...): ``{"status": "BUSY"}``, as monerod answers
  while it cannot serve;
* binary endpoints (``*.bin``): the same status in epee;

with HTTP 200 in front of monerod, as monerod itself answers (wallets retry a BUSY), and
HTTP 503 with ``Retry-After: 1`` in front of a JSON-RPC backend, where the paywall speaks
HTTP statuses (402) already. Nothing was forwarded before a charge that failed, so
no call is ever served free; a charge whose commit was lost with the connection may stand,
so the client may have paid for a call it was refused, never the other way round
(``pg_store``). Log lines are one per outage second at most, with how many were answered
busy, and never a traceback: an outage is an operational state, not a bug.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from rpcpay.errors import LedgerBusy, LedgerError
from rpcpay.gateway.jsoncodec import decode_json, encode_json
from rpcpay.wire import epee
from rpcpay.wire.rpc import ERROR_RATE_LIMITED, STATUS_BUSY

log = logging.getLogger("rpcpay.gateway")

ERROR_CORE_BUSY = -9
"""monerod's CORE_RPC_ERROR_CODE_CORE_BUSY."""
MESSAGE_DOWN = "Server busy: the ledger is unavailable; nothing was forwarded, retry shortly"
MESSAGE_FULL = "Server busy: every ledger connection is in use; nothing was forwarded, retry"
LOG_EVERY_S = 1.0
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class _OutageLog:
    """One log line per ``LOG_EVERY_S`` at most, counting the answers in between."""

    def __init__(self) -> None:
        self._last = 0.0
        self._unlogged = 0

    def note(self, exc: LedgerError) -> None:
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_S:
            log.warning(
                "ledger unavailable; answered busy",
                extra={
                    "error": " ".join(str(exc).split()),
                    "busy": isinstance(exc, LedgerBusy),
                    "answers": self._unlogged,
                },
            )
            self._last = now
            self._unlogged = 0


def answer_ledger_outages(handler: Handler, mode: str) -> Handler:
    """``handler``, with a ledger failure answered busy in the request's envelope."""
    outages = _OutageLog()
    code, status = (ERROR_RATE_LIMITED, 503) if mode == "jsonrpc" else (ERROR_CORE_BUSY, 200)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except LedgerError as exc:
            outages.note(exc)
            message = MESSAGE_FULL if isinstance(exc, LedgerBusy) else MESSAGE_DOWN
            return await busy_answer(request, code, status, message)

    return handle


async def busy_answer(
    request: web.BaseRequest, code: int, status: int, message: str
) -> web.Response:
    """The busy answer for ``request``'s envelope (see the module's contract)."""
    headers = {"Retry-After": "1"} if status == 503 else {}
    path = request.path
    if path.endswith(".bin"):
        body = epee.encode({"status": STATUS_BUSY.encode(), "untrusted": False})
        return web.Response(
            body=body, status=status, headers=headers, content_type="application/octet-stream"
        )
    if path in ("/", "/json_rpc"):
        document: object = None
        try:
            # The handler read the body already; aiohttp keeps it.
            document = decode_json(await request.read())
        except (ValueError, UnicodeDecodeError):
            document = None
        answer: object = _error(document, code, message)
        if isinstance(document, list):
            answer = [_error(item, code, message) for item in document if isinstance(item, dict)]
        return _json(answer, status, headers)
    return _json({"status": STATUS_BUSY, "untrusted": False}, status, headers)


def _error(document: object, code: int, message: str) -> dict[str, object]:
    request_id = document.get("id") if isinstance(document, dict) else None
    return {"error": {"code": code, "message": message}, "id": request_id, "jsonrpc": "2.0"}


def _json(document: object, status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(
        body=encode_json(document), status=status, headers=headers, content_type="application/json"
    )
