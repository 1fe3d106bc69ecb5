"""``rpcpay serve --workers N`` as real processes: one port served by the workers, a killed
worker restarted, signals forwarded, bad settings refused before any worker starts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from rpcpay.testing import ToyBackend
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import earn_share, post, rpc
from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.monerod import TEST_ADDRESS, free_port
from tests.support.postgres import start_postgres
from tests.support.workers import connections_by_pid, wait_for_log, wait_gone, worker_pids

pytestmark = pytest.mark.slow

FREE = ("--rpc-payment-allow-free-loopback", "--workers", "2", "--shutdown-grace", "5")


class SlowBackend(ToyBackend):
    """A ToyBackend that takes two seconds to answer the method ``slow``."""

    async def handle(self, request: web.Request) -> web.Response:
        document = await request.json()
        if isinstance(document, dict) and document.get("method") == "slow":
            await asyncio.sleep(2)
        return await super().handle(request)


@pytest.fixture
async def backend() -> AsyncIterator[SlowBackend]:
    async with SlowBackend() as running:
        yield running


async def start_workers(backend: ToyBackend, data_dir: Path, *args: str) -> GatewayProcess:
    """``rpcpay serve --workers 2`` with free loopback calls; returns once both listen."""
    gateway = await asyncio.to_thread(
        start_gateway_process, backend.url, data_dir, "--upstream-kind", "jsonrpc", *FREE, *args
    )
    await asyncio.to_thread(wait_for_log, gateway, "worker listening", 2)
    return gateway


async def free_call(session: aiohttp.ClientSession, port: int, method: str = "eth_x") -> object:
    async with session.post(f"http://127.0.0.1:{port}/", json=rpc(method, [])) as response:
        assert response.status == 200
        return (await response.json())["result"]


async def scraped_calls(admin_port: int, outcome: str | None = None) -> dict[str, float]:
    """Public calls counted by /metrics (of one outcome, or all), per worker (on a connection
    of its own)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(f"http://127.0.0.1:{admin_port}/metrics") as response,
    ):
        text = await response.text()
    calls: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rpcpay_calls_total" and outcome in (None, sample.labels["outcome"]):
                worker = sample.labels["worker"]
                calls[worker] = calls.get(worker, 0.0) + sample.value
    return calls


