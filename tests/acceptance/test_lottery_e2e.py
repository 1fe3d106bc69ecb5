"""Issue 5 end to end on anvil: one contract, one stamper service, three gateways with the
lottery rail (each its own JsonRpcChain from --lottery-chain-url, gossiping to the other
two), a payer that deposits into a lottery and pays all three every "minute" through the
stamper; credits land at each gateway's price and pay for calls; after the reveal the
winner's gateway claims by itself (or, if the stamper's fee cheque won, the payer is
refunded); then a colluding stamper stamps the same tickets to two gateways, gossip
catches it and it is slashed automatically, with the spec's 10/50/40 split."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import pytest

from rpcpay.chain import JsonRpcChain
from rpcpay.lottery.cheque import (
    Cheque,
    LotteryTerms,
    StampedCheque,
    draw_seed,
    encode_stamped,
    holds_ticket,
    winning_ticket,
)
from rpcpay.lottery.eip712 import cheque_hash, sign_cheque, sign_stamp
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.stamper import StamperPolicy, StampRequest, fee_cheque
from rpcpay.lottery.stamper_wire import request_to_json, result_from_json
from rpcpay.wallet.keys import ClientKey
from tests.acceptance.conftest import (
    CONFIRMATIONS,
    DEPOSIT,
    FEE_BPS,
    PARAMS,
    PRICE,
    LotteryNet,
    until,
)
from tests.gateway.conftest import post, rpc
from tests.support.lottery import pay_params

pytestmark = pytest.mark.anvil

PER_MINUTE = 100 * PRICE  # the seed's 100 gwei a minute per server
ROUNDS = 3
INTERVAL_S = 0.2  # "a minute"


class Payer:
    """The payer's steps from docs/lottery.md §12, with library calls."""

    def __init__(self, chain: JsonRpcChain, key: EthKey, stamper_url: str, fee_bps: int) -> None:
        self.chain, self.key, self.url = chain, key, stamper_url
        self.fee_bps = fee_bps
        self.client = ClientKey()
        self.cursor = 0
        self.terms: LotteryTerms | None = None

    def create(self, stamper: bytes, prize: int, reveal_in: int) -> LotteryTerms:
        head = self.chain.block_number()
        self.terms, _ = self.chain.create_lottery(
            self.key, stamper, prize, head + reveal_in, os.urandom(32)
        )
        self.chain.mine(CONFIRMATIONS)
        self.cursor = 0
        return self.terms

    async def pay(self, http: aiohttp.ClientSession, recipient: bytes, port: int) -> Any:
        assert self.terms is not None
        domain = self.chain.domain
        c = Cheque(self.terms.id, recipient, self.cursor, PER_MINUTE)
        fee = fee_cheque(StamperPolicy(self.terms.stamper, domain, self.fee_bps), c)
        assert fee is not None
        request = StampRequest(
            c, sign_cheque(self.key, domain, c), sign_cheque(self.key, domain, fee)
        )
        self.cursor = c.end + fee.value  # persisted before sending, in a real wallet
        async with http.post(self.url + "/stamp", json=request_to_json(request)) as answer:
            assert answer.status == 200, await answer.text()
            stamped_domain, stamped, next_start = result_from_json(await answer.json())
        assert next_start == self.cursor
        wire = encode_stamped(stamped_domain, stamped).hex()
        _, reply = await post(
            port,
            "/json_rpc",
            rpc("lottery_pay_cheque", pay_params(self.client, wire, self.key)),
        )
        return reply


