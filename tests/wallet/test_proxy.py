"""The local paying proxy against real gateways (in front of toy backends): free calls for
its clients, the cheaper server chosen, failover when it stops, bad input, and the market's
pure rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.testing import ToyBackend
from rpcpay.wallet.funding import MiningFunder
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.market import ServerTerms, call_cost, rank_servers, with_failure
from rpcpay.wallet.proxy import PayingProxy
from tests.gateway.conftest import gateway_config

JSON = object


@pytest.fixture
async def two_gateways(
    tmp_path: Path,
) -> AsyncIterator[tuple[list[ToyBackend], list[RunningGateway]]]:
    """Gateway 0 pays 50 credits a share, gateway 1 only 10: 0 is five times cheaper."""
    backends = [await ToyBackend().start(), await ToyBackend().start()]
    gateways = [
        await start_gateway(gateway_config(backends[0].url, tmp_path / "g0", credits_per_hash=50)),
        await start_gateway(gateway_config(backends[1].url, tmp_path / "g1", credits_per_hash=10)),
    ]
    try:
        yield backends, gateways
    finally:
        for gw in gateways:
            await gw.close()
        for backend in backends:
            await backend.close()


async def post(port: int, body: JSON, path: str = "/") -> tuple[int, JSON]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{path}", json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_the_proxy_pays_the_cheaper_server_and_fails_over(
    two_gateways: tuple[list[ToyBackend], list[RunningGateway]],
) -> None:
    backends, gateways = two_gateways
    key = ClientKey()
    funder = MiningFunder()
    urls = [f"http://127.0.0.1:{gw.public_port}" for gw in reversed(gateways)]  # dearer first
    proxy = PayingProxy(urls, funder, key=key, probe_interval=3600)
    await proxy.start()
    try:
        body = {"jsonrpc": "2.0", "id": 41, "method": "eth_blockNumber", "params": []}
        for _ in range(3):
            status, answer = await post(proxy.port, body)
            assert status == 200 and answer["id"] == 41
            assert answer["result"] == {"echo": [], "method": "eth_blockNumber"}
        # All three went to the cheaper gateway, paid with one share of 50 credits.
        assert len(backends[0].requests) == 3 and backends[1].requests == []
        account = await gateways[0].ledger.get(key.public)
        assert account is not None and (account.credits_total, account.balance) == (50, 47)
        other = await gateways[1].ledger.get(key.public)  # known from the free probe only
        assert other is None or (other.credits_total, other.credits_used) == (0, 0)
        # A batch, with a notification and an invalid item, and a payment method.
        batch = [
            {"jsonrpc": "2.0", "id": "a", "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "method": "eth_note", "params": []},
            {"jsonrpc": "1.0", "id": "bad", "method": "x"},
            {"jsonrpc": "2.0", "id": "free", "method": "rpc_access_info", "params": {}},
        ]
        status, answer = await post(proxy.port, batch)
        by_id = {a["id"]: a for a in answer}
        assert by_id["a"]["result"]["method"] == "eth_chainId"
        assert by_id["bad"]["error"]["code"] == -32600
        assert by_id["free"]["result"]["credits_per_hash_found"] == 0  # nothing to pay here
        assert len(by_id) == 3
        # The cheaper gateway stops: the next call moves to the other one.
        await gateways[0].close()
        status, answer = await post(proxy.port, body)
        assert status == 200 and answer["result"]["method"] == "eth_blockNumber"
        assert len(backends[1].requests) == 1
        other = await gateways[1].ledger.get(key.public)
        assert other is not None and other.credits_used == 1
        described = {d["url"]: d for d in proxy.describe()}
        assert described[urls[1]]["up"] is False and described[urls[0]]["up"] is True
    finally:
        await proxy.close()
        funder.close()


async def test_the_servers_own_errors_come_back_unchanged(tmp_path: Path) -> None:
    async with ToyBackend() as backend:
        backend.errors["eth_call"] = {"code": 3, "message": "execution reverted", "data": "0x1"}
        gateway = await start_gateway(gateway_config(backend.url, tmp_path / "g"))
        funder = MiningFunder()
        proxy = PayingProxy([f"http://127.0.0.1:{gateway.public_port}"], funder)
        await proxy.start()
        try:
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": []}
            status, answer = await post(proxy.port, body)
            assert status == 200
            assert answer["error"] == {"code": 3, "message": "execution reverted", "data": "0x1"}
            # Not a server failure: it stays up.
            assert proxy.describe()[0]["up"] is True
        finally:
            await proxy.close()
            await gateway.close()
            funder.close()


def test_non_loopback_listen_needs_allow_remote(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rpcpay", "wallet", "--wallet-file", str(tmp_path / "w.json"),
         "proxy", "--listen", "0.0.0.0:0", "--server", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--allow-remote" in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "rpcpay", "wallet", "proxy", "--server", "ftp://x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "http(s) URL" in done.stderr


terms = st.builds(
    ServerTerms,
    url=st.text(min_size=1, max_size=4),
    diff=st.integers(1, 1000),
    credits_per_hash=st.integers(0, 1000),
    latency_s=st.none() | st.floats(0, 5),
    down_until=st.sampled_from([0.0, 50.0, 200.0]),
)


@given(st.lists(terms, max_size=6, unique_by=lambda t: t.url), st.floats(0.01, 5))
def test_ranking_is_an_order_of_every_server(servers: list[ServerTerms], bound: float) -> None:
    ranked = rank_servers(servers, ["m"], bound, now=100.0)
    assert sorted(t.url for t in ranked) == sorted(t.url for t in servers)
    fast = [
        t for t in ranked if t.down_until <= 100 and (t.latency_s is None or t.latency_s <= bound)
    ]
    # The servers that are up and fast enough come first, cheapest first.
    assert ranked[: len(fast)] == fast
    costs = [call_cost(t, ["m"]) for t in fast]
    assert costs == sorted(costs)


def test_a_failed_server_goes_last() -> None:
    cheap, dear = ServerTerms("a", 2, 50), ServerTerms("b", 2, 10)
    assert [t.url for t in rank_servers([dear, cheap], ["m"], 1.0, 0.0)] == ["a", "b"]
    cheap = with_failure(cheap, 0.0)
    assert [t.url for t in rank_servers([dear, cheap], ["m"], 1.0, 1.0)] == ["b", "a"]


@pytest.mark.parametrize(
    "body",
    [b"{nope", b"[]", b'{"jsonrpc": "1.0", "id": 1, "method": "m"}', b"[[1], 2]", b'{"id": {}}'],
    ids=range(5),
)
async def test_bad_input_reaches_no_server(
    two_gateways: tuple[list[ToyBackend], list[RunningGateway]], body: bytes
) -> None:
    backends, gateways = two_gateways
    funder = MiningFunder()
    proxy = PayingProxy([f"http://127.0.0.1:{gw.public_port}" for gw in gateways], funder)
    await proxy.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{proxy.port}/", data=body) as response,
        ):
            assert response.status == 200
            answer = await response.json(content_type=None)
        for error in answer if isinstance(answer, list) else [answer]:
            assert error["error"]["code"] in (-32700, -32600, -32602)
        assert all(b.requests == [] for b in backends)
    finally:
        await proxy.close()
        funder.close()


def test_cheque_settings_are_checked_before_listening(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "rpcpay", "wallet", "--wallet-file", str(tmp_path / "w.json"),
            "proxy", "--listen", "127.0.0.1:0", "--server", "http://127.0.0.1:9"]  # fmt: skip
    done = subprocess.run(
        [*base, "--lottery-contract", "0x1234"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "20-byte address" in done.stderr
    done = subprocess.run(
        [*base, "--hash-value-wei", "-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--hash-value-wei" in done.stderr
    # A chain nobody answers at: a clear error before the proxy listens.
    done = subprocess.run(
        [*base, "--lottery-contract", "0x" + "11" * 20, "--chain-url", "http://127.0.0.1:9",
         "--payer-key-file", str(tmp_path / "payer.key")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr
    assert "listening" not in done.stderr
