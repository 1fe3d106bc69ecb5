"""Arbitrary input never crashes the gateway, reaches the upstream unpaid, or touches the ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.gateway.server import RunningGateway, start_gateway
from tests.gateway.conftest import ToyBackend, gateway_config, post

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
            for a in gateway.ledger.accounts()
        )
    finally:
        loop.run_until_complete(gateway.close())
        loop.run_until_complete(runner.cleanup())
        loop.close()
