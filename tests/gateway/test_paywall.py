"""The standard JSON-RPC 2.0 paywall in front of a JSON-RPC backend: batches, notifications,
ids of every type, the exact upstream URL, byte-for-byte results, and bad input that costs
nothing and reaches nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rpcpay.gateway.envelope import MAX_BATCH_ITEMS, Call, Invalid, parse_item, parse_request
from rpcpay.gateway.paywall import splice_balance, unsplice_balance
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, earn_share, gateway_config, post, rpc

JSON = Any


async def test_batch_is_priced_per_item_and_charged_once(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 2, "methods": {"net_version": 0, "eth_getLogs": 7}}))
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "d", price_file=prices)
    )
    try:
        key = ClientKey()
        await earn_share(running.public_port, key)
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "net_version"},
            {"jsonrpc": "2.0", "id": "two", "method": "eth_getLogs", "params": [{"a": 1}]},
            {"jsonrpc": "2.0", "id": None, "method": "eth_blockNumber"},
            {"jsonrpc": "2.0", "method": "eth_subscribe_notice", "params": []},  # notification
        ]
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{running.public_port}/",
                json=batch,
                headers={"X-Rpc-Client": key.client_id()},
            ) as response,
        ):
            assert response.status == 200
            assert response.headers["X-Rpc-Credits"] == str(50 - 0 - 7 - 2 - 2)
            answer = await response.json()
        # One upstream request: the whole batch, client-free, in order.
        assert toy_backend.requests == [batch]
        assert [a["id"] for a in answer] == [1, "two", None]
        assert answer[1]["result"] == {"echo": [{"a": 1}], "method": "eth_getLogs"}
        account = await running.ledger.get(key.public)
        assert account is not None and account.balance == 39 and account.credits_used == 11
    finally:
        await running.close()


async def test_batch_refused_whole_with_terms(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    batch = [rpc("eth_blockNumber", [], id=1), rpc("eth_chainId", [], id=2)]
    status, answer = await post(gateway.public_port, "/", batch, {"X-Rpc-Client": key.client_id()})
    assert status == 402
    assert [a["id"] for a in answer] == [1, 2]
    assert {a["error"]["data"]["price"] for a in answer} == {2}
    assert {a["error"]["data"]["item_price"] for a in answer} == {1}
    assert toy_backend.requests == []


async def test_gateway_methods_inside_a_batch(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    batch = [
        rpc("rpc_access_info", {"client": key.client_id()}, id="info"),
        rpc("net_version", [], id="free?"),
        {"junk": True},
    ]
    status, answer = await post(gateway.public_port, "/", batch)
    assert status == 402  # net_version costs the default 1 credit here
    by_id = {a["id"]: a for a in answer}
    assert by_id["info"]["result"]["credits"] == 0
    assert by_id["free?"]["error"]["code"] == -32004
    assert by_id[None]["error"]["code"] == -32600
    assert toy_backend.requests == []


async def test_upstream_batch_failure_refunds_the_whole_batch(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    await earn_share(gateway.public_port, key)
    toy_backend.failing = True
    batch = [rpc("a", [], id=1), rpc("b", [], id=2)]
    status, answer = await post(gateway.public_port, "/", batch, {"X-Rpc-Client": key.client_id()})
    assert status == 200
    assert [(a["id"], a["error"]["code"], a["credits"]) for a in answer] == [
        (1, -32003, 50),
        (2, -32003, 50),
    ]
    assert (await gateway.ledger.get(key.public)).balance == 50  # type: ignore[union-attr]


@pytest.mark.parametrize("request_id", [0, -1, 2**70, 1.5, "", "ü-\u2603", None, "0x1"], ids=repr)
async def test_ids_of_every_json_type_come_back_unchanged(
    gateway: RunningGateway, request_id: JSON
) -> None:
    key = ClientKey()
    await earn_share(gateway.public_port, key)
    body = {"jsonrpc": "2.0", "id": request_id, "method": "eth_x", "params": []}
    status, answer = await post(gateway.public_port, "/", body, {"X-Rpc-Client": key.client_id()})
    assert status == 200 and answer["id"] == request_id
    assert type(answer["id"]) is type(request_id)


async def test_notifications_get_no_answer_and_are_charged(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    await earn_share(gateway.public_port, key)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gateway.public_port}/",
            json={"jsonrpc": "2.0", "method": "eth_notice", "params": []},
            headers={"X-Rpc-Client": key.client_id()},
        ) as response,
    ):
        assert response.status == 204 and await response.read() == b""
    assert toy_backend.requests[-1]["method"] == "eth_notice"
    assert (await gateway.ledger.get(key.public)).balance == 49  # type: ignore[union-attr]


class RawBackend:
    """A backend at a deep path that answers fixed bytes, to check exact URLs and bytes."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.paths: list[str] = []
        self.bodies: list[bytes] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path_qs)
        self.bodies.append(await request.read())
        return web.Response(body=self.body, content_type="application/json")


