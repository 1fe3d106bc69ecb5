"""Strangers cannot cost a client anything, and rotating addresses buys no more new ids.

Real gateways (``start_gateway``, real listeners and SQLite ledger) in front of the toy
backend; requests come from several loopback addresses (127.0.0.0/8 is all loopback on
Linux), so "another address" is a real other TCP peer.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from rpcpay.gateway.limits import AbuseLimits
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import (
    JSON,
    ToyBackend,
    access_info,
    find_nonce,
    gateway_config,
    post,
    rpc,
)

STALE_ID = -32006


async def post_from(source_ip: str, port: int, body: JSON) -> JSON:
    """POST a JSON-RPC body to the gateway from ``source_ip``; the decoded answer."""
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(f"http://127.0.0.1:{port}/json_rpc", data=json.dumps(body)) as response,
    ):
        # The JSON-RPC paywall answers a refused charge with HTTP 402 and an error object.
        assert response.status in (200, 402)
        return await response.json(content_type=None)


async def balance(gateway: RunningGateway, key: ClientKey) -> int:
    """The client's balance as the admin listener reports it."""
    _, answer = await post(
        gateway.admin_port,
        "/json_rpc",
        rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": 0}),
    )
    return int(answer["result"]["credits"])


async def test_replayed_share_from_another_address_costs_the_victim_nothing(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    limits = AbuseLimits(bad_shares_burst=20, bad_shares_per_second=0.001)
    config = gateway_config(toy_backend.url, tmp_path / "gw", limits=limits)
    gateway = await start_gateway(config)
    victim = ClientKey()
    try:
        await post(
            gateway.admin_port,
            "/json_rpc",
            rpc("rpc_access_account", {"client": victim.public.hex(), "delta_balance": 15_000}),
        )
        info = await access_info(gateway.public_port, victim)
        nonce = find_nonce(info)
        captured = rpc(
            "rpc_access_submit_nonce",
            {"client": victim.client_id(), "nonce": nonce, "cookie": info["cookie"]},
        )
        good = await post_from("127.0.0.1", gateway.public_port, captured)
        assert good["result"]["credits"] == 15_050
        # The same request, word for word, from another address: refused, no penalty.
        replay = await post_from("127.0.0.2", gateway.public_port, captured)
        assert replay["error"]["code"] == STALE_ID, replay
        assert await balance(gateway, victim) == 15_050
        # The captured id with junk nonces, from 25 addresses: more than the bad-share
        # budget of any one party, and still nothing is charged to anyone.
        for i in range(25):
            junk = json.loads(json.dumps(captured))
            junk["params"]["nonce"] = nonce + 1 + i
            answer = await post_from(f"127.0.3.{i + 1}", gateway.public_port, junk)
            assert answer["error"]["code"] == STALE_ID, answer
        assert await balance(gateway, victim) == 15_050
        account = await gateway.ledger.get(victim.public)
        assert account is not None and (account.nonces_bad, account.nonces_dupe) == (0, 0)
        # The victim's own next share is still judged, and paid.
        info = await access_info(gateway.public_port, victim)
        answer = await post_from(
            "127.0.0.1",
            gateway.public_port,
            rpc(
                "rpc_access_submit_nonce",
                {
                    "client": victim.client_id(),
                    "nonce": find_nonce(info, nonce + 1),
                    "cookie": info["cookie"],
                },
            ),
        )
        assert answer["result"]["credits"] == 15_100, answer
    finally:
        await gateway.close()
    # The last timestamp is in the ledger row: a replay after a restart is refused too.
    gateway = await start_gateway(config)
    try:
        replay = await post_from("127.0.0.2", gateway.public_port, captured)
        assert replay["error"]["code"] == STALE_ID, replay
        assert await balance(gateway, victim) == 15_100
    finally:
        await gateway.close()


async def test_replayed_paid_call_and_access_pay_are_refused(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    gateway = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw"))
    victim = ClientKey()
    try:
        await post(
            gateway.admin_port,
            "/json_rpc",
            rpc("rpc_access_account", {"client": victim.public.hex(), "delta_balance": 1_000}),
        )
        pay = rpc(
            "rpc_access_pay", {"client": victim.client_id(), "paying_for": "x", "payment": 100}
        )
        assert (await post_from("127.0.0.1", gateway.public_port, pay))["result"]["credits"] == 900
        replay = await post_from("127.0.0.2", gateway.public_port, pay)
        assert replay["result"]["status"] == "PAYMENT REQUIRED"
        call = rpc("eth_call", [], client=victim.client_id())
        assert "result" in await post_from("127.0.0.1", gateway.public_port, call)
        assert await balance(gateway, victim) == 899
        replayed = await post_from("127.0.0.2", gateway.public_port, call)
        assert replayed["error"]["data"]["status"] == "PAYMENT REQUIRED"
        assert await balance(gateway, victim) == 899
        assert len(toy_backend.requests) == 1
    finally:
        await gateway.close()


async def test_rotating_addresses_buys_no_more_new_ids(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    limits = AbuseLimits(
        new_clients_burst=3,
        new_clients_per_second=0.001,
        new_clients_prefix_burst=10,
        new_clients_prefix_per_second=0.001,
        new_clients_total_burst=25,
        new_clients_total_per_second=0.001,
    )
    gateway = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw", limits=limits))

    async def new_id_from(source_ip: str) -> bool:
        body = rpc("rpc_access_info", {"client": ClientKey().client_id()})
        answer = await post_from(source_ip, gateway.public_port, body)
        return "result" in answer

    try:
        # 60 addresses of one /24, two new ids each: the /24 gets its 10, no more.
        one_prefix = [await new_id_from(f"127.0.9.{i // 2 + 1}") for i in range(60)]
        assert sum(one_prefix) == 10
        # 40 more /24s: the whole gateway stops at its 25.
        many = [await new_id_from(f"127.0.{20 + i}.1") for i in range(40)]
        assert sum(many) == 15
        assert await gateway.core.payment.sessions.count() == 25
    finally:
        await gateway.close()
