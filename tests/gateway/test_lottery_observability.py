"""The lottery rail in /metrics and on the dashboard's data: cheques credited, credits earned
on the lottery rail, fraud proofs filed, lotteries held (on the in-process chain)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from rpcpay.wallet.keys import ClientKey
from tests.chain.conftest import make_world
from tests.gateway.conftest import ToyBackend
from tests.gateway.test_lottery_payee import VALUE, hexed, open_lottery, pay, start_payee, until


async def get_text(port: int, path: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        assert response.status == 200
        return await response.text()


async def test_lottery_counts_and_dashboard_section(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        terms = open_lottery(w)
        client = ClientKey()
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE)))
        assert answer["result"]["credited"] == 10
        # An overlapping stamp: refused, and a fraud proof is filed.
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 5, VALUE)))
        assert answer["error"]["message"].startswith("overlap:")
        desk = gw.cheques
        assert desk is not None
        await until(lambda: len(desk.proofs) == 1)
        got = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(await get_text(gw.admin_port, "/metrics"))
            for s in family.samples
        }
        assert got[("rpcpay_lottery_cheques_total", ())] == 1
        assert got[("rpcpay_credits_earned_total", (("rail", "lottery"),))] == 10
        assert got[("rpcpay_lottery_fraud_proofs_total", ())] == 1
        assert got[("rpcpay_lottery_claims_total", ())] == 0
        assert got[("rpcpay_lottery_open", ())] == 1
        calls = "rpcpay_calls_total"
        assert got[(calls, (("method", "lottery_pay_cheque"), ("outcome", "ok")))] == 1
        assert got[(calls, (("method", "lottery_pay_cheque"), ("outcome", "error")))] == 1
        data = json.loads(await get_text(gw.admin_port, "/dashboard/data.json"))
        assert data["lottery"]["open_lotteries"] == 1 and data["lottery"]["fraud_proofs"] == 1
        assert data["lottery"]["claims"] == 0
        assert data["clients"][0]["balance"] == 10
    finally:
        await gw.close()
