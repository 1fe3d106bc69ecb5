"""The stamper's pure rules: the fee, every refusal, and what counts as an overlap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.lottery.cheque import Cheque, Domain
from rpcpay.lottery.eip712 import sign_cheque
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.stamper import (
    Conflict,
    Fresh,
    Repeat,
    StamperPolicy,
    StampPlan,
    StampRecord,
    StampRefusal,
    StampRefused,
    StampRequest,
    check_request,
    fee_cheque,
    fee_for,
    judge_overlaps,
)
from rpcpay.lottery.state import StamperState
from tests.lottery.conftest import ACTIVE, Cast

HEAD = 900  # the cast's lottery reveals at block 1000


def _policy(cast: Cast, **changes: object) -> StamperPolicy:
    fields: dict[str, object] = {
        "stamper": cast.stamper.address,
        "domain": cast.domain,
        "fee_bps": 100,
        "reveal_margin": 25,
    }
    fields.update(changes)
    return StamperPolicy(**fields)  # type: ignore[arg-type]


def _request(
    cast: Cast,
    start: int,
    value: int,
    *,
    policy: StamperPolicy | None = None,
    payer: EthKey | None = None,
    fee_payer: EthKey | None = None,
    domain: Domain | None = None,
    lottery: bytes | None = None,
) -> StampRequest:
    policy = policy or _policy(cast)
    c = Cheque(lottery or cast.terms.id, cast.payee.address, start, value)
    d = domain or cast.domain
    fee = fee_cheque(policy, c) if value else None
    return StampRequest(
        cheque=c,
        payer_sig=sign_cheque(payer or cast.payer, d, c),
        fee_sig=None if fee is None else sign_cheque(fee_payer or cast.payer, d, fee),
    )


def test_fee_rounds_up_and_follows_the_cheque(cast: Cast) -> None:
    assert [fee_for(v, 100) for v in (1, 99, 100, 101, 10_000)] == [1, 1, 1, 2, 100]
    assert fee_for(12345, 0) == 0
    policy = _policy(cast)
    c = Cheque(cast.terms.id, cast.payee.address, 500, 1000)
    assert fee_cheque(policy, c) == Cheque(cast.terms.id, cast.stamper.address, 1500, 10)
    assert fee_cheque(_policy(cast, fee_bps=0), c) is None
    with pytest.raises(ValueError):
        _policy(cast, fee_bps=10_000)
    with pytest.raises(ValueError):
        _policy(cast, reveal_margin=-1)


def test_an_honest_request_is_planned_with_its_fee(cast: Cast) -> None:
    plan = check_request(_policy(cast), _request(cast, 0, 1000), cast.lottery(), ACTIVE, HEAD)
    assert isinstance(plan, StampPlan)
    (c, _), (fee, _) = plan.cheques
    assert (c.start, c.end, fee.start, fee.end, fee.recipient) == (
        0, 1000, 1000, 1010, cast.stamper.address,
    )  # fmt: skip
    assert plan.next_start == 1010 and plan.prize == cast.terms.prize
    free = _policy(cast, fee_bps=0)
    plan = check_request(free, _request(cast, 0, 1000, policy=free), cast.lottery(), ACTIVE, HEAD)
    assert isinstance(plan, StampPlan) and len(plan.cheques) == 1 and plan.next_start == 1000


def test_each_refusal(cast: Cast) -> None:
    policy = _policy(cast)
    good = _request(cast, 0, 1000)
    prize = cast.terms.prize
    mallory = EthKey(b"\x09" * 32)
    other_stamper = cast.lottery(stamper=mallory.address)
    cases: list[tuple[StampRefusal, StampRequest, object, StamperState, int]] = [
        (StampRefusal.STAMPER_INACTIVE, good, cast.lottery(), StamperState(0, 0, False), HEAD),
        (StampRefusal.STAMPER_INACTIVE, good, cast.lottery(), StamperState(5, 0, True), HEAD),
        (StampRefusal.UNKNOWN_LOTTERY, good, None, ACTIVE, HEAD),
        (StampRefusal.UNKNOWN_LOTTERY, _request(cast, 0, 9, lottery=b"\x01" * 32),
         cast.lottery(), ACTIVE, HEAD),
        (StampRefusal.WRONG_STAMPER, good, other_stamper, ACTIVE, HEAD),
        (StampRefusal.LOTTERY_SETTLED, good, cast.lottery(seed=b"\x01" * 32), ACTIVE, HEAD),
        (StampRefusal.LOTTERY_SETTLED, good, cast.lottery(refunded=True), ACTIVE, HEAD),
        (StampRefusal.REVEAL_TOO_CLOSE, good, cast.lottery(), ACTIVE, 1000 - 25),
        (StampRefusal.EMPTY_RANGE, _request(cast, 0, 0), cast.lottery(), ACTIVE, HEAD),
        (StampRefusal.RANGE_OUTSIDE, _request(cast, prize - 5, 5), cast.lottery(), ACTIVE, HEAD),
        (StampRefusal.RANGE_OUTSIDE, _request(cast, prize, 1), cast.lottery(), ACTIVE, HEAD),
        (StampRefusal.BAD_PAYER_SIGNATURE, _request(cast, 0, 1000, payer=mallory),
         cast.lottery(), ACTIVE, HEAD),
        (StampRefusal.BAD_PAYER_SIGNATURE, _request(cast, 0, 1000, domain=Domain(1, b"\xcc" * 20)),
         cast.lottery(), ACTIVE, HEAD),
        (StampRefusal.BAD_FEE_SIGNATURE, _request(cast, 0, 1000, fee_payer=mallory),
         cast.lottery(), ACTIVE, HEAD),
        (StampRefusal.BAD_FEE_SIGNATURE, StampRequest(good.cheque, good.payer_sig, None),
         cast.lottery(), ACTIVE, HEAD),
        # A fee cheque signed for other terms (here: a 2% fee) is not this stamper's fee.
        (StampRefusal.BAD_FEE_SIGNATURE, _request(cast, 0, 1000, policy=_policy(cast, fee_bps=200)),
         cast.lottery(), ACTIVE, HEAD),
    ]  # fmt: skip
    for reason, request, lottery, own, head in cases:
        refused = check_request(policy, request, lottery, own, head)  # type: ignore[arg-type]
        assert isinstance(refused, StampRefused), reason
        assert refused.reason == reason
        assert len(refused.message) > 15
    # The last block the stamper still stamps at: head + margin < reveal.
    assert isinstance(check_request(policy, good, cast.lottery(), ACTIVE, 1000 - 26), StampPlan)
    # The cheque and its fee end exactly at the prize: inside.
    fits = prize - fee_for(prize // 2, 100) - prize // 2
    assert isinstance(
        check_request(policy, _request(cast, fits, prize // 2), cast.lottery(), ACTIVE, HEAD),
        StampPlan,
    )
    # An exiting stamper still stamps for lotteries that named it: its deposit stays slashable.
    exiting = StamperState(deposit=5, exit_block=2000, slashed=False)
    assert isinstance(check_request(policy, good, cast.lottery(), exiting, HEAD), StampPlan)


def _record(lottery: bytes, start: int, value: int, recipient: bytes = b"\x01" * 20) -> StampRecord:
    return StampRecord(Cheque(lottery, recipient, start, value), b"\1" * 65, b"\2" * 65, False, 0)


def test_judging_overlaps() -> None:
    lot = b"\x07" * 32
    a = _record(lot, 0, 10)
    fee = _record(lot, 10, 1, b"\x02" * 20)
    # Nothing stored overlaps: stamp.
    assert judge_overlaps([Cheque(lot, b"\x01" * 20, 11, 5)], [[]]) == Fresh()
    # The same cheques again: a retried request gets its stamps back.
    assert judge_overlaps([a.cheque, fee.cheque], [[a], [fee]]) == Repeat((a, fee))
    # Another cheque on the same tickets, even for the same recipient: refused.
    moved = Cheque(lot, b"\x01" * 20, 5, 10)
    assert judge_overlaps([moved], [[a, fee]]) == Conflict(a)
    # A repeat of one cheque with a new one beside it is not a repeat.
    assert isinstance(
        judge_overlaps([a.cheque, Cheque(lot, b"\x02" * 20, 10, 2)], [[a], [fee]]), Conflict
    )
    assert isinstance(judge_overlaps([a.cheque, Cheque(lot, b"\x02" * 20, 20, 2)], [[a], []]),
                      Conflict)  # fmt: skip


@given(st.integers(0, 10**6), st.integers(1, 10**9))
def test_fee_is_the_smallest_whole_share(bps: int, value: int) -> None:
    bps %= 10_000
    fee = fee_for(value, bps)
    assert fee * 10_000 >= value * bps
    assert (fee - 1) * 10_000 < value * bps or fee == 0
