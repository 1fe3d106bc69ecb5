"""Faults with the real processes (issue 11): a gateway process killed with SIGKILL under
load, PostgreSQL restarted under load, the PostgreSQL pool exhausted. Paying clients mine
and make paid calls throughout (``tests.support.paying_load``); afterwards the ledger is
held to what they were told and to what reached the upstream."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from rpcpay.gateway.ledger_outage import MESSAGE_FULL
from rpcpay.testing import ToyBackend
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.miner import LightMiner
from tests.gateway.conftest import post, rpc
from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.paying_load import (
    JSON,
    PAID_METHOD,
    PayingLoad,
    check_ledger,
    forwarded_calls,
    ledger_accounts,
    wait_served,
)
from tests.support.postgres import PostgresCluster, start_postgres
from tests.support.workers import wait_for_log, worker_pids

pytestmark = pytest.mark.slow

CREDITS_PER_SHARE = 50  # start_gateway_process's --rpc-payment-credits


@pytest.fixture
async def backend() -> AsyncIterator[ToyBackend]:
    async with ToyBackend() as running:
        yield running


@pytest.fixture(scope="module")
def miner() -> Iterator[LightMiner]:
    """One light-mode miner for every client (its RandomX cache is 256 MiB)."""
    shared = LightMiner()
    yield shared
    shared.close()


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: some tests restart it."""
    with start_postgres() as cluster:
        yield cluster


async def start(backend: ToyBackend, data_dir: Path, *args: str) -> GatewayProcess:
    gateway = await asyncio.to_thread(
        start_gateway_process, backend.url, data_dir, "--upstream-kind", "jsonrpc", *args
    )
    if "--workers" in args:
        count = int(args[args.index("--workers") + 1])
        await asyncio.to_thread(wait_for_log, gateway, "worker listening", count)
    return gateway


def no_tracebacks(*gateways: GatewayProcess) -> None:
    for gateway in gateways:
        assert "Traceback" not in gateway.log_text(), gateway.log_text()[-3000:]


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_kill_9_of_a_worker_loses_nothing_and_the_other_serves_on(
    store: str,
    backend: ToyBackend,
    miner: LightMiner,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    ledger: tuple[str, ...] = ()
    if store == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        ledger = ("--ledger-url", cluster.create_database("faults"))
    gateway = await start(backend, tmp_path / "gw", "--workers", "2", *ledger)
    try:
        load = PayingLoad([gateway.port], miner)
        load.start()
        try:
            await wait_served(load, 0, 3, 30)
            victim = worker_pids(gateway.process.pid)[0]
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            # The other worker serves every client at once; the victim comes back.
            await wait_served(load, killed_at, 3, 30)
            await asyncio.to_thread(wait_for_log, gateway, "worker listening", 3)
            await wait_served(load, time.monotonic(), 2, 30)
        finally:
            await load.stop()
        accounts = await ledger_accounts(gateway.admin_port)
        check_ledger(
            load.records, accounts, forwarded_calls(backend, load.records), CREDITS_PER_SHARE
        )
    finally:
        gateway.stop()
    no_tracebacks(gateway)


@pytest.mark.postgres
async def test_kill_9_of_one_of_two_instances_on_postgresql(
    backend: ToyBackend, miner: LightMiner, postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("faults")
    first = await start(backend, tmp_path / "a", "--ledger-url", url)
    second = await start(backend, tmp_path / "b", "--ledger-url", url)
    try:
        load = PayingLoad([first.port, second.port], miner)
        load.start()
        try:
            await wait_served(load, 0, 3, 30)
            first.process.kill()
            killed_at = time.monotonic()
            # The survivor serves every client (calls sent to the dead one are refused).
            await wait_served(load, killed_at, 3, 30)
        finally:
            await load.stop()
        accounts = await ledger_accounts(second.admin_port)
        check_ledger(
            load.records, accounts, forwarded_calls(backend, load.records), CREDITS_PER_SHARE
        )
    finally:
        first.stop()
        second.stop()
    no_tracebacks(first, second)


@pytest.mark.postgres
async def test_postgresql_restart_under_load_gives_clean_errors_then_service(
    backend: ToyBackend, miner: LightMiner, postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("faults")
    gateway = await start(backend, tmp_path / "gw", "--workers", "2", "--ledger-url", url)
    try:
        load = PayingLoad([gateway.port], miner)
        load.start()
        try:
            await wait_served(load, 0, 3, 30)
            # Down for two seconds: every connection the pools hold is cut.
            await asyncio.to_thread(postgres.restart, 2.0)
            back_at = time.monotonic()
            # The gateway reconnects by itself: every client is served again.
            await wait_served(load, back_at, 3, 30)
        finally:
            await load.stop()
        accounts = await ledger_accounts(gateway.admin_port)
        forwarded = forwarded_calls(backend, load.records)
        check_ledger(load.records, accounts, forwarded, CREDITS_PER_SHARE)
        # The outage was felt, as clean errors (check_ledger: none broken).
        assert sum(len(r.clean) + r.lost for r in load.records) > 0
    finally:
        gateway.stop()
    no_tracebacks(gateway)


async def fund(admin_port: int, key: ClientKey, amount: int) -> None:
    body = rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": amount})
    status, answer = await post(admin_port, "/json_rpc", body)
    assert status == 200 and answer["result"]["credits"] == amount, answer


async def paid_call(port: int, key: ClientKey) -> tuple[float, int, JSON]:
    """(seconds taken, HTTP status, answer) of one paid call on a connection of its own."""
    started = time.monotonic()
    status, answer = await post(
        port, "/json_rpc", rpc(PAID_METHOD, {"tag": 0, "client": key.client_id()})
    )
    return time.monotonic() - started, status, answer


@pytest.mark.postgres
async def test_an_exhausted_pool_queues_to_the_bound_then_answers_busy(
    backend: ToyBackend, postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("faults")
    gateway = await start(
        backend, tmp_path / "gw", "--ledger-url", url, "--ledger-pool-size", "1",
        "--ledger-max-waiters", "2", "--ledger-queue-timeout", "1",
    )  # fmt: skip
    keys = [ClientKey() for _ in range(6)]
    for key in keys:
        await fund(gateway.admin_port, key, 10)
    # Another client of the database locks the accounts: the one pooled connection is
    # held by the first call, which waits for the lock.
    locker = await asyncpg.connect(url)
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        calls = [asyncio.create_task(paid_call(gateway.port, key)) for key in keys]
        await asyncio.sleep(3)
        done = [call.result() for call in calls if call.done()]
        # Two calls may queue for a second, the rest are refused at once, all cleanly.
        assert len(done) >= 4, done
        for _, status, answer in done:
            assert status == 503, answer
            assert answer["error"] == {"code": -32005, "message": MESSAGE_FULL}
        assert sorted(seconds for seconds, _, _ in done)[0] < 0.9
        assert backend.requests == []
        await lock.rollback()
    finally:
        await locker.close()
    # The call that held the connection goes through once the lock is gone; then all do.
    await asyncio.gather(*calls)
    for key in keys:
        _, status, answer = await paid_call(gateway.port, key)
        assert status == 200 and "result" in answer, answer
    accounts = await ledger_accounts(gateway.admin_port)
    charged = sum(accounts[key.public.hex()]["credits_used"] for key in keys)
    assert len(backend.requests) == charged  # no call free, none charged unforwarded
    gateway.stop()
    no_tracebacks(gateway)
