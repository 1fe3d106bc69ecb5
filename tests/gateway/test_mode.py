"""No silent mode choice: bad --upstream URLs are one-line errors, Monero flags mean monero
mode, and an upstream that is not up yet is waited for (real ``rpcpay serve`` processes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from rpcpay.errors import ConfigError
from rpcpay.gateway.mode import mode_of_answer, told_mode
from rpcpay.gateway.preflight import check_http_url
from tests.gateway.conftest import ToyBackend, post, rpc
from tests.support.monerod import TEST_ADDRESS, MonerodProcess, free_port
from tests.support.processes import stop_process

RPCPAY = [sys.executable, "-m", "rpcpay"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:18081", "must start with http:// or https://"),
        ("ftp://x", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://127.0.0.1:99999", "is not a URL"),
    ],
)
def test_bad_upstream_is_a_one_line_error(url: str, message: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [*RPCPAY, "serve", "--upstream", url, "--data-dir", str(tmp_path), "--rpc-bind-port",
         "0", "--no-admin"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_monero_flags_decide_and_conflicts_are_refused() -> None:
    assert told_mode("auto", ()) is None
    assert told_mode("auto", ("--rpc-payment-address",)) == "monero"
    assert told_mode("auto", ("--cache-mb",)) == "monero"
    assert told_mode("jsonrpc", ()) == "jsonrpc"
    with pytest.raises(ConfigError, match="only apply in front of monerod"):
        told_mode("jsonrpc", ("--rpc-payment-address",))
    assert mode_of_answer(200, b'{"hash": "ab", "height": 3, "status": "OK"}') == "monero"
    assert mode_of_answer(404, b"Unknown endpoint") == "jsonrpc"
    assert mode_of_answer(200, b'{"jsonrpc": "2.0", "error": {}}') == "jsonrpc"
    check_http_url("--upstream", "https://host.example/v3/KEY")


def _serve(upstream: str, data_dir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*RPCPAY, "serve", "--upstream", upstream, "--rpc-bind-port", str(port), "--no-admin",
         "--data-dir", str(data_dir), "--pow-mode", "light", "--verify-threads", "1", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def _until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("gateway never listened")


@asynccontextmanager
async def late_listener(port: int, handler: web.StreamResponse | object) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_auto_waits_for_a_late_upstream_and_says_so(tmp_path: Path) -> None:
    upstream_port, port = free_port(), free_port()
    proc = _serve(f"http://127.0.0.1:{upstream_port}/", tmp_path, port)
    try:
        await asyncio.sleep(2.0)  # the backend comes up 2 s after the gateway
        backend = ToyBackend(port=upstream_port)
        async with late_listener(upstream_port, backend.handle):
            await _until_listening(port, proc, 30)
            status, answer = await post(port, "/", rpc("eth_blockNumber", []))
            # JSON-RPC mode: the standard paywall's refusal.
            assert status == 402 and answer["error"]["code"] == -32004
    finally:
        stop_process(proc, 10)
        stderr = proc.communicate()[1].decode()
    assert "upstream unreachable; waiting for it" in stderr
    assert '"mode": "jsonrpc"' in stderr and "Traceback" not in stderr


async def test_payment_address_means_monero_even_before_monerod_is_up(
    monerod: MonerodProcess, tmp_path: Path
) -> None:
    upstream_port, port = free_port(), free_port()
    proc = _serve(
        f"http://127.0.0.1:{upstream_port}", tmp_path, port, "--rpc-payment-address", TEST_ADDRESS
    )

    async def relay(request: web.Request) -> web.Response:
        # A loopback hop in front of the real monerod, opened late.
        async with (
            aiohttp.ClientSession() as http,
            http.post(monerod.url + request.path, data=await request.read()) as reply,
        ):
            return web.Response(body=await reply.read(), status=reply.status,
                                content_type="application/json")  # fmt: skip

    try:
        await asyncio.sleep(2.0)
        async with late_listener(upstream_port, relay):
            await _until_listening(port, proc, 60)
            status, answer = await post(port, "/get_height", {})
            assert status == 200 and answer["height"] == monerod.height()
    finally:
        stop_process(proc, 10)
        stderr = proc.communicate()[1].decode()
    assert '"mode": "monero"' in stderr and "Traceback" not in stderr


def test_jsonrpc_kind_with_a_payment_address_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [*RPCPAY, "serve", "--upstream", "http://127.0.0.1:9", "--upstream-kind", "jsonrpc",
         "--rpc-payment-address", TEST_ADDRESS, "--data-dir", str(tmp_path), "--no-admin"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "only apply in front of monerod" in done.stderr
