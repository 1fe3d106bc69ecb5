"""The real client address: rightmost-untrusted over forwarding headers, only from trusted
proxies; free loopback and per-address budgets follow it, in process and behind real nginx."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.errors import ConfigError
from rpcpay.gateway.client_address import (
    forwarded_entries,
    parse_ip,
    parse_trusted_proxies,
    pick_client,
    x_forwarded_for_entries,
)
from rpcpay.gateway.limits import AbuseLimits
from rpcpay.gateway.server import start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, gateway_config, post, rpc
from tests.support.nginx import nginx_proxy

PROXIES = parse_trusted_proxies(["10.0.0.0/8", "127.0.0.1"])


def test_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    assert pick_client("203.0.113.9", ["127.0.0.1"], PROXIES) == "203.0.113.9"


def test_trusted_peer_forwards_the_rightmost_untrusted_entry() -> None:
    # The client wrote 127.0.0.1 itself; the proxy appended what it saw.
    chain = ["127.0.0.1", "198.51.100.7", "10.1.2.3"]
    assert pick_client("127.0.0.1", chain, PROXIES) == "198.51.100.7"


def test_all_trusted_chain_gives_the_leftmost() -> None:
    assert pick_client("127.0.0.1", ["10.0.0.2", "10.0.0.1"], PROXIES) == "10.0.0.2"


def test_garbage_from_a_trusted_proxy_is_opaque_and_not_loopback() -> None:
    assert pick_client("127.0.0.1", ["unknown"], PROXIES) == "unknown"


def test_header_forms() -> None:
    assert x_forwarded_for_entries(["a, b", "c"]) == ["a", "b", "c"]
    assert forwarded_entries(['for=192.0.2.60;proto=http, For="[2001:db8::1]:4711"', "by=x"]) == [
        "192.0.2.60",
        "[2001:db8::1]:4711",
        "unknown",
    ]
    assert str(parse_ip("[2001:db8::1]:4711")) == "2001:db8::1"
    assert str(parse_ip("192.0.2.1:80")) == "192.0.2.1"
    assert str(parse_ip("::ffff:127.0.0.1")) == "127.0.0.1"
    assert parse_ip("nonsense") is None


def test_bad_cidr_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--trusted-proxy 'ten'"):
        parse_trusted_proxies(["ten"])


addresses = st.ip_addresses(v=4).map(str)


@given(st.lists(addresses, max_size=5), addresses, st.lists(addresses, max_size=3))
def test_a_client_cannot_choose_its_address(
    claimed: list[str], real: str, proxies_hops: list[str]
) -> None:
    """Whatever the client prepends, behind trusted proxies the answer is its real address
    (unless the real address is itself a trusted proxy's)."""
    trusted = parse_trusted_proxies([*proxies_hops, "127.0.0.1"])
    chain = [*claimed, real, *proxies_hops]
    picked = pick_client("127.0.0.1", chain, trusted)
    if not trusted.trusts(ipaddress.ip_address(real)):
        assert picked == real


# -- in the gateway -----------------------------------------------------------------------


async def _charged(port: int, headers: dict[str, str]) -> bool:
    """Is an unpaid priced call refused (charged) rather than served free?"""
    _, answer = await post(port, "/", rpc("eth_getLogs", [], client=""), headers)
    return "error" in answer or answer.get("result", {}).get("status") is not None


@pytest.mark.parametrize(
    ("trusted", "headers", "charged"),
    [
        ([], {}, False),
        ([], {"X-Forwarded-For": "203.0.113.9"}, False),  # header ignored: peer is loopback
        (["127.0.0.1/32"], {}, False),
        (["127.0.0.1/32"], {"X-Forwarded-For": "203.0.113.9"}, True),
        (["127.0.0.1/32"], {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}, True),
        (["127.0.0.2/32"], {"X-Forwarded-For": "203.0.113.9"}, False),  # peer not trusted
    ],
)
async def test_free_loopback_follows_the_real_address(
    toy_backend: ToyBackend,
    tmp_path: Path,
    trusted: list[str],
    headers: dict[str, str],
    charged: bool,
) -> None:
    config = gateway_config(
        toy_backend.url,
        tmp_path,
        allow_free_loopback=True,
        proxies=parse_trusted_proxies(trusted),
    )
    running = await start_gateway(config)
    try:
        assert await _charged(running.public_port, headers) is charged
        assert (len(toy_backend.requests) == 0) is charged
    finally:
        await running.close()


# -- behind Debian's nginx ------------------------------------------------------------------


async def _new_client(url: str, source: str, headers: dict[str, str] | None = None) -> bool:
    """Introduce a fresh client id from ``source``; True if the gateway accepted it."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    body = rpc("rpc_access_info", {"client": ClientKey().client_id()})
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url + "/json_rpc", json=body, headers=headers or {}) as response,
    ):
        answer = await response.json()
    return "result" in answer


async def test_behind_nginx_budgets_are_per_real_client(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    limits = AbuseLimits(new_clients_burst=2, new_clients_per_second=1e-6)
    config = gateway_config(
        toy_backend.url,
        tmp_path / "gw",
        limits=limits,
        proxies=parse_trusted_proxies(["127.0.0.1/32"]),
    )
    running = await start_gateway(config)
    try:
        with nginx_proxy(running.public_port, tmp_path / "nginx") as proxy:
            # 127.0.0.5 spends its two new ids; its third is refused.
            assert await _new_client(proxy.url, "127.0.0.5")
            assert await _new_client(proxy.url, "127.0.0.5")
            assert not await _new_client(proxy.url, "127.0.0.5")
            # Another client behind the same proxy is not punished for it ...
            assert await _new_client(proxy.url, "127.0.0.6")
            # ... and cannot pass as someone else by sending the header itself.
            spoof = {"X-Forwarded-For": "127.0.0.7"}
            assert await _new_client(proxy.url, "127.0.0.6", spoof)
            assert not await _new_client(proxy.url, "127.0.0.6", spoof)
            assert await _new_client(proxy.url, "127.0.0.7")
            assert "emerg" not in proxy.error_log()
    finally:
        await running.close()


async def test_without_trust_nginx_is_one_address(toy_backend: ToyBackend, tmp_path: Path) -> None:
    """The problem the flag solves: without it every client behind nginx shares a budget."""
    limits = AbuseLimits(new_clients_burst=2, new_clients_per_second=1e-6)
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw", limits=limits))
    try:
        with nginx_proxy(running.public_port, tmp_path / "nginx") as proxy:
            assert await _new_client(proxy.url, "127.0.0.5")
            assert await _new_client(proxy.url, "127.0.0.5")
            assert not await _new_client(proxy.url, "127.0.0.6")
    finally:
        await running.close()
