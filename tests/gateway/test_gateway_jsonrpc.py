"""The gateway in front of a plain JSON-RPC backend: paid calls, refusals, refunds, bad input."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.pow.verifier import ShareVerifier
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire.client_id import make_client_id
from tests.gateway.conftest import (
    ToyBackend,
    access_info,
    earn_share,
    find_nonce,
    gateway_config,
    post,
    rpc,
)


async def test_unsigned_call_never_reaches_upstream(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    status, answer = await post(gateway.public_port, "/", rpc("eth_blockNumber", []))
    # A refusal is a JSON-RPC error with HTTP 402, never a result a client could misread.
    assert status == 402 and "result" not in answer and answer["id"] == 7
    error = answer["error"]
    assert error["code"] == -32004
    assert error["message"] == "Client signature does not verify for eth_blockNumber"
    assert error["data"]["credits"] == 0 and error["data"]["price"] == 1
    assert error["data"]["earn"]["hashes"] == {
        "job": "rpc_access_info",
        "submit": "rpc_access_submit_nonce",
        "diff": 2,
        "credits_per_hash_found": 50,
    }
    assert "lottery" not in error["data"]["earn"]  # the rail is off here
    assert toy_backend.requests == []


async def test_broke_client_gets_payment_required(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    status, answer = await post(
        gateway.public_port, "/", rpc("eth_blockNumber", [], client=key.client_id())
    )
    assert status == 402
    assert answer["error"]["message"] == "Payment required"
    assert answer["error"]["data"]["status"] == "PAYMENT REQUIRED"
    assert toy_backend.requests == []


async def test_mined_credits_pay_for_calls(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    submitted = await earn_share(gateway.public_port, key)
    assert submitted["result"]["credits"] == 50
    # Array params (Ethereum style): the client id travels beside them and is stripped.
    _, answer = await post(
        gateway.public_port, "/", rpc("eth_getBalance", ["0xabc", "latest"], client=key.client_id())
    )
    assert answer["result"] == {"echo": ["0xabc", "latest"], "method": "eth_getBalance"}
    assert answer["credits"] == 49
    assert toy_backend.requests[-1] == rpc("eth_getBalance", ["0xabc", "latest"])
    # Object params (monerod style): the client id inside params is stripped too.
    _, answer = await post(
        gateway.public_port, "/json_rpc", rpc("anything", {"a": 1, "client": key.client_id()})
    )
    assert answer["credits"] == 48
    assert toy_backend.requests[-1]["params"] == {"a": 1}


async def test_upstream_failure_costs_nothing(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    await earn_share(gateway.public_port, key)
    toy_backend.failing = True
    _, answer = await post(gateway.public_port, "/", rpc("eth_call", [], client=key.client_id()))
    assert answer["error"]["code"] == -32003
    assert answer["credits"] == 50
    toy_backend.failing = False
    info = await access_info(gateway.public_port, key)
    assert info["credits"] == 50
    account = await gateway.ledger.get(key.public)
    assert account is not None and account.credits_used == 0


async def test_unreachable_upstream_costs_nothing(toy_backend: ToyBackend, tmp_path: Path) -> None:
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path))
    try:
        key = ClientKey()
        await earn_share(running.public_port, key)
        # Point the gateway at a port nobody listens on by stopping the backend's answers:
        upstream = getattr(running.core.upstream, "inner", running.core.upstream)  # metered
        await upstream.close()
        upstream._base = "http://127.0.0.1:9"
        upstream._url = "http://127.0.0.1:9/"
        _, answer = await post(
            running.public_port, "/", rpc("eth_call", [], client=key.client_id())
        )
        assert answer["error"]["code"] == -32003 and answer["credits"] == 50
    finally:
        await running.close()


async def test_replayed_client_id_is_refused(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    await earn_share(gateway.public_port, key)
    client = key.client_id()
    _, first = await post(gateway.public_port, "/", rpc("eth_call", [], client=client))
    assert first["credits"] == 49
    status, second = await post(gateway.public_port, "/", rpc("eth_call", [], client=client))
    # monerod reports credits 0 on a timestamp refusal, and nothing is charged.
    assert status == 402
    data = second["error"]["data"]
    assert (data["credits"], data["status"], data["top_hash"]) == (
        0,
        "PAYMENT REQUIRED",
        first["top_hash"],
    )
    assert len(toy_backend.requests) == 1
    assert (await gateway.ledger.get(key.public)).balance == 49  # type: ignore[union-attr]


async def test_expired_and_forged_ids_are_refused(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    key = ClientKey()
    old = make_client_id(key.secret, int((time.time() - 120) * 1e6))
    _, answer = await post(gateway.public_port, "/", rpc("m", [], client=old))
    assert answer["error"]["message"] == "Client signature does not verify for m"
    valid = key.client_id()
    forged = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    _, answer = await post(
        gateway.public_port, "/json_rpc", rpc("rpc_access_info", {"client": forged})
    )
    assert answer["error"] == {"code": -15, "message": "Invalid client ID"}
    assert toy_backend.requests == []


async def test_malformed_requests_get_clear_errors(
    gateway: RunningGateway, toy_backend: ToyBackend
) -> None:
    port = gateway.public_port
    _, answer = await post(port, "/json_rpc", b"{nope")
    assert answer["error"] == {"code": -32700, "message": "Parse error"}
    _, answer = await post(port, "/json_rpc", [])
    assert answer["error"]["code"] == -32600
    _, answer = await post(port, "/json_rpc", {"jsonrpc": "2.0", "id": 1, "method": 5})
    assert answer["error"]["code"] == -32600
    key = ClientKey()
    _, answer = await post(
        port,
        "/json_rpc",
        rpc("rpc_access_submit_nonce", {"client": key.client_id(), "nonce": "1", "cookie": 0}),
    )
    assert answer["error"]["code"] == -32602
    _, answer = await post(
        port,
        "/json_rpc",
        rpc("rpc_access_submit_nonce", {"client": key.client_id(), "nonce": 2**32, "cookie": 0}),
    )
    assert answer["error"]["code"] == -32602
    _, answer = await post(port, "/json_rpc", rpc("rpc_access_info", ["not", "an", "object"]))
    assert answer["error"]["code"] == -32602
    _, answer = await post(port, "/json_rpc", rpc("rpc_access_info", {"client": 12}))
    assert answer["error"]["code"] == -15
    status, _ = await post(port, "/json_rpc", b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert status == 413
    assert toy_backend.requests == []
    assert (await gateway.ledger.accounts()) == []


async def test_admin_methods_are_not_public(gateway: RunningGateway) -> None:
    key = ClientKey()
    for method, params in [
        ("rpc_access_account", {"client": key.public.hex(), "delta_balance": 10**6}),
        ("rpc_access_data", {}),
        ("rpc_access_tracking", {}),
    ]:
        _, answer = await post(gateway.public_port, "/json_rpc", rpc(method, params))
        assert answer["error"] == {"code": -32601, "message": "Method not found"}
    assert (await gateway.ledger.get(key.public)) is None
    _, answer = await post(
        gateway.admin_port,
        "/json_rpc",
        rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": 500}),
    )
    assert answer["result"]["credits"] == 500
    _, answer = await post(gateway.admin_port, "/json_rpc", rpc("rpc_access_data"))
    assert answer["result"]["entries"][0]["client"] == key.public.hex()


async def test_admin_token_is_enforced(toy_backend: ToyBackend, tmp_path: Path) -> None:
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path, admin_token="s3cret"))
    try:
        status, _ = await post(running.admin_port, "/json_rpc", rpc("rpc_access_data"))
        assert status == 401
        status, answer = await post(
            running.admin_port,
            "/json_rpc",
            rpc("rpc_access_data"),
            {"Authorization": "Bearer s3cret"},
        )
        assert status == 200 and answer["result"]["status"] == "OK"
    finally:
        await running.close()


async def test_free_methods_pass_without_a_client(toy_backend: ToyBackend, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 5, "methods": {"net_version": 0}}))
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "d", price_file=prices)
    )
    try:
        _, answer = await post(running.public_port, "/", rpc("net_version", []))
        assert answer["result"]["method"] == "net_version"
        key = ClientKey()
        await earn_share(running.public_port, key)
        _, answer = await post(running.public_port, "/", rpc("eth_x", [], client=key.client_id()))
        assert answer["credits"] == 45
    finally:
        await running.close()


async def test_balances_survive_restart(toy_backend: ToyBackend, tmp_path: Path) -> None:
    key = ClientKey()
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path))
    try:
        told = (await earn_share(running.public_port, key))["result"]["credits"]
    finally:
        await running.close()
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path))
    try:
        assert (await access_info(running.public_port, key))["credits"] == told == 50
    finally:
        await running.close()


async def test_share_rules_through_http(gateway: RunningGateway) -> None:
    port, key = gateway.public_port, ClientKey()
    info = await access_info(port, key)
    nonce = find_nonce(info)

    async def submit(n: int, cookie: int) -> dict[str, object]:
        _, answer = await post(
            port,
            "/json_rpc",
            rpc(
                "rpc_access_submit_nonce", {"client": key.client_id(), "nonce": n, "cookie": cookie}
            ),
        )
        return dict(answer)

    good = await submit(nonce, info["cookie"])
    assert good["result"]["credits"] == 50  # type: ignore[index]
    dupe = await submit(nonce, info["cookie"])
    assert dupe["error"] == {"code": -17, "message": "Duplicate payment"}
    account = await gateway.ledger.get(key.public)
    assert account is not None and account.balance == 0  # 50 - 20 * 50, clamped at 0
    very_stale = await submit(nonce + 1, info["cookie"] + 5)
    assert very_stale["error"] == {"code": -18, "message": "Very stale payment"}
    account = await gateway.ledger.get(key.public)
    assert account is not None
    assert (account.nonces_good, account.nonces_dupe, account.nonces_stale) == (1, 1, 1)


async def test_bad_share_flood_is_cut_off_before_hashing(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    from rpcpay.gateway.limits import AbuseLimits

    limits = AbuseLimits(bad_shares_burst=3, bad_shares_per_second=0.001)
    verifier = ShareVerifier(threads=1, mode="light")
    hashed: list[bytes] = []

    class CountingHasher:
        async def hash(self, seed_hash: bytes, blob: bytes) -> bytes:
            hashed.append(blob)
            return await verifier.hash(seed_hash, blob)

        async def prepare(self, seed_hash: bytes) -> None:
            await verifier.prepare(seed_hash)

    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path, difficulty=10**12, limits=limits),
        hasher=CountingHasher(),
    )
    try:
        key = ClientKey()
        info = await access_info(running.public_port, key)
        codes = []
        for n in range(40):
            _, answer = await post(
                running.public_port,
                "/json_rpc",
                rpc(
                    "rpc_access_submit_nonce",
                    {"client": key.client_id(), "nonce": n, "cookie": info["cookie"]},
                ),
            )
            codes.append(answer["error"]["code"])
        assert codes[:3] == [-16, -16, -16]
        assert set(codes[3:]) == {-32005}
        # The 37 refused shares cost the server no RandomX hash at all.
        assert len(hashed) == 3
        # A new id from the same address gets no fresh budget.
        other = ClientKey()
        info = await access_info(running.public_port, other)
        _, answer = await post(
            running.public_port,
            "/json_rpc",
            rpc(
                "rpc_access_submit_nonce",
                {"client": other.client_id(), "nonce": 1, "cookie": info["cookie"]},
            ),
        )
        assert answer["error"]["code"] == -32005
        assert len(hashed) == 3
    finally:
        await running.close()
        verifier.close()


async def test_new_client_flood_is_rationed(toy_backend: ToyBackend, tmp_path: Path) -> None:
    from rpcpay.gateway.limits import AbuseLimits

    limits = AbuseLimits(new_clients_burst=5, new_clients_per_second=0.001)
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path, limits=limits))
    try:
        answers = await asyncio.gather(
            *[
                post(
                    running.public_port,
                    "/json_rpc",
                    rpc("rpc_access_info", {"client": ClientKey().client_id()}),
                )
                for _ in range(12)
            ]
        )
        codes = sorted(a[1].get("error", {}).get("code", 0) for a in answers)
        assert codes.count(0) == 5 and codes.count(-32005) == 7
    finally:
        await running.close()


async def test_tracking_counts_calls_and_credits(gateway: RunningGateway) -> None:
    key = ClientKey()
    await earn_share(gateway.public_port, key)
    for _ in range(2):
        await post(gateway.public_port, "/", rpc("eth_call", [], client=key.client_id()))
    _, answer = await post(gateway.admin_port, "/json_rpc", rpc("rpc_access_tracking"))
    rows = {row["rpc"]: row for row in answer["result"]["data"]}
    assert rows["eth_call"]["count"] == 2 and rows["eth_call"]["credits"] == 2
    assert rows["rpc_access_submit_nonce"]["count"] == 1
    _, answer = await post(
        gateway.admin_port, "/json_rpc", rpc("rpc_access_tracking", {"clear": True})
    )
    assert answer["result"]["status"] == "OK"
    _, answer = await post(gateway.admin_port, "/json_rpc", rpc("rpc_access_tracking"))
    assert answer["result"]["data"] == []