async def test_three_gateways_a_claim_and_a_colluding_stamper_slashed(
    lottery_net: LotteryNet,
) -> None:
    net = lottery_net
    chain, stamper_key, payer_key, cheater = net.chain, net.stamper_key, net.payer_key, net.cheater
    gateway_keys, gateways, stamper = net.gateway_keys, net.gateways, net.stamper
    desks = [gw.cheques for gw in gateways]
    assert all(d is not None for d in desks)

    # --- the payer: one deposit, a cheque to each gateway every "minute" ----------------
    fee = -(-PER_MINUTE * FEE_BPS // 10_000)
    prize = ROUNDS * 3 * (PER_MINUTE + fee)  # every ticket is handed out
    payer = Payer(chain, payer_key, f"http://127.0.0.1:{stamper.port}", FEE_BPS)
    terms = payer.create(stamper_key.address, prize, reveal_in=30)
    async with aiohttp.ClientSession() as http:
        for _ in range(ROUNDS):
            for i, gw in enumerate(gateways):
                reply = await payer.pay(http, gateway_keys[i].address, gw.public_port)
                assert reply["result"]["credited"] == PER_MINUTE // PRICE, reply
            await asyncio.sleep(INTERVAL_S)
    for gw in gateways:
        account = await gw.ledger.get(payer.client.public)
        assert account is not None and account.balance == ROUNDS * PER_MINUTE // PRICE
        # The credits pay for calls.
        _, call = await post(
            gw.public_port, "/", rpc("eth_call", [], client=payer.client.client_id())
        )
        assert call["credits"] == ROUNDS * PER_MINUTE // PRICE - 1
    # Honest gossip: each gateway keeps the others' cheques once it holds one of its own in
    # the lottery (the first round's may come before), and sees no fraud.
    await until(
        lambda: all(len(d.gossip._peers) == 2 and d.gossip.pending() == 0 for d in desks if d)
    )
    for d in desks:
        assert d is not None and len(d.ours(terms.id)) == ROUNDS
        assert 2 * (ROUNDS - 1) <= len(d.kept(terms.id)) - ROUNDS <= 2 * ROUNDS
        assert d.proofs == [] and d.commits == []

    # --- the reveal, and the winner's automatic claim ----------------------------------
    chain.mine(terms.reveal_block + CONFIRMATIONS - chain.block_number())
    ticket = winning_ticket(draw_seed(chain.block_hash(terms.reveal_block), terms.id), prize)
    winner = next(
        (
            i
            for i, d in enumerate(desks)
            if d and any(holds_ticket(sc.cheque, ticket) for sc in d.ours(terms.id))
        ),
        None,
    )
    if winner is not None:
        desk = desks[winner]
        assert desk is not None
        await until(lambda: len(desk.claims) == 1)
        lottery = chain.lottery(terms.id)
        assert lottery is not None and lottery.paid_cheque in {
            cheque_hash(sc.cheque) for sc in desk.ours(terms.id)
        }
        assert sum(e.topics[0] != b"" for e in desk.claims[0].logs) >= 1
    else:
        # The stamper's fee cheque holds the ticket (nobody claims it): refund path.
        chain.mine(terms.reveal_block + PARAMS.redeem_blocks + 1 - chain.block_number())
        before = chain.balance(payer_key.address)
        receipt = chain.refund(payer_key, terms.id)
        assert chain.balance(payer_key.address) == before + prize - receipt.fee
    await until(lambda: all(d is not None and terms.id in d.store.outcomes() for d in desks))
    for i, d in enumerate(desks):
        assert d is not None
        assert d.store.outcomes()[terms.id] == ("claimed" if i == winner else "lost")
        assert len(d.claims) == (1 if i == winner else 0)

    # --- a colluding stamper: the same tickets stamped to gateways 0 and 1 --------------
    balances = [chain.balance(k.address) for k in gateway_keys[:3]]
    burnt_before = chain.burnt()
    head = chain.block_number()
    bad_terms, _ = chain.create_lottery(
        payer_key, cheater.address, 10**15, head + 40, os.urandom(32)
    )
    chain.mine(CONFIRMATIONS)
    domain = chain.domain

    def colluding(recipient: bytes) -> str:
        c = Cheque(bad_terms.id, recipient, 0, PER_MINUTE)
        sc = StampedCheque(c, sign_cheque(payer_key, domain, c), sign_stamp(cheater, domain, c))
        return encode_stamped(domain, sc).hex()

    for i in (0, 1):
        _, reply = await post(
            gateways[i].public_port,
            "/json_rpc",
            rpc(
                "lottery_pay_cheque",
                pay_params(payer.client, colluding(gateway_keys[i].address), payer_key),
            ),
        )
        # Whichever arrives after the other's gossip is refused as an overlap.
        assert "result" in reply or reply["error"]["message"].startswith("overlap:"), reply
    await until(lambda: chain.stamper(cheater.address).slashed)
    await until(lambda: sum(len(d.proofs) for d in desks if d) == 1)
    await asyncio.sleep(0.5)  # let the losers of the race finish
    (filer,) = [i for i, d in enumerate(desks) if d and d.proofs]
    desk = desks[filer]
    assert desk is not None
    assert sum(len(d.proofs) for d in desks if d) == 1
    reward = DEPOSIT * PARAMS.whistleblower_bps // 10_000
    spent = sum(r.fee for r in desk.proofs + desk.commits)
    assert chain.balance(gateway_keys[filer].address) - balances[filer] == reward - spent
    assert chain.pool(cheater.address) == DEPOSIT * PARAMS.compensation_bps // 10_000
    assert chain.burnt() - burnt_before == DEPOSIT - reward - chain.pool(cheater.address)
    # Every gateway refuses the cheater's cheques from now on (once the slash is confirmed).
    chain.mine(CONFIRMATIONS)
    fresh = Cheque(bad_terms.id, gateway_keys[2].address, 10 * PER_MINUTE, PER_MINUTE)
    sc = StampedCheque(
        fresh, sign_cheque(payer_key, domain, fresh), sign_stamp(cheater, domain, fresh)
    )
    _, reply = await post(
        gateways[2].public_port,
        "/json_rpc",
        rpc(
            "lottery_pay_cheque",
            pay_params(payer.client, encode_stamped(domain, sc).hex(), payer_key),
        ),
    )
    assert reply["error"]["message"].startswith("stamper_slashed:"), reply
