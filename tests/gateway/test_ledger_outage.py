"""A ledger failure escaping a handler is answered busy in the request's own envelope."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from rpcpay.errors import LedgerBusy, LedgerError
from rpcpay.gateway.ledger_outage import MESSAGE_DOWN, MESSAGE_FULL, answer_ledger_outages
from rpcpay.wire import epee

Serve = Callable[[str, LedgerError], Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.ServerRunner] = []

    async def start(mode: str, error: LedgerError) -> int:
        async def failing(request: web.BaseRequest) -> web.StreamResponse:
            await request.read()  # as the real handlers do, before they charge
            raise error

        runner = web.ServerRunner(web.Server(answer_ledger_outages(failing, mode)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def call(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", data=body) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_monero_envelopes_get_monerods_busy(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    port = await serve("monero", LedgerError("ledger database unavailable: ConnectionRefused"))
    status, _, body = await call(port, "/json_rpc", b'{"jsonrpc":"2.0","id":5,"method":"get_info"}')
    assert status == 200
    assert json.loads(body) == {
        "error": {"code": -9, "message": MESSAGE_DOWN},
        "id": 5,
        "jsonrpc": "2.0",
    }
    status, _, body = await call(port, "/get_info", b"{}")
    assert (status, json.loads(body)) == (200, {"status": "BUSY", "untrusted": False})
    status, _, body = await call(port, "/get_blocks.bin", b"")
    assert status == 200 and epee.decode(body)["status"] == b"BUSY"
    # Logged once for the burst, as a warning without a traceback.
    lines = [r for r in caplog.records if r.name == "rpcpay.gateway"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and not lines[0].exc_info


async def test_json_rpc_backends_get_503_with_retry_after(serve: Serve) -> None:
    port = await serve("jsonrpc", LedgerBusy("ledger busy: 64 calls already wait"))
    batch = b'[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":2,"method":"b"}]'
    status, headers, body = await call(port, "/", batch)
    assert status == 503 and headers["Retry-After"] == "1"
    error = {"code": -32005, "message": MESSAGE_FULL}
    assert json.loads(body) == [
        {"error": error, "id": 1, "jsonrpc": "2.0"},
        {"error": error, "id": 2, "jsonrpc": "2.0"},
    ]
    status, _, body = await call(port, "/", b"not json")
    assert (status, json.loads(body)) == (503, {"error": error, "id": None, "jsonrpc": "2.0"})
