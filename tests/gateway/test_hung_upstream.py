"""A hung upstream stalls nothing: a real monerod, frozen with SIGSTOP (it still accepts TCP
connections, it just never answers), behind a real gateway."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from rpcpay.gateway.server import start_gateway
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import gateway_config, post, rpc
from tests.support.gateway_process import start_gateway_process
from tests.support.monerod import TEST_ADDRESS, MonerodProcess, start_monerod

pytestmark = [pytest.mark.monerod, pytest.mark.slow]


@pytest.fixture
def own_monerod(tmp_path: Path) -> Iterator[MonerodProcess]:
    """A monerod of this test's own: it gets frozen, which no other test could bear."""
    with start_monerod(tmp_path / "monerod") as mon:
        mon.generate_blocks(5, TEST_ADDRESS)
        try:
            yield mon
        finally:
            mon.process.send_signal(signal.SIGCONT)


async def fund(admin_port: int, key: ClientKey, amount: int) -> int:
    body = rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": amount})
    _, answer = await post(admin_port, "/json_rpc", body)
    return int(answer["result"]["credits"])


async def timed_post(port: int, body: object, limit: float) -> tuple[float, object]:
    """(seconds taken, decoded answer) of one POST, giving up after ``limit`` seconds."""
    started = time.monotonic()
    answer = await asyncio.wait_for(post(port, "/json_rpc", body), limit)
    return time.monotonic() - started, answer[1]


async def test_jobs_and_charged_calls_go_on_while_monerod_hangs(
    own_monerod: MonerodProcess, tmp_path: Path
) -> None:
    config = gateway_config(
        own_monerod.url,
        tmp_path / "gw",
        upstream_kind="monero",
        payment_address=TEST_ADDRESS,
        upstream_timeout_s=2.0,
    )
    gateway = await start_gateway(config)
    key = ClientKey()
    try:
        await fund(gateway.admin_port, key, 1_000)
        # One client gets a job, so a good template is cached; then the chain moves on, so
        # the next job needs a new template, and monerod freezes before anyone fetches it.
        seconds, answer = await timed_post(
            gateway.public_port, rpc("rpc_access_info", {"client": key.client_id()}), 10
        )
        assert "result" in answer, answer  # type: ignore[operator]
        old_top = (await gateway.jobs.top()).top_hash
        own_monerod.generate_blocks(1, TEST_ADDRESS)
        deadline = time.monotonic() + 10
        while (await gateway.jobs.top()).top_hash == old_top and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await gateway.jobs.top()).top_hash != old_top
        own_monerod.process.send_signal(signal.SIGSTOP)
        # Fresh clients get jobs from the last good template, in about a second, together.
        answers = await asyncio.gather(
            *[
                timed_post(
                    gateway.public_port,
                    rpc("rpc_access_info", {"client": ClientKey().client_id()}),
                    10,
                )
                for _ in range(10)
            ]
        )
        for seconds, answer in answers:
            assert "result" in answer, answer  # type: ignore[operator]
            assert seconds < 4, seconds
        # A charged call ends at --upstream-timeout, refunded.
        body = rpc("get_block_header_by_height", {"client": key.client_id(), "height": 1})
        seconds, answer = await timed_post(gateway.public_port, body, 15)
        assert answer["error"]["code"] == -32003, answer  # type: ignore[index]
        assert 1.5 < seconds < 5, seconds
        assert await fund(gateway.admin_port, key, 0) == 1_000
        # Jobs keep coming while it hangs; the top poll does not pile up either.
        seconds, answer = await timed_post(
            gateway.public_port, rpc("rpc_access_info", {"client": ClientKey().client_id()}), 10
        )
        assert "result" in answer and seconds < 4, (seconds, answer)  # type: ignore[operator]
    finally:
        own_monerod.process.send_signal(signal.SIGCONT)
        await gateway.close()


async def test_sigterm_ends_within_the_grace_and_refunds_calls_in_flight(
    own_monerod: MonerodProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "gw"
    gateway = start_gateway_process(
        own_monerod.url,
        data_dir,
        "--upstream-kind",
        "monero",
        "--rpc-payment-address",
        TEST_ADDRESS,
        "--upstream-timeout",
        "50",
        "--shutdown-grace",
        "2",
    )
    key = ClientKey()
    try:
        await fund(gateway.admin_port, key, 1_000)
        own_monerod.process.send_signal(signal.SIGSTOP)

        async def charged_call(height: int) -> None:
            body = rpc("get_block_header_by_height", {"client": key.client_id(), "height": height})
            # The gateway may close the connection while shutting down.
            with contextlib.suppress(aiohttp.ClientError):
                await post(gateway.port, "/json_rpc", body)

        calls = [asyncio.create_task(charged_call(h)) for h in range(5)]
        await asyncio.sleep(1.0)  # all five are charged and waiting on the frozen monerod
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        while gateway.process.poll() is None and time.monotonic() - started < 30:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        await asyncio.gather(*calls)
        assert gateway.process.returncode == 0, gateway.log_text()[-2000:]
        # The grace (2 s), the cancelled calls' refunds, and closing: well under 10 s.
        assert took < 8, took
    finally:
        own_monerod.process.send_signal(signal.SIGCONT)
        gateway.stop()
    # Every call still in flight was refunded, durably.
    store = SqliteLedgerStore(data_dir / "ledger.sqlite3", synchronous="normal")
    try:
        account = store.load(key.public)
    finally:
        store.close()
    assert account is not None and account.balance == 1_000, account
    assert account.credits_used == 0
