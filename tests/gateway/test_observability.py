"""/healthz, /readyz, /metrics and the access log, read after known traffic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from rpcpay.gateway.server import start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, earn_share, gateway_config, post, rpc

REPO = Path(__file__).resolve().parents[2]


async def get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response,
    ):
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_and_access_log_count_known_traffic(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    log_path = tmp_path / "access.jsonl"
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", access_log=log_path)
    )
    try:
        key = ClientKey()
        port = running.public_port
        # One good share: 50 credits.
        assert (await earn_share(port, key))["result"]["credits"] == 50
        # Three paid calls, one unsigned, one the backend fails (refunded).
        for _ in range(3):
            _, answer = await post(port, "/", rpc("eth_call", [], client=key.client_id()))
            assert "result" in answer and answer["credits"] > 0
        _, answer = await post(port, "/", rpc("eth_call", []))
        toy_backend.failing = True
        _, answer = await post(port, "/", rpc("eth_call", [], client=key.client_id()))
        assert answer["error"]["code"] != 0
        toy_backend.failing = False

        status, text = await get(running.admin_port, "/metrics")
        assert status == 200
        got = samples(text)
        call = "rpcpay_calls_total"
        assert got[(call, (("method", "eth_call"), ("outcome", "paid")))] == 3
        assert got[(call, (("method", "eth_call"), ("outcome", "unpaid")))] == 1
        assert got[(call, (("method", "eth_call"), ("outcome", "upstream_error")))] == 1
        assert got[(call, (("method", "rpc_access_submit_nonce"), ("outcome", "ok")))] == 1
        assert got[("rpcpay_credits_earned_total", (("rail", "hash"),))] == 50
        assert got[("rpcpay_credits_spent_total", ())] == 4
        assert got[("rpcpay_credits_refunded_total", ())] == 1
        assert got[("rpcpay_shares_total", (("verdict", "good"),))] == 1
        assert got[("rpcpay_verify_seconds_count", ())] == 1
        assert got[("rpcpay_upstream_errors_total", ())] == 1
        # Four calls forwarded (three paid, one failed).
        assert got[("rpcpay_upstream_seconds_count", ())] == 4
        assert got[("rpcpay_ledger_seconds_count", (("op", "pay"),))] == 4
        assert got[("rpcpay_clients_tracked", ())] == 1
        # The worker frees its slot just after the share is answered: 0, or 1 for a moment.
        assert got[("rpcpay_verifier_queue", ())] in (0, 1)
        assert got[("rpcpay_blocks_found_total", ())] == 0
        assert got[("rpcpay_hashrate", ())] > 0
        # Every series the example Grafana dashboard plots exists (lottery ones need the rail).
        grafana = (REPO / "docs" / "grafana-dashboard.json").read_text()
        for name in set(re.findall(r"rpcpay_[a-z_]+", grafana)):
            if not name.startswith("rpcpay_lottery_"):
                assert name in text, name
    finally:
        await running.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(lines) == 7  # rpc_access_info, submit_nonce, 3 paid, unsigned, failed
    paid = [line for line in lines if line["outcome"] == "paid"]
    assert len(paid) == 3 and all(line["credits"] == 1 for line in paid)
    assert {line["addr"] for line in lines} == {"127.0.0.1"}
    assert all(set(line) == {"ts", "addr", "path", "method", "outcome", "credits", "status",
                             "ms"} for line in lines)  # fmt: skip
    assert key.client_id() not in log_path.read_text()


async def test_health_and_readiness(toy_backend: ToyBackend, tmp_path: Path) -> None:
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", admin_token="s3cret")
    )
    try:
        admin = running.admin_port
        status, body = await get(admin, "/healthz")
        assert status == 200 and json.loads(body) == {"status": "OK"}
        status, body = await get(admin, "/readyz")
        assert status == 200, body
        # The backend answering 5xx is not ready.
        toy_backend.failing = True
        status, body = await get(admin, "/readyz")
        assert status == 503 and "HTTP 500" in json.loads(body)["upstream"]
        toy_backend.failing = False
        # A ledger that cannot be written is not ready either.
        await running.ledger.close()
        status, body = await get(admin, "/readyz")
        assert status == 503 and "closed" in json.loads(body)["ledger"]
        # Metrics are behind the token.
        assert (await get(admin, "/metrics"))[0] == 401
        assert (await get(admin, "/metrics", "s3cret"))[0] == 200
    finally:
        await running.close()


async def test_metrics_off(toy_backend: ToyBackend, tmp_path: Path) -> None:
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw", metrics=False))
    try:
        assert (await get(running.admin_port, "/metrics"))[0] == 404
        assert (await get(running.admin_port, "/healthz"))[0] == 200
    finally:
        await running.close()
