"""The paying client against both servers: rpcpay's gateway and monerod 0.18 with payment on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.client import (
    NodeError,
    PayingClient,
    PaymentRequired,
    ShareRefused,
    SyncPayingClient,
    UpstreamDown,
)
from rpcpay.wallet.funding import MiningFunder
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, gateway_config, post, rpc, toy_backend
from tests.support.monerod import MonerodProcess

__all__ = ["toy_backend"]


@dataclass
class Server:
    """A paying node under test: where clients go, where the operator funds keys."""

    name: str
    url: str
    admin_port: int
    method: str  # a charged JSON-RPC method costing 1 credit
    params: dict[str, object]

    async def fund(self, key: ClientKey, amount: int) -> None:
        _, answer = await post(
            self.admin_port,
            "/json_rpc",
            rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": amount}),
        )
        assert "result" in answer, answer


@pytest.fixture
async def gateway(toy_backend: ToyBackend, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw"))
    yield running
    await running.close()


@pytest.fixture(params=["rpcpay", "monerod"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "rpcpay":
        gw: RunningGateway = request.getfixturevalue("gateway")
        return Server(
            "rpcpay", f"http://127.0.0.1:{gw.public_port}", gw.admin_port, "eth_blockNumber", {}
        )
    mon: MonerodProcess = request.getfixturevalue("paying_monerod")
    return Server("monerod", mon.url, mon.rpc_port, "get_block_header_by_height", {"height": 1})


async def test_a_call_mines_when_it_must(server: Server) -> None:
    funder = MiningFunder()
    try:
        async with PayingClient(server.url, funder=funder) as client:
            result = await client.call(server.method, server.params)
            assert result.get("status", "OK") == "OK"
            info = await client.access_info()
            # The client's view is the node's: what it earned minus the one credit spent.
            assert client.credits == info.credits == info.credits_per_hash_found - 1
    finally:
        funder.close()


async def test_without_a_funder_the_caller_sees_payment_required(server: Server) -> None:
    async with PayingClient(server.url) as client:
        with pytest.raises(PaymentRequired) as refused:
            await client.call(server.method, server.params)
        assert refused.value.credits == 0


async def test_share_refusals_are_typed(server: Server) -> None:
    async with PayingClient(server.url) as client:
        info = await client.access_info()
        with pytest.raises(ShareRefused) as very_stale:
            await client.submit_nonce(1, info.cookie + 7)
        assert very_stale.value.code == -18


async def test_two_wallets_on_one_key_neither_double_spend_nor_diverge(server: Server) -> None:
    secret = ClientKey().secret
    first, second = (
        PayingClient(server.url, ClientKey(secret)),
        PayingClient(server.url, ClientKey(secret)),
    )
    await server.fund(first.key, 1000)
    try:

        async def spend(client: PayingClient, calls: int) -> None:
            for _ in range(calls):
                await client.call(server.method, server.params)

        await asyncio.gather(spend(first, 15), spend(second, 15))
        # Every call was charged exactly once, whichever wallet made it.
        assert (await first.access_info()).credits == 1000 - 30
        assert (await second.access_info()).credits == 1000 - 30
    finally:
        await first.close()
        await second.close()


async def test_typed_errors_for_an_unknown_method(server: Server) -> None:
    key = ClientKey()
    await server.fund(key, 10)
    async with PayingClient(server.url, key) as client:
        if server.name == "monerod":
            with pytest.raises(NodeError) as error:
                await client.call("no_such_method", {})
            assert error.value.code == -32601
        else:
            # Every method costs something on a price-list backend; the toy backend answers.
            assert (await client.call("no_such_method", {}))["method"] == "no_such_method"


async def test_upstream_down_is_its_own_error(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    url = f"http://127.0.0.1:{gateway.public_port}"
    await Server("rpcpay", url, gateway.admin_port, "", {}).fund(key, 10)
    toy_backend.failing = True
    async with PayingClient(url, key) as client:
        with pytest.raises(UpstreamDown):
            await client.call("eth_call", {})
        # Refunded: the balance the client sees is unchanged.
        assert client.credits == 10


def test_sync_client_shared_by_threads(paying_monerod: MonerodProcess) -> None:
    key = ClientKey()
    reference = Server(
        "monerod",
        paying_monerod.url,
        paying_monerod.rpc_port,
        "get_block_header_by_height",
        {"height": 1},
    )
    asyncio.run(reference.fund(key, 100))
    errors: list[BaseException] = []
    with SyncPayingClient(paying_monerod.url, key) as client:

        def work() -> None:
            try:
                for _ in range(10):
                    client.call(reference.method, reference.params)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert client.access_info().credits == 100 - 30


async def test_any_json_rpc_params_results_batches_and_errors(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    url = f"http://127.0.0.1:{gateway.public_port}"
    await Server("rpcpay", url, gateway.admin_port, "", {}).fund(key, 10)
    toy_backend.results.update({"eth_blockNumber": "0x10", "eth_syncing": False, "n": None})
    toy_backend.errors["eth_call"] = {"code": 3, "message": "execution reverted", "data": "0xab"}
    async with PayingClient(url, key) as client:
        assert await client.call("eth_blockNumber") == "0x10"
        assert await client.call("eth_syncing", []) is False
        assert await client.call("n", ["a", 1]) is None
        assert client.credits == 7
        # The backend's own error, typed, with its data; it was paid for.
        with pytest.raises(NodeError) as error:
            await client.call("eth_call", [{"to": "0x0"}, "latest"])
        assert (error.value.code, error.value.message, error.value.data) == (
            3,
            "execution reverted",
            "0xab",
        )
        assert client.credits == 6
        results = await client.call_batch(
            [("eth_blockNumber", []), ("eth_call", []), ("eth_getBalance", ["0x1", "latest"])]
        )
        assert results[0] == "0x10" and isinstance(results[1], NodeError)
        assert results[2] == {"echo": ["0x1", "latest"], "method": "eth_getBalance"}
        assert client.credits == 3  # one charge of 3 for the batch
        with pytest.raises(PaymentRequired) as refused:
            await client.call_batch([("a", [])] * 4)
        assert refused.value.terms is not None and refused.value.terms["price"] == 4
    # Nothing the client sent carried a client id to the backend.
    assert all("client" not in str(r) for r in toy_backend.requests)


async def test_a_batch_mines_when_it_must(gateway: RunningGateway, toy_backend: ToyBackend) -> None:
    funder = MiningFunder()
    try:
        async with PayingClient(f"http://127.0.0.1:{gateway.public_port}", funder=funder) as client:
            results = await client.call_batch([("eth_chainId", []), ("eth_blockNumber", [])])
            assert [r["method"] for r in results] == ["eth_chainId", "eth_blockNumber"]
            assert client.credits == 50 - 2
    finally:
        funder.close()
