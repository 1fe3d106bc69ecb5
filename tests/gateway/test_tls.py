"""TLS on the public listener (--rpc-ssl-certificate/--rpc-ssl-private-key) with a self-signed
certificate: paid calls over HTTPS, plain HTTP refused, bad key material refused at start."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from rpcpay.errors import ConfigError
from rpcpay.gateway.server import start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, find_nonce, gateway_config
from tests.support.tls import self_signed


async def test_paid_calls_over_https(toy_backend: ToyBackend, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls")
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", ssl_certificate=cert, ssl_private_key=key)
    )
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        url = f"https://127.0.0.1:{running.public_port}/"
        client_key = ClientKey()
        async with aiohttp.ClientSession() as session:
            body = {"jsonrpc": "2.0", "id": 1, "method": "rpc_access_info",
                    "params": {"client": client_key.client_id()}}  # fmt: skip
            async with session.post(url + "json_rpc", json=body, ssl=trust) as response:
                info = (await response.json())["result"]
            nonce = find_nonce(info)
            body = {"jsonrpc": "2.0", "id": 2, "method": "rpc_access_submit_nonce",
                    "params": {"client": client_key.client_id(), "nonce": nonce,
                               "cookie": info["cookie"]}}  # fmt: skip
            async with session.post(url + "json_rpc", json=body, ssl=trust) as response:
                assert (await response.json())["result"]["credits"] == 50
            body = {"jsonrpc": "2.0", "id": 3, "method": "eth_call", "params": [],
                    "client": client_key.client_id()}  # fmt: skip
            async with session.post(url, json=body, ssl=trust) as response:
                answer = await response.json()
            assert answer["credits"] == 49 and len(toy_backend.requests) == 1
            # Plain HTTP to the TLS port gets no answer.
            with pytest.raises(aiohttp.ClientError):
                async with session.post(
                    f"http://127.0.0.1:{running.public_port}/", json=body
                ) as response:
                    await response.read()
    finally:
        await running.close()


@pytest.mark.parametrize("case", ["only-cert", "missing-key", "wrong-key", "garbage"])
async def test_bad_key_material_is_refused_at_start(
    toy_backend: ToyBackend, tmp_path: Path, case: str
) -> None:
    cert, key = self_signed(tmp_path / "a", "a")
    _, other_key = self_signed(tmp_path / "b", "b")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    settings = {
        "only-cert": {"ssl_certificate": cert},
        "missing-key": {"ssl_certificate": cert, "ssl_private_key": tmp_path / "nope.key"},
        "wrong-key": {"ssl_certificate": cert, "ssl_private_key": other_key},
        "garbage": {"ssl_certificate": garbage, "ssl_private_key": key},
    }[case]
    with pytest.raises(ConfigError, match="--rpc-ssl"):
        await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw", **settings))
