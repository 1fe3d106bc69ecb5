"""The paid-call pipeline: refunds on cancellation (shutdown, twice cancelled, a slow
refund), the forward's bound, and issue 14's two seams, behind real listeners on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rpcpay.gateway.app import PublicHandler
from rpcpay.gateway.payment import Charge
from rpcpay.gateway.pipeline import Admitted, CallClass, PaidCall, Seams, Shed
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, gateway_config, post, rpc

JSON = Any


class HungBackend:
    """A backend that accepts connections and reads requests but never answers (a real
    socket, like a frozen node)."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    async def __aenter__(self) -> HungBackend:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


async def fund(gateway: RunningGateway, key: ClientKey, amount: int) -> int:
    body = rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": amount})
    _, answer = await post(gateway.admin_port, "/json_rpc", body)
    return int(answer["result"]["credits"])


async def balance(gateway: RunningGateway, key: ClientKey) -> int:
    """The client's balance, asked of the admin listener (as an operator would)."""
    return await fund(gateway, key, 0)


async def until(check: Callable[[], Awaitable[bool]], limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def has_balance(gateway: RunningGateway, key: ClientKey, credits: int) -> bool:
    return await balance(gateway, key) == credits


async def handler_done(task: asyncio.Task[object]) -> bool:
    return task.done()


async def paid_call(port: int, key: ClientKey, method: str = "eth_blockNumber") -> JSON:
    """One paid call on the paywall; None if the gateway closed the connection."""
    with contextlib.suppress(aiohttp.ClientError):
        return (await post(port, "/", rpc(method, [], client=key.client_id())))[1]
    return None


@pytest.fixture
async def hung() -> AsyncIterator[HungBackend]:
    async with HungBackend() as backend:
        yield backend


async def test_a_call_cancelled_mid_forward_by_shutdown_is_refunded(
    hung: HungBackend, tmp_path: Path
) -> None:
    data_dir = tmp_path / "gw"
    gateway = await start_gateway(gateway_config(hung.url, data_dir, shutdown_grace_s=0.3))
    key = ClientKey()
    await fund(gateway, key, 100)
    calls = [asyncio.create_task(paid_call(gateway.public_port, key)) for _ in range(3)]
    await until(lambda: has_balance(gateway, key, 97))  # charged, all three waiting upstream
    await gateway.close()  # past the grace aiohttp cancels them; drain waits for refunds
    assert await asyncio.gather(*calls) == [None, None, None]
    store = SqliteLedgerStore(data_dir / "ledger.sqlite3", synchronous="normal")
    try:
        account = store.load(key.public)
    finally:
        store.close()
    assert account is not None and account.balance == 100, account
    assert account.credits_used == 0


async def test_a_refund_survives_a_second_cancellation(hung: HungBackend, tmp_path: Path) -> None:
    gateway = await start_gateway(gateway_config(hung.url, tmp_path / "gw"))
    payment = gateway.core.payment
    real_refund = payment.refund
    finished: list[int] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_refund(charge: Charge) -> int:
        # A refund that awaits before it writes, as an async store's does (held here until
        # the test lets it go).
        started.set()
        await release.wait()
        credits = await real_refund(charge)
        finished.append(credits)
        return credits

    payment.refund = slow_refund  # type: ignore[method-assign]
    try:
        key = ClientKey()
        await fund(gateway, key, 100)
        call = asyncio.create_task(paid_call(gateway.public_port, key))
        await until(lambda: has_balance(gateway, key, 99))
        handlers = [t for t in gateway.inflight.tasks if not t.done()]
        assert len(handlers) == 1
        handlers[0].cancel()
        await asyncio.wait_for(started.wait(), 10)  # the refund has started ...
        handlers[0].cancel()  # ... and the handler is cancelled again, before it ends
        await until(lambda: handler_done(handlers[0]))
        assert finished == []  # the handler is gone; its refund is not done yet
        release.set()
        await gateway.inflight.drain(5.0)  # what shutdown waits for
        assert finished == [100]
        assert await balance(gateway, key) == 100
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    finally:
        await gateway.close()


async def test_the_forward_is_bounded_by_the_upstream_timeout(
    hung: HungBackend, tmp_path: Path
) -> None:
    gateway = await start_gateway(gateway_config(hung.url, tmp_path / "gw", upstream_timeout_s=0.5))
    try:
        key = ClientKey()
        await fund(gateway, key, 100)
        started = time.monotonic()
        answer = await paid_call(gateway.public_port, key)
        assert time.monotonic() - started < 5
        assert answer["error"]["code"] == -32003, answer
        assert answer["credits"] == 100  # refunded before the client heard
        assert await balance(gateway, key) == 100
    finally:
        await gateway.close()


# -- issue 14's seams ----------------------------------------------------------------------


class AdmitEveryone:
    """A free tier that serves every refused call free (the seam's test, not issue 14's)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, str, str]] = []

    async def admit(self, call: PaidCall[Any], refused: Charge) -> Admitted | None:
        self.seen.append((call.rpc, call.upfront, call.peer, refused.status))
        return Admitted(Charge(True, "OK", 0, refused.top_hash))


@dataclass(frozen=True, slots=True)
class FromAllowance(Admitted):
    """An admission that took the price from an allowance, and hears when to give it back."""

    given_back: list[int] = field(default_factory=list)

    async def refund(self) -> int:
        self.given_back.append(self.charge.amount)
        return 0


class AdmitFromAllowance:
    def __init__(self) -> None:
        self.admitted: list[FromAllowance] = []

    async def admit(self, call: PaidCall[Any], refused: Charge) -> Admitted | None:
        assert call.upfront is not None
        admitted = FromAllowance(Charge(True, "OK", 0, refused.top_hash, None, call.upfront))
        self.admitted.append(admitted)
        return admitted


class RecordingSlots:
    """Slots that record who asked, and shed free calls when ``shed_free`` is set."""

    def __init__(self, shed_free: bool = False) -> None:
        self.entered: list[tuple[CallClass, str]] = []
        self.held = 0
        self.shed_free = shed_free

    def slot(self, klass: CallClass, address: str) -> AbstractAsyncContextManager[object]:
        return self._slot(klass, address)

    @asynccontextmanager
    async def _slot(self, klass: CallClass, address: str) -> AsyncIterator[object]:
        self.entered.append((klass, address))
        if self.shed_free and klass == "free":
            raise Shed
        self.held += 1
        try:
            yield None
        finally:
            self.held -= 1


@asynccontextmanager
async def listener(handler: PublicHandler) -> AsyncIterator[int]:
    """``handler`` on its own loopback port."""
    runner = web.ServerRunner(web.Server(handler.handle), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.fixture
async def priced_gateway(toy_backend: ToyBackend, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 3, "methods": {"net_version": 0}}))
    gateway = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", price_file=prices)
    )
    yield gateway
    await gateway.close()


async def test_the_default_seams_change_nothing(
    priced_gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    status, answer = await post(
        priced_gateway.public_port, "/", rpc("eth_blockNumber", [], client=key.client_id())
    )
    assert status == 402 and answer["error"]["data"]["price"] == 3
    assert toy_backend.requests == []


async def test_the_free_tier_seam_turns_a_refusal_into_a_free_call(
    priced_gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    free_tier, slots = AdmitEveryone(), RecordingSlots()
    handler = PublicHandler(priced_gateway.core, priced_gateway.inflight, Seams(free_tier, slots))
    key = ClientKey()
    async with listener(handler) as port:
        status, answer = await post(port, "/", rpc("eth_blockNumber", [], client=key.client_id()))
        assert status == 200 and answer["result"]["method"] == "eth_blockNumber", answer
        # Served free: nothing debited, so no balance to tell.
        assert "credits" not in answer
        assert free_tier.seen == [("eth_blockNumber", 3, "127.0.0.1", "PAYMENT REQUIRED")]
        assert slots.entered == [("free", "127.0.0.1")] and slots.held == 0
        # A funded client is charged as before and forwarded in the paid class.
        await fund(priced_gateway, key, 10)
        status, answer = await post(port, "/", rpc("eth_blockNumber", [], client=key.client_id()))
        assert status == 200 and answer["credits"] == 7
        assert slots.entered[-1] == ("paid", "127.0.0.1")
        # A free method is never charged, so it is in the free class.
        await post(port, "/", rpc("net_version", [], client=key.client_id()))
        assert slots.entered[-1] == ("free", "127.0.0.1")
    assert len(toy_backend.requests) == 3


async def test_a_shed_call_is_refunded_and_never_forwarded(
    priced_gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    slots = RecordingSlots(shed_free=True)
    handler = PublicHandler(
        priced_gateway.core, priced_gateway.inflight, Seams(AdmitEveryone(), slots)
    )
    key = ClientKey()
    async with listener(handler) as port:
        status, answer = await post(port, "/", rpc("eth_blockNumber", [], client=key.client_id()))
        assert status == 200 and answer["error"]["code"] == -32003, answer
        await fund(priced_gateway, key, 10)
        status, answer = await post(port, "/", rpc("eth_blockNumber", [], client=key.client_id()))
        assert answer["credits"] == 7  # paid calls still pass
    assert slots.entered == [("free", "127.0.0.1"), ("paid", "127.0.0.1")]
    assert len(toy_backend.requests) == 1


class ClosedSlots:
    """Slots that never open (a queue that never moves)."""

    def slot(self, klass: CallClass, address: str) -> AbstractAsyncContextManager[object]:
        return self._never()

    @asynccontextmanager
    async def _never(self) -> AsyncIterator[object]:
        await asyncio.Event().wait()
        yield None


async def test_waiting_for_a_slot_counts_against_the_upstream_timeout(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    gateway = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", upstream_timeout_s=0.5)
    )
    try:
        handler = PublicHandler(gateway.core, gateway.inflight, Seams(slots=ClosedSlots()))
        key = ClientKey()
        await fund(gateway, key, 100)
        async with listener(handler) as port:
            started = time.monotonic()
            _, answer = await post(port, "/", rpc("eth_blockNumber", [], client=key.client_id()))
            assert time.monotonic() - started < 5
        assert answer["error"]["code"] == -32003 and answer["credits"] == 100, answer
        assert toy_backend.requests == []
    finally:
        await gateway.close()


async def test_a_free_call_the_upstream_fails_is_given_back_to_its_admission(
    priced_gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    free_tier = AdmitFromAllowance()
    handler = PublicHandler(priced_gateway.core, priced_gateway.inflight, Seams(free_tier))
    toy_backend.failing = True
    async with listener(handler) as port:
        _, answer = await post(
            port, "/", rpc("eth_blockNumber", [], client=ClientKey().client_id())
        )
    assert answer["error"]["code"] == -32003, answer
    assert [a.given_back for a in free_tier.admitted] == [[3]]
