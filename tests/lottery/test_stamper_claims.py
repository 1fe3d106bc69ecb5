"""The stamper claims its own winning fee cheques (issue 9), on the in-process chain:
sixteen lotteries each split between a payer's cheque and its fee cheque (a 99.99% fee),
revealed; the stamper's claim loop claims exactly the ones its fee cheque won."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rpcpay.lottery.cheque import Cheque, draw_seed, holds_ticket, winning_ticket
from rpcpay.lottery.eip712 import cheque_hash, sign_cheque
from rpcpay.lottery.stamper import StampRequest, fee_cheque
from rpcpay.lottery.stamper_server import StamperConfig, start_stamper
from tests.chain.conftest import PARAMS, make_world

FEE_BPS = 9_999
VALUE = 10_000
PRIZE = VALUE + 9_999  # the cheque and its fee fill the whole space
#: Each fee cheque wins about half the time. Block timestamps follow the wall clock, so which
#: ones win changes from run to run: with 16, all winning or all losing (which would leave a
#: path untested) has odds of 2 in 65,536.
LOTTERIES = 16


async def test_the_stamper_claims_its_winning_fee_cheques(tmp_path: Path) -> None:
    # Room for every claim: the first lottery's redeem window must outlast the last claim.
    w = make_world(dataclasses.replace(PARAMS, redeem_blocks=2 * LOTTERIES + 8))
    config = StamperConfig(
        bind_port=0, data_dir=tmp_path / "s", fee_bps=FEE_BPS, reveal_margin=2,
        confirmations=1, store_sync="normal", claim_interval_s=3600,
    )  # fmt: skip
    running = await start_stamper(config, w.chain, w.stamper)
    fees = running.fees
    assert fees is not None
    try:
        lotteries = [
            w.lottery(prize=PRIZE, reveal_in=20, salt=bytes([i]) * 32)
            for i in range(1, LOTTERIES + 1)
        ]
        w.chain.mine(1)
        fee_cheques = {}
        for terms in lotteries:
            cheque = Cheque(terms.id, w.alice.address, 0, VALUE)
            fee = fee_cheque(running.service.policy, cheque)
            assert fee is not None and fee.end == PRIZE
            request = StampRequest(
                cheque, sign_cheque(w.payer, w.domain, cheque), sign_cheque(w.payer, w.domain, fee)
            )
            result = await running.service.stamp(request)
            assert not hasattr(result, "reason"), result
            fee_cheques[terms.id] = fee
        await fees.claim_once()  # before the reveal: nothing
        assert fees.claims == []
        # Just past the last reveal: each claim mines a block, and every lottery's redeem
        # window must still be open when its turn comes, in any order.
        w.chain.mine(max(t.reveal_block for t in lotteries) - w.chain.block_number() + 1)
        before = w.chain.balance(w.stamper.address)
        await fees.claim_once()
        won = []
        for terms in lotteries:
            seed = draw_seed(w.chain.block_hash(terms.reveal_block), terms.id)
            if holds_ticket(fee_cheques[terms.id], winning_ticket(seed, terms.prize)):
                won.append(terms.id)
        assert 0 < len(won) < len(lotteries), won
        assert len(fees.claims) == len(won)
        for lottery_id in won:
            state = w.chain.lottery(lottery_id)
            assert state is not None and state.paid_cheque == cheque_hash(fee_cheques[lottery_id])
        gas = sum(r.fee for r in fees.claims)
        assert w.chain.balance(w.stamper.address) == before + len(won) * PRIZE - gas
        # Every lottery is done with; another round claims nothing more.
        assert fees.done == {t.id for t in lotteries}
        await fees.claim_once()
        assert len(fees.claims) == len(won)
    finally:
        await running.close()
