"""The wallet's real payer meets real gateways (issue 5, task "make them meet").

``LotteryPayer`` — the library behind ``rpcpay wallet lottery-pay`` — pays three gateways
with the lottery rail (``start_gateway``, each at its own credit price, in front of the
toy JSON-RPC backend) through a real stamper, all on anvil over ``JsonRpcChain``. The
servers are given by URL only: the payer learns each payee address and credit price
from ``lottery_info``. A cheque per server per 0.2-second interval; the credits land at
each gateway's price, rounded down to whole credits by the payer so nothing is lost; the
client's key spends them on paid calls; after the reveal the winning gateway claims by
itself, or, if no gateway holds the winning ticket, the payer refunds its prize.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from rpcpay.lottery.cheque import draw_seed, holds_ticket, winning_ticket
from rpcpay.lottery.eip712 import cheque_hash
from rpcpay.lottery.stamper import fee_for
from rpcpay.wallet.client import PayingClient
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.lottery_payer import LotteryPayer, RoundReport, ServerSpec
from rpcpay.wallet.lottery_payer_state import PayerStateFile
from tests.acceptance.conftest import (
    CONFIRMATIONS,
    FEE_BPS,
    PARAMS,
    PRICE,
    LotteryNet,
    all_settled,
    rpc_chain,
    until,
)

pytestmark = pytest.mark.anvil

CREDIT_PRICES = (PRICE, 3 * PRICE, 7 * PRICE)  # wei per credit at gateways 0, 1, 2
INTERVAL_S = 0.2
PER_INTERVAL = 100 * PRICE  # the seed's 100 gwei "a minute", a minute being 0.2 s here
PER_MINUTE = int(PER_INTERVAL * 60 / INTERVAL_S)
ROUNDS = 3
REVEAL_IN = 30


@pytest.mark.parametrize("lottery_net", [CREDIT_PRICES], indirect=True)
async def test_the_wallet_payer_pays_three_real_gateways(
    lottery_net: LotteryNet, tmp_path: Path
) -> None:
    net = lottery_net
    chain = rpc_chain(net.node.url)
    chain.attach(net.contract)
    client = ClientKey()
    # Whole credits of each gateway, rounded down: 100, 33 and 14 credits an interval.
    credits = [PER_INTERVAL // p for p in CREDIT_PRICES]
    values = [c * p for c, p in zip(credits, CREDIT_PRICES, strict=True)]
    per_round = sum(v + fee_for(v, FEE_BPS) for v in values)
    need = max(values) + fee_for(max(values), FEE_BPS)
    # Room for every round, and the payer's margin (a round's worth) left at the last one,
    # so the lottery is used up almost entirely and has a real chance to pay a gateway.
    prize = (ROUNDS - 1) * per_round + 3 * need
    servers = [ServerSpec(f"http://127.0.0.1:{gw.public_port}", None, PER_MINUTE)
               for gw in net.gateways]  # fmt: skip
    reports: list[RoundReport] = []
    try:
        async with aiohttp.ClientSession() as session:
            payer = LotteryPayer(
                chain, net.payer_key, PayerStateFile(tmp_path / "payer.json"), net.stamper_url,
                servers, client, session, interval=INTERVAL_S, prize=prize,
                reveal_blocks=REVEAL_IN,
            )  # fmt: skip
            lines = await payer.prepare()
            assert [payer.gateways[s.url].recipient for s in servers] == [
                k.address for k in net.gateway_keys
            ], lines
            # The first round makes the lottery; anvil mines only on demand: confirm it.
            first = await payer.pay_round()
            assert len(first.created) == 1 and payer.paid_value == 0
            chain.mine(CONFIRMATIONS)

            def record(_line: str) -> None:
                assert payer.last_round is not None
                reports.append(payer.last_round)

            started = asyncio.get_running_loop().time()
            await payer.run(rounds=1 + ROUNDS, progress=record)
            took = asyncio.get_running_loop().time() - started
            assert took >= (ROUNDS - 1) * INTERVAL_S  # one round per interval
            assert [[d.outcome for d in r.deliveries] for r in reports] == [["paid"] * 3] * ROUNDS
            assert [[d.credited for d in r.deliveries] for r in reports] == [credits] * ROUNDS
            assert not any(r.created for r in reports)  # one lottery was enough
        # The credits landed on the client's one account at each gateway, and pay for calls.
        for gw, n in zip(net.gateways, credits, strict=True):
            account = await gw.ledger.get(client.public)
            assert account is not None and account.balance == ROUNDS * n
            async with PayingClient(f"http://127.0.0.1:{gw.public_port}", client) as paying:
                answer = await paying.call("eth_blockNumber", {})
                assert answer["method"] == "eth_blockNumber"
                assert paying.credits == ROUNDS * n - 1
        (lottery,) = payer.state.lotteries
        terms = lottery.terms
        assert lottery.cursor == ROUNDS * per_round <= prize

        # Gossip: every gateway holds its own cheques and the others' sent after its first
        # (earlier ones name a lottery it held nothing in yet), and no fraud was seen.
        async def gossiped() -> bool:
            for d in net.desks:
                ours, kept = await d.ours(terms.id), await d.kept(terms.id)
                if len(ours) != ROUNDS or len(kept) < 3 * ROUNDS - 2 or d.gossip.pending():
                    return False
            return True

        await until(gossiped)
        assert all(d.proofs == [] and d.commits == [] for d in net.desks)

        # --- the reveal: the winning gateway claims by itself, or the payer refunds ----------
        chain.mine(terms.reveal_block + CONFIRMATIONS - chain.block_number())
        ticket = winning_ticket(draw_seed(chain.block_hash(terms.reveal_block), terms.id), prize)
        held = [await d.ours(terms.id) for d in net.desks]
        winner = next(
            (
                i
                for i, ours in enumerate(held)
                if any(holds_ticket(sc.cheque, ticket) for sc in ours)
            ),
            None,
        )
        if winner is not None:
            desk = net.desks[winner]
            before = chain.balance(net.gateway_keys[winner].address)
            await until(lambda: len(desk.claims) == 1)
            onchain = chain.lottery(terms.id)
            assert onchain is not None and onchain.paid_cheque in {
                cheque_hash(sc.cheque) for sc in await desk.ours(terms.id)
            }
            after = chain.balance(net.gateway_keys[winner].address)
            assert after == before + prize - desk.claims[0].fee
        else:
            # A fee cheque or an unused ticket won: nobody claims; the payer takes it back,
            # once every desk has seen it lost (a desk that looks after the refund sees it void).
            await until(lambda: all_settled(net.desks, terms.id))
            chain.mine(PARAMS.redeem_blocks + 1)
            before = chain.balance(net.payer_key.address)
            async with aiohttp.ClientSession() as session:
                payer.session = session
                assert await payer.refund_due(chain.block_number()) == [terms.id]
            assert chain.balance(net.payer_key.address) > before + prize - 10**16
        await until(lambda: all_settled(net.desks, terms.id))
        outcomes = [(await d.store.cheques.outcomes())[terms.id] for d in net.desks]
        assert outcomes == ["claimed" if i == winner else "lost" for i in range(3)]
    finally:
        chain.close()