async def test_two_workers_share_the_public_port(backend: SlowBackend, tmp_path: Path) -> None:
    gateway = await start_workers(backend, tmp_path / "gw")
    try:
        pids = worker_pids(gateway.process.pid)
        assert len(pids) == 2
        # Sixteen clients, each on its own kept-alive connection: the supervisor hands each
        # to the worker holding fewer (test_workers_balance.py checks the split itself).
        sessions = [aiohttp.ClientSession() for _ in range(16)]
        try:
            results = await asyncio.gather(*(free_call(s, gateway.port) for s in sessions))
            held = await asyncio.to_thread(connections_by_pid, gateway.port, pids)
        finally:
            await asyncio.gather(*(s.close() for s in sessions))
        assert results == [{"echo": [], "method": "eth_x"}] * 16
        assert len(backend.requests) == 16
        assert sorted(held.values()) == [8, 8], held
        # The admin listener is shared (SO_REUSEPORT); either worker answers it.
        status, answer = await post(gateway.admin_port, "/json_rpc", rpc("rpc_access_data"))
        assert status == 200 and "result" in answer
        # Whichever worker a scrape reaches, it shows both workers' calls (a second late).
        await asyncio.sleep(1.5)
        for _ in range(4):
            calls = await scraped_calls(gateway.admin_port)
            assert set(calls) == {"0", "1"}
            assert sum(calls.values()) == 16 and all(calls.values()), calls
    finally:
        gateway.stop()


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_workers_share_one_ledger(
    store: str, backend: SlowBackend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ledger: tuple[str, ...] = ()
    if store == "postgres":
        cluster = await asyncio.to_thread(start_postgres)
        request.addfinalizer(cluster.stop)
        ledger = ("--ledger-url", cluster.create_database("workers"))
    gateway = await asyncio.to_thread(
        start_gateway_process, backend.url, tmp_path / "gw", "--upstream-kind", "jsonrpc",
        "--workers", "2", *ledger,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_log, gateway, "worker listening", 2)
        key = ClientKey()
        # Every request on a new connection: the job, the share and the calls go to
        # whichever worker the supervisor picks, and the balance follows them exactly.
        submitted = await earn_share(gateway.port, key)
        assert submitted["result"]["credits"] == 50
        told = []
        for n in range(20):
            status, answer = await post(
                gateway.port, "/json_rpc", rpc("eth_x", {"n": n, "client": key.client_id()})
            )
            assert status == 200, answer
            told.append(answer["credits"])
        assert told == list(range(49, 29, -1))
        assert len(backend.requests) == 20
        await asyncio.sleep(1.5)
        paid = await scraped_calls(gateway.admin_port, outcome="paid")
        assert sum(paid.values()) == 20 and len(paid) == 2 and all(paid.values()), paid
        # Either worker's admin listener shows the one ledger.
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "rpcpay", "payments", "--json",
             "--admin", f"http://127.0.0.1:{gateway.admin_port}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        entries = json.loads(out.stdout)["entries"]
        assert [(e["client"], e["balance"], e["credits_used"]) for e in entries] == [
            (key.public.hex(), 30, 20)
        ]
    finally:
        gateway.stop()


async def test_killed_worker_is_restarted_and_the_other_serves_meanwhile(
    backend: SlowBackend, tmp_path: Path
) -> None:
    gateway = await start_workers(backend, tmp_path / "gw")
    try:
        victim, survivor = worker_pids(gateway.process.pid)
        os.kill(victim, signal.SIGKILL)
        # Once it is gone (its socket pair closes), new connections go to the surviving
        # worker.
        assert await asyncio.to_thread(wait_gone, [victim], 10) == []
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with aiohttp.ClientSession() as fresh:
                    assert await free_call(fresh, gateway.port) == {"echo": [], "method": "eth_x"}
            died = await asyncio.to_thread(wait_for_log, gateway, "worker died; restarting")
            assert died[0]["status"] == "killed by SIGKILL"
            await asyncio.to_thread(wait_for_log, gateway, "worker listening", 3)
            pids = worker_pids(gateway.process.pid)
            assert survivor in pids and victim not in pids and len(pids) == 2
            assert await free_call(session, gateway.port) == {"echo": [], "method": "eth_x"}
    finally:
        gateway.stop()
    assert gateway.process.returncode == 0


async def test_sigterm_drains_every_worker_then_exits_cleanly(
    backend: SlowBackend, tmp_path: Path
) -> None:
    gateway = await start_workers(backend, tmp_path / "gw")
    pids = worker_pids(gateway.process.pid)
    try:
        # Slow calls in flight on both workers (eight connections: both get some).
        sessions = [aiohttp.ClientSession() for _ in range(8)]
        try:
            calls = [asyncio.create_task(free_call(s, gateway.port, "slow")) for s in sessions]
            while len(backend.requests) < 8:
                await asyncio.sleep(0.05)
            gateway.process.send_signal(signal.SIGTERM)
            # Every call already in flight is answered within the grace.
            results = await asyncio.gather(*calls)
        finally:
            await asyncio.gather(*(s.close() for s in sessions))
        assert results == [{"echo": [], "method": "slow"}] * 8
        code = await asyncio.to_thread(gateway.process.wait, 30)
        assert code == 0
        assert wait_gone(pids, 5) == []
        assert len(await asyncio.to_thread(wait_for_log, gateway, "shutting down", 2)) == 2
    finally:
        gateway.stop()


async def test_config_file_sets_workers_and_sighup_reloads_every_worker(
    backend: SlowBackend, tmp_path: Path
) -> None:
    config = tmp_path / "rpcpay.toml"
    config.write_text("workers = 2\nrpc-payment-allow-free-loopback = true\n")
    gateway = await asyncio.to_thread(
        start_gateway_process, backend.url, tmp_path / "gw", "--upstream-kind", "jsonrpc",
        "--config", str(config),
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_log, gateway, "worker listening", 2)
        assert (await post(gateway.port, "/", rpc("eth_x", [])))[0] == 200
        # Free loopback calls off in the file: after SIGHUP no worker serves them free.
        config.write_text("workers = 2\n")
        gateway.process.send_signal(signal.SIGHUP)
        reloads = await asyncio.to_thread(wait_for_log, gateway, "SIGHUP: reloading", 2)
        assert {entry["worker"] for entry in reloads} == {0, 1}
        await asyncio.sleep(0.5)
        statuses = [(await post(gateway.port, "/", rpc("eth_x", [])))[0] for _ in range(12)]
        assert statuses == [402] * 12
        assert len(backend.requests) == 1
    finally:
        gateway.stop()


async def test_workers_stop_when_their_supervisor_is_killed(
    backend: SlowBackend, tmp_path: Path
) -> None:
    gateway = await start_workers(backend, tmp_path / "gw")
    pids = worker_pids(gateway.process.pid)
    try:
        gateway.process.kill()
        gateway.process.wait()
        # No orphan keeps the port: each worker sees its lifeline close and stops.
        assert await asyncio.to_thread(wait_gone, pids, 20) == []
        assert len(await asyncio.to_thread(wait_for_log, gateway, "supervisor gone; stopping", 2))
    finally:
        gateway.stop()
        for pid in pids:
            # Only if the test failed: never leave a worker behind.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def run_serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpcpay", "serve", "--pow-mode", "light", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_settings_are_refused_before_any_worker_starts(tmp_path: Path) -> None:
    port = free_port()
    out = run_serve(
        "--workers", "2", "--rpc-bind-port", str(port), "--admin-bind-port", str(port),
        "--data-dir", str(tmp_path / "gw"),
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr == "rpcpay serve: --admin-bind-port must differ from --rpc-bind-port\n"


def test_a_port_in_use_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_serve(
            "--workers", "2", "--rpc-bind-port", str(port), "--admin-bind-port", "0",
            "--data-dir", str(tmp_path / "gw"),
        )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.startswith(f"rpcpay serve: cannot listen on 127.0.0.1:{port}: ")
    assert out.stderr.count("\n") == 1


def test_workers_that_keep_failing_at_start_up_end_the_supervisor(tmp_path: Path) -> None:
    # A JSON-RPC service told to be monerod: every worker refuses it when it starts.
    backend = subprocess.Popen(
        [sys.executable, "-m", "rpcpay", "demo", "--backend-only", str(backend_port := free_port())]
    )
    try:
        wait_listening(backend_port)
        started = time.monotonic()
        out = run_serve(
            "--workers", "2", "--upstream", f"http://127.0.0.1:{backend_port}",
            "--upstream-kind", "monero", "--rpc-payment-address", TEST_ADDRESS,
            "--rpc-bind-port", "0", "--admin-bind-port", "0", "--data-dir", str(tmp_path / "gw"),
        )  # fmt: skip
    finally:
        backend.terminate()
        backend.wait()
    assert out.returncode == 1
    assert "worker failed at start-up" in out.stderr
    assert "does not answer /get_height as monerod does" in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("rpcpay serve: worker ") and "failed at start-up 5 times" in last
    assert time.monotonic() - started < 45


def test_an_unusable_ledger_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    out = run_serve(
        "--workers", "2", "--rpc-bind-port", "0", "--admin-bind-port", "0",
        "--data-dir", str(tmp_path / "gw"), "--ledger-url",
        f"postgresql://rpcpay@127.0.0.1:{free_port()}/ledger",
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.startswith("rpcpay serve: ledger postgresql://rpcpay@127.0.0.1:")
    assert out.stderr.count("\n") == 1 and "worker" not in out.stderr
