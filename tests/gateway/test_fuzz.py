"""Arbitrary input never crashes the gateway, reaches the upstream unpaid, or touches the ledger."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.gateway.jsoncodec import decode_json
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import CountingUpstream, ToyBackend, gateway_config, post, rpc
from tests.support.monerod import TEST_ADDRESS, MonerodProcess

METHODS = [
    "rpc_access_info",
    "rpc_access_submit_nonce",
    "rpc_access_pay",
    "rpc_access_data",
    "rpc_access_account",
    "rpc_access_tracking",
    "eth_call",
    "get_info",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
requests = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda m, p, i: json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}).encode(),
        st.sampled_from(METHODS),
        json_values,
        json_values,
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def test_garbage_is_refused_cleanly(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    backend = ToyBackend()
    app = web.Application()
    app.router.add_post("/{tail:.*}", backend.handle)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> RunningGateway:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        backend.port = int(runner.addresses[0][1])
        return await start_gateway(gateway_config(backend.url, tmp_path / "gw"))

    gateway = loop.run_until_complete(start())

    async def send(bodies: list[bytes]) -> None:
        for body in bodies:
            for path in ("/", "/json_rpc"):
                status, answer = await post(gateway.public_port, path, body)
                if status == 204:  # notifications only: nothing to answer
                    assert answer is None
                    continue
                # Every answer is a JSON refusal (402 for unpaid calls), never a server error;
                # a batch gets an array of them.
                assert status in (200, 400, 402, 404, 413), (status, body)
                assert isinstance(answer, (dict, list)), body
                for item in answer if isinstance(answer, list) else [answer]:
                    assert "result" not in item or "method" not in item["result"], body

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.lists(requests, min_size=1, max_size=8))
    def run(bodies: list[bytes]) -> None:
        loop.run_until_complete(send(bodies))

    try:
        run()
        # Nothing unpaid reached the backend, and no account holds or used a credit.
        assert backend.requests == []
        assert all(
            a.balance == 0 and a.credits_used == 0 and a.credits_total == 0
            for a in loop.run_until_complete(gateway.ledger.accounts())
        )
    finally:
        loop.run_until_complete(gateway.close())
        loop.run_until_complete(runner.cleanup())
        loop.close()


# -- boundary values for every parameter of every priced monerod call (issue 10) ---------------

U64_MAX = 2**64 - 1
BOUNDARY_VALUES: list[Any] = [0, U64_MAX, 2**64, 2**80, -1, 1.5, "1", None, True]
# monerod 0.18's request fields (core_rpc_server_commands_defs.h), written out here rather
# than taken from the gateway's own tables, so the test checks them.
JSON_RPC_PARAMS: dict[str, list[str]] = {
    "get_info": [],
    "get_last_block_header": ["fill_pow_hash"],
    "getlastblockheader": ["fill_pow_hash"],
    "get_block_header_by_hash": ["hash", "hashes", "fill_pow_hash"],
    "getblockheaderbyhash": ["hash", "hashes", "fill_pow_hash"],
    "get_block_header_by_height": ["height", "fill_pow_hash"],
    "getblockheaderbyheight": ["height", "fill_pow_hash"],
    "get_block_headers_range": ["start_height", "end_height", "fill_pow_hash"],
    "getblockheadersrange": ["start_height", "end_height", "fill_pow_hash"],
    "get_block": ["hash", "height", "fill_pow_hash"],
    "getblock": ["hash", "height", "fill_pow_hash"],
    "hard_fork_info": ["version"],
    "get_output_histogram": ["amounts", "min_count", "max_count", "unlocked", "recent_cutoff"],
    "get_coinbase_tx_sum": ["height", "count"],
    "get_fee_estimate": ["grace_blocks"],
    "relay_tx": ["txids"],
    "sync_info": [],
    "get_txpool_backlog": [],
    "get_output_distribution": [
        "amounts",
        "from_height",
        "to_height",
        "cumulative",
        "binary",
        "compress",
    ],
}
ENDPOINT_PARAMS: dict[str, list[str]] = {
    "/get_info": [],
    "/getinfo": [],
    "/get_transactions": ["txs_hashes", "decode_as_json", "prune", "split"],
    "/gettransactions": ["txs_hashes", "decode_as_json", "prune", "split"],
    "/is_key_image_spent": ["key_images"],
    "/send_raw_transaction": ["tx_as_hex", "do_not_relay", "do_sanity_checks"],
    "/sendrawtransaction": ["tx_as_hex", "do_not_relay", "do_sanity_checks"],
    "/get_outs": ["outputs", "get_txid"],
    "/get_transaction_pool": [],
    "/get_transaction_pool_hashes": [],
    "/get_transaction_pool_hashes.bin": [],
    "/get_transaction_pool_stats": [],
}
# Fields that are u64 numbers (hard_fork_info's version is a u8), lists of them, and lists
# of objects of them: out-of-range input there must be refused before any charge.
NUMBERS = {
    "height": U64_MAX,
    "start_height": U64_MAX,
    "end_height": U64_MAX,
    "min_count": U64_MAX,
    "max_count": U64_MAX,
    "recent_cutoff": U64_MAX,
    "count": U64_MAX,
    "grace_blocks": U64_MAX,
    "from_height": U64_MAX,
    "to_height": U64_MAX,
    "version": 255,
}
NUMBER_LISTS = {"amounts"}
NUMBER_OBJECT_LISTS = {"outputs": ("amount", "index")}


def _fits(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def boundary_cases() -> list[tuple[str, str, dict[str, Any], bool]]:
    """(path, method or "", params, must be refused unpaid) for every param and value."""
    cases: list[tuple[str, str, dict[str, Any], bool]] = []
    table = [("/json_rpc", m, p) for m, p in JSON_RPC_PARAMS.items()]
    table += [(path, "", p) for path, p in ENDPOINT_PARAMS.items()]
    for path, method, names in table:
        for name in names or ["unknown_param"]:
            for value in BOUNDARY_VALUES:
                refused = False
                if name in NUMBERS:
                    sent: Any = value
                    refused = not _fits(value, NUMBERS[name])
                elif name in NUMBER_LISTS:
                    sent = [value]
                    refused = not _fits(value, U64_MAX)
                elif name in NUMBER_OBJECT_LISTS:
                    sent = [{field: value for field in NUMBER_OBJECT_LISTS[name]}]
                    refused = not _fits(value, U64_MAX)
                else:
                    sent = value
                cases.append((path, method, {name: sent}, refused))
    return cases


@pytest.mark.monerod
@pytest.mark.slow
async def test_boundary_values_for_every_priced_param_never_500(
    monerod: MonerodProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = CountingUpstream(monerod.url)
    gateway = await start_gateway(
        gateway_config(
            monerod.url, tmp_path / "gw", upstream_kind="monero", payment_address=TEST_ADDRESS
        ),
        upstream=upstream,
    )
    key = ClientKey()
    checked = 0
    try:
        async with aiohttp.ClientSession() as session:

            async def send(port: int, path: str, body: Any) -> tuple[int, Any]:
                url = f"http://127.0.0.1:{port}{path}"
                async with session.post(url, data=json.dumps(body)) as response:
                    return response.status, decode_json(await response.read())

            async def funds(delta: int = 0) -> int:
                body = rpc(
                    "rpc_access_account", {"client": key.public.hex(), "delta_balance": delta}
                )
                return int(
                    (await send(gateway.admin_port, "/json_rpc", body))[1]["result"]["credits"]
                )

            def forwarded() -> int:
                # The gateway's own top poll (/get_height) runs in the background: not counted.
                return sum(1 for p in upstream.paths if p != "/get_height")

            after = await funds(10**15)
            for path, method, params, refused in boundary_cases():
                before, reached = after, forwarded()
                body = dict(params, client=key.client_id())
                request = rpc(method, body) if method else body
                status, answer = await send(gateway.public_port, path, request)
                after = await funds()
                where = (path, method, params)
                # Never a server error, always a JSON answer.
                assert status < 500 or (status == 502 and not refused), (where, status, answer)
                assert isinstance(answer, dict), where
                if refused:
                    # Out-of-range numbers are refused before pricing: nothing charged, nothing
                    # forwarded.
                    assert status == 400 or answer.get("error", {}).get("code") == -32602, (
                        where,
                        answer,
                    )
                    assert after == before and forwarded() == reached, where
                else:
                    # Anything else is either not charged or charged what the answer says.
                    reported = answer.get("result", answer).get("credits", after)
                    assert after in (before, reported), (where, before, after, answer)
                checked += 1
            # The two crashers.
            huge = rpc(
                "get_block_headers_range",
                {"client": key.client_id(), "start_height": 2**80, "end_height": 2**80},
            )
            before = await funds()
            status, answer = await send(gateway.public_port, "/json_rpc", huge)
            assert status == 200 and answer["error"]["code"] == -32602
            assert await funds() == before
            async with session.post(
                f"http://127.0.0.1:{gateway.public_port}/json_rpc", data=b"[" * 100_000
            ) as response:
                assert response.status == 200
                assert (await response.json(content_type=None))["error"]["code"] == -32700
    finally:
        await gateway.close()
    assert checked > 400
    # No traceback reached the log.
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()