@pytest.fixture
async def raw_backend() -> AsyncIterator[RawBackend]:
    backend = RawBackend(
        b'{"jsonrpc":"2.0","id":5,"result":{"b":1.0e2,"a":"\\u00e9\\ud83d\\ude00"}}'
    )
    app = web.Application()
    app.router.add_post("/{tail:.*}", backend.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    backend.port = int(runner.addresses[0][1])
    yield backend
    await runner.cleanup()


async def test_upstream_url_exact_and_results_byte_for_byte(
    raw_backend: RawBackend, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{raw_backend.port}/v3/KEY?x=1"
    running = await start_gateway(gateway_config(url, tmp_path))
    try:
        key = ClientKey()
        await earn_share(running.public_port, key)
        sent = b'{"jsonrpc":"2.0","id":5,"method":"eth_getBlockByNumber","params":["latest",false]}'
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{running.public_port}/",
                data=sent,
                headers={"X-Rpc-Client": key.client_id()},
            ) as response,
        ):
            body = await response.read()
        assert raw_backend.paths == ["/v3/KEY?x=1"]
        # With the client id in the header, the request reaches the backend unchanged.
        assert raw_backend.bodies == [sent]
        top = response.headers["X-Rpc-Top-Hash"]
        assert body == b'{"credits":49,"top_hash":"' + top.encode() + b'",' + raw_backend.body[1:]
    finally:
        await running.close()


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b"[]",
        json.dumps([rpc("m", [], id=i) for i in range(10_000)]).encode(),
        json.dumps({"jsonrpc": "1.0", "id": 1, "method": "m"}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": ["m"]}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": {"a": 1}, "method": "m"}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "m", "params": "x"}).encode(),
        json.dumps([[1, [2]], {"x": [{}]}, 3, None]).encode(),
        b"42",
        b"",
    ],
    ids=range(11),
)
async def test_bad_input_costs_nothing_and_reaches_nothing(
    gateway: RunningGateway, toy_backend: ToyBackend, body: bytes
) -> None:
    key = ClientKey()
    await earn_share(gateway.public_port, key)
    status, answer = await post(gateway.public_port, "/", body, {"X-Rpc-Client": key.client_id()})
    assert status == 200
    errors = answer if isinstance(answer, list) else [answer]
    assert errors and all(e["error"]["code"] in (-32700, -32600, -32602) for e in errors)
    assert all(e["jsonrpc"] == "2.0" and "id" in e for e in errors)
    assert toy_backend.requests == []
    assert (await gateway.ledger.get(key.public)).balance == 50  # type: ignore[union-attr]


