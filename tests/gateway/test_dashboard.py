"""The operator's dashboard in Debian's headless Chromium, after known traffic: clients and
balances, hash rate and credits charts, blocks; the screenshot is kept as a CI artifact
(artifacts/dashboard.png)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp

from rpcpay.gateway.server import start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, earn_share, gateway_config, post, rpc
from tests.support.chromium import headless_chromium

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"


def look_at_dashboard(url: str, profile: Path) -> dict[str, Any]:
    """Open the page in headless Chromium; what it shows, and a screenshot."""
    with headless_chromium(profile) as browser:
        browser.get(url)
        browser.wait_for("return document.querySelectorAll('#clients tbody tr').length === 2")
        text = "return document.getElementById(arguments[0]).textContent"
        seen: dict[str, Any] = {
            "rows": browser.run(
                "return [...document.querySelectorAll('#clients tbody tr')]"
                ".map(r => [...r.cells].map(c => c.textContent))"
            ),
            "balance": browser.run(text, "balance-total"),
            "earned": browser.run(text, "earned"),
            "hashrate": browser.run(text, "hashrate"),
            "points": browser.wait_for(
                "const p = document.querySelector('#chart-earned polyline');"
                "return p && p.getAttribute('points').split(' ').length >= 3 && "
                "p.getAttribute('points')"
            ),
            "lottery_hidden": browser.run("return document.getElementById('lottery').hidden"),
            "status": browser.run("return document.getElementById('status').className"),
        }
        seen["shot"] = str(browser.screenshot(ARTIFACTS / "dashboard.png"))
    return seen


async def test_dashboard_shows_known_traffic(toy_backend: ToyBackend, tmp_path: Path) -> None:
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", dashboard_sample_s=0.2)
    )
    try:
        port = running.public_port
        rich, poor = ClientKey(), ClientKey()
        await earn_share(port, rich)
        await earn_share(port, rich, start=1_000)
        await earn_share(port, poor)
        for _ in range(3):
            await post(port, "/", rpc("eth_call", [], client=poor.client_id()))
        url = f"http://127.0.0.1:{running.admin_port}/dashboard"
        # The browser is driven from a thread: the gateway serves it on this event loop.
        seen = await asyncio.to_thread(look_at_dashboard, url, tmp_path / "profile")
        assert seen["rows"] == [
            [rich.public.hex()[:16], "100", "100", "0", "2", "0"],
            [poor.public.hex()[:16], "47", "50", "3", "1", "0"],
        ]
        assert seen["balance"] == "147" and seen["earned"] == "150"
        assert seen["hashrate"].endswith("H/s") and not seen["hashrate"].startswith("0.0")
        # The charts are drawn from several samples.
        assert len(seen["points"].split(" ")) >= 3
        assert seen["lottery_hidden"] is True and seen["status"] == ""
        assert Path(seen["shot"]).read_bytes().startswith(b"\x89PNG")
    finally:
        await running.close()


async def test_dashboard_needs_the_token_as_basic_auth(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", admin_token="t0k")
    )
    try:
        url = f"http://127.0.0.1:{running.admin_port}/dashboard/data.json"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Basic")
            auth = "Basic " + base64.b64encode(b"op:t0k").decode()
            async with session.get(url, headers={"Authorization": auth}) as response:
                assert response.status == 200
                assert json.loads(await response.text())["client_count"] == 0
            bad = "Basic " + base64.b64encode(b"op:nope").decode()
            async with session.get(url, headers={"Authorization": bad}) as response:
                assert response.status == 401
    finally:
        await running.close()
