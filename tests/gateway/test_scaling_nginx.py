"""docs/scaling.md's nginx configuration, as written, in front of two gateways (Debian's nginx).

The upstream block and the location are the document's, verbatim; only the addresses change
(the gateways' free ports for 18089 and 18090) and TLS (nginx listens on plain HTTP on a free
loopback port instead of 443). Checked: calls are spread over both instances, the abuse
budgets are per instance and per real client (the gateways trust nginx's X-Forwarded-For),
and when one instance is down every call still gets through the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from rpcpay.gateway.client_address import parse_trusted_proxies
from rpcpay.gateway.limits import AbuseLimits
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, gateway_config, rpc
from tests.support.monerod import free_port
from tests.support.nginx import nginx_with

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
DOC_PORTS = ("127.0.0.1:18089", "127.0.0.1:18090")


def doc_nginx_block() -> str:
    """The document's nginx example (the one with the ``rpcpay`` upstream)."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(), re.S)
    (block,) = [b for b in blocks if "upstream rpcpay {" in b]
    return block


def runnable(block: str, instance_ports: tuple[int, int], port: int) -> str:
    """The block with test ports, plain HTTP on ``port`` instead of TLS on 443."""
    for doc_address, instance_port in zip(DOC_PORTS, instance_ports, strict=True):
        assert doc_address in block
        block = block.replace(doc_address, f"127.0.0.1:{instance_port}")
    kept = [
        line
        for line in block.splitlines()
        if not line.strip().startswith(("listen ", "ssl_", "server_name "))
    ]
    text = "\n".join(kept)
    assert text.count("server {\n") == 1
    return text.replace("server {\n", f"server {{\n    listen 127.0.0.1:{port};\n")


async def new_client(url: str, source: str) -> bool:
    """Introduce a fresh client id from ``source``; True if the gateway accepted it."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    body = rpc("rpc_access_info", {"client": ClientKey().client_id()})
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url + "/json_rpc", json=body) as response,
    ):
        assert response.status == 200
        answer = await response.json()
    return "result" in answer


async def two_gateways(backend: ToyBackend, tmp_path: Path, burst: float) -> list[RunningGateway]:
    limits = AbuseLimits(new_clients_burst=burst, new_clients_per_second=1e-6)
    proxies = parse_trusted_proxies(["127.0.0.1/32"])
    return [
        await start_gateway(
            gateway_config(backend.url, tmp_path / name, limits=limits, proxies=proxies)
        )
        for name in ("a", "b")
    ]


async def test_doc_nginx_spreads_calls_and_budgets_are_per_instance(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    gateways = await two_gateways(toy_backend, tmp_path, burst=2)
    try:
        ports = (gateways[0].public_port, gateways[1].public_port)
        port = free_port()
        http = runnable(doc_nginx_block(), ports, port)
        with nginx_with(http, port, tmp_path / "nginx") as proxy:
            # Round robin: each instance admits two new ids from 127.0.0.5, four in all ...
            for _ in range(4):
                assert await new_client(proxy.url, "127.0.0.5")
            # ... and then neither admits a fifth.
            assert not await new_client(proxy.url, "127.0.0.5")
            assert not await new_client(proxy.url, "127.0.0.5")
            # Another client behind the same nginx has budgets of its own.
            assert await new_client(proxy.url, "127.0.0.6")
            assert "emerg" not in proxy.error_log()
    finally:
        for gateway in gateways:
            await gateway.close()


async def test_doc_nginx_moves_on_when_an_instance_is_down(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    gateways = await two_gateways(toy_backend, tmp_path, burst=50)
    try:
        ports = (gateways[0].public_port, gateways[1].public_port)
        port = free_port()
        with nginx_with(runnable(doc_nginx_block(), ports, port), port, tmp_path / "nginx") as px:
            await gateways.pop(0).close()
            # Instance a refuses connections: every call is passed to b.
            for n in range(6):
                assert await new_client(px.url, f"127.0.0.{10 + n}")
    finally:
        for gateway in gateways:
            await gateway.close()