def test_splice_keeps_every_backend_byte() -> None:
    assert splice_balance(b' {"a":1}', 3, "h") == b' {"credits":3,"top_hash":"h","a":1}'
    assert splice_balance(b"{}", 3, "h") == b'{"credits":3,"top_hash":"h"}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_parses_to_calls_or_spec_errors(document: JSON) -> None:
    parsed = parse_request(document)
    if isinstance(parsed, Invalid):
        assert isinstance(document, list) and (not document or len(document) > MAX_BATCH_ITEMS)
        return
    for item in parsed.items:
        if isinstance(item, Call):
            assert item.method and "client" not in item.forwarded
            assert item.forwarded.get("jsonrpc") == "2.0"
        else:
            assert item.code in (-32600, -32602)


def test_client_id_is_stripped_from_params_and_beside() -> None:
    call = parse_item({"jsonrpc": "2.0", "id": 1, "method": "m", "params": {"client": "c", "a": 2}})
    assert isinstance(call, Call) and call.client == "c" and call.stripped
    assert call.forwarded == {"jsonrpc": "2.0", "id": 1, "method": "m", "params": {"a": 2}}


def test_unsplice_gives_back_the_backend_bytes() -> None:
    for body in (b'{"jsonrpc":"2.0","id":1,"result":"0x1"}', b" {}", b'{"a":{"credits":1}}'):
        assert unsplice_balance(splice_balance(body, 12, "ab01")) == body


def test_batch_charges_are_conserved(tmp_path: Path) -> None:
    """Whatever the batch (valid, invalid, free, priced, notifications, a failing backend),
    the client pays exactly the priced calls that reached the backend, once, and a refused
    or failed batch costs nothing."""
    import asyncio

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 1, "methods": {"free": 0, "dear": 7}}))
    loop = asyncio.new_event_loop()
    toy_backend = loop.run_until_complete(ToyBackend().start())  # served by this loop
    running = loop.run_until_complete(
        start_gateway(gateway_config(toy_backend.url, tmp_path / "d", price_file=prices))
    )
    key = ClientKey()
    loop.run_until_complete(running.ledger.adjust_balance(key.public, 10**6))
    item = st.one_of(
        st.builds(lambda m, n: {"jsonrpc": "2.0", "id": n, "method": m, "params": []},
                  st.sampled_from(["free", "cheap", "dear"]), st.integers(0, 99)),
        st.builds(lambda m: {"jsonrpc": "2.0", "method": m}, st.sampled_from(["cheap", "dear"])),
        st.just({"jsonrpc": "2.0", "id": 1}),
    )  # fmt: skip
    price = {"free": 0, "cheap": 1, "dear": 7}

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # each example is real HTTP: no shrinking
    )
    @given(st.lists(item, min_size=1, max_size=6), st.booleans())
    def run(batch: list[JSON], failing: bool) -> None:
        before = loop.run_until_complete(running.ledger.get(key.public))
        assert before is not None
        sent = len(toy_backend.requests)
        toy_backend.failing = failing
        status, _ = loop.run_until_complete(
            post(running.public_port, "/", batch, {"X-Rpc-Client": key.client_id()})
        )
        after = loop.run_until_complete(running.ledger.get(key.public))
        assert after is not None
        cost = sum(price[i["method"]] for i in batch if "method" in i)
        reached = len(toy_backend.requests) - sent
        if status == 402 or failing or cost == 0:
            # Refused before forwarding, refunded, or free: the balance is unchanged.
            assert after.balance == before.balance
            assert status != 402 or reached == 0
        else:
            assert (before.balance - after.balance, reached) == (cost, 1), (batch, status)
        # Nothing is ever credited by a call.
        assert after.balance <= before.balance

    try:
        run()
    finally:
        loop.run_until_complete(running.close())
        loop.run_until_complete(toy_backend.close())
        loop.close()


def test_params_holding_only_the_client_id_are_not_forwarded() -> None:
    call = parse_item({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                       "params": {"client": "c"}})  # fmt: skip
    assert isinstance(call, Call) and call.client == "c"
    assert call.forwarded == {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}
