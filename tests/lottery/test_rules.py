"""The payee's checks: one test per refusal, and the fraud-proof rule as an invariant."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.lottery.cheque import Domain
from rpcpay.lottery.eip712 import cheque_hash
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.rules import (
    Accepted,
    ChequeRefusal,
    PayeePolicy,
    Refused,
    check_cheque,
    find_overlap,
    is_fraud_pair,
)
from rpcpay.lottery.state import LotteryState, StamperState
from tests.lottery.conftest import ACTIVE, Cast

HEAD = 900  # reveal at 1000, margin 20


def policy(cast: Cast, **changes: object) -> PayeePolicy:
    p = PayeePolicy(recipient=cast.payee.address, domain=cast.domain, min_stamper_deposit=10**17)
    return replace(p, **changes)  # type: ignore[arg-type]


def test_good_cheque_is_accepted_at_its_value(cast: Cast) -> None:
    sc = cast.stamped(100, 25)
    out = check_cheque(cast.domain, sc, policy(cast), cast.lottery(), ACTIVE, HEAD)
    assert out == Accepted(value=25, cheque_id=cheque_hash(sc.cheque))


def refusal(
    cast: Cast,
    sc: object = None,
    domain: Domain | None = None,
    pol: PayeePolicy | None = None,
    lottery: LotteryState | str | None = "default",
    stamper: StamperState | str | None = "default",
    head: int = HEAD,
    held: tuple[object, ...] = (),
) -> ChequeRefusal | None:
    out = check_cheque(
        domain or cast.domain,
        sc or cast.stamped(100, 25),  # type: ignore[arg-type]
        pol or policy(cast),
        cast.lottery() if lottery == "default" else lottery,  # type: ignore[arg-type]
        ACTIVE if stamper == "default" else stamper,  # type: ignore[arg-type]
        head,
        held,  # type: ignore[arg-type]
    )
    return out.reason if isinstance(out, Refused) else None


def test_each_refusal(cast: Cast) -> None:
    other = EthKey(b"\x09" * 32)
    d = cast.domain
    R = ChequeRefusal
    assert refusal(cast, domain=Domain(1, d.contract)) is R.WRONG_CHAIN
    assert refusal(cast, domain=Domain(d.chain_id, b"\xdd" * 20)) is R.WRONG_CONTRACT
    assert refusal(cast, cast.stamped(0, 1, recipient=other.address)) is R.WRONG_RECIPIENT
    assert refusal(cast, lottery=None) is R.UNKNOWN_LOTTERY
    assert refusal(cast, lottery=cast.lottery(id=b"\0" * 32)) is R.UNKNOWN_LOTTERY
    assert refusal(cast, lottery=cast.lottery(seed=b"\1" * 32)) is R.LOTTERY_SETTLED
    assert refusal(cast, lottery=cast.lottery(paid_cheque=b"\1" * 32)) is R.LOTTERY_SETTLED
    assert refusal(cast, lottery=cast.lottery(refunded=True)) is R.LOTTERY_SETTLED
    assert refusal(cast, head=980) is R.REVEAL_TOO_CLOSE
    assert refusal(cast, head=979) is None
    assert refusal(cast, cast.stamped(5, 0)) is R.EMPTY_RANGE
    assert refusal(cast, cast.stamped(10**18 - 1, 2)) is R.RANGE_OUTSIDE
    assert refusal(cast, cast.stamped(10**18 - 1, 1)) is None
    assert refusal(cast, pol=policy(cast, min_value=26)) is R.BELOW_MINIMUM
    assert refusal(cast, stamper=None) is R.STAMPER_SLASHED
    assert refusal(cast, stamper=replace(ACTIVE, slashed=True)) is R.STAMPER_SLASHED
    low = replace(ACTIVE, deposit=10**17 - 1)
    assert refusal(cast, stamper=low) is R.STAMPER_DEPOSIT_LOW
    zero_min = policy(cast, min_stamper_deposit=0)
    assert refusal(cast, pol=zero_min, stamper=replace(ACTIVE, deposit=0)) is R.STAMPER_DEPOSIT_LOW
    assert refusal(cast, cast.stamped(0, 1, payer=other)) is R.BAD_PAYER_SIGNATURE
    assert refusal(cast, cast.stamped(0, 1, stamper=other)) is R.BAD_STAMP
    # The payer stamping its own cheque is not the lottery's stamper either.
    assert refusal(cast, cast.stamped(0, 1, stamper=cast.payer)) is R.BAD_STAMP
    # Signed for another chain, presented as this chain's: the signature fails.
    foreign = cast.stamped(0, 1, domain=Domain(1, d.contract))
    assert refusal(cast, foreign) is R.BAD_PAYER_SIGNATURE
    # Re-pointed at another lottery of the same payer: the signature fails.
    sc = cast.stamped(0, 1)
    moved = replace(sc, cheque=replace(sc.cheque, lottery=b"\x05" * 32))
    assert refusal(cast, moved, lottery=cast.lottery(id=b"\x05" * 32)) is R.BAD_PAYER_SIGNATURE
    # Garbage signatures refuse, they do not raise.
    junk = replace(sc, payer_sig=b"\xff" * 65)
    assert refusal(cast, junk) is R.BAD_PAYER_SIGNATURE
    held = (cast.stamped(100, 25).cheque,)
    assert refusal(cast, cast.stamped(100, 25), held=held) is R.DUPLICATE
    assert refusal(cast, cast.stamped(124, 1), held=held) is R.OVERLAP
    assert refusal(cast, cast.stamped(125, 1), held=held) is None


def test_exiting_stamper_is_still_accepted(cast: Cast) -> None:
    # Its deposit stays slashable until after every lottery it stamped is over.
    assert refusal(cast, stamper=replace(ACTIVE, exit_block=5000)) is None


def test_find_overlap_ignores_other_lotteries(cast: Cast) -> None:
    a = cast.stamped(0, 10).cheque
    b = cast.stamped(5, 10, lottery=b"\x06" * 32).cheque
    assert find_overlap(a, [b]) is None
    assert find_overlap(a, [cast.stamped(9, 1).cheque]) is not None


spans = st.tuples(st.integers(0, 28), st.integers(1, 12))  # inside a prize of 40


@settings(max_examples=150, deadline=None)
@given(spans, spans)
def test_fraud_pair_exactly_when_ranges_overlap(
    cast: Cast, a: tuple[int, int], b: tuple[int, int]
) -> None:
    lot = cast.lottery(prize=40)
    x = cast.stamped(*a, lottery=lot.id)
    y = cast.stamped(*b, recipient=b"\x44" * 20, lottery=lot.id)
    shared = set(range(a[0], sum(a))) & set(range(b[0], sum(b)))
    assert is_fraud_pair(cast.domain, lot, x, y) == bool(shared)


def test_fraud_pair_needs_the_lotterys_stamper_and_distinct_cheques(cast: Cast) -> None:
    lot = cast.lottery()
    other = EthKey(b"\x0a" * 32)
    x = cast.stamped(0, 10)
    assert not is_fraud_pair(cast.domain, lot, x, x)
    y = cast.stamped(5, 10, recipient=b"\x44" * 20)
    assert is_fraud_pair(cast.domain, lot, x, y)
    # The payer's signature does not matter: a stamp alone certifies the range.
    assert is_fraud_pair(cast.domain, lot, x, cast.stamped(5, 10, payer=other))
    assert not is_fraud_pair(cast.domain, lot, x, cast.stamped(5, 10, stamper=other))
    assert not is_fraud_pair(cast.domain, lot, x, cast.stamped(5, 10, lottery=b"\x06" * 32))
    assert not is_fraud_pair(Domain(1, cast.domain.contract), lot, x, y)
    # Outside the ticket space a range is no cheque at all.
    assert not is_fraud_pair(cast.domain, lot, x, cast.stamped(0, 10**18 + 1))


def test_find_fraud_partner_is_the_first_real_pair(cast: Cast) -> None:
    from rpcpay.lottery.rules import find_fraud_partner

    lot = cast.lottery()
    other = EthKey(b"\x0a" * 32)
    x = cast.stamped(5, 10, recipient=b"\x44" * 20)
    held = [
        cast.stamped(0, 5),  # adjacent: no overlap
        x,  # the very cheque: not its own partner
        cast.stamped(6, 2, stamper=other),  # overlaps, forged stamp
        cast.stamped(8, 10),  # the real partner
    ]
    assert find_fraud_partner(cast.domain, lot, x, held) is held[3]
    assert find_fraud_partner(cast.domain, lot, x, held[:3]) is None


def test_stamper_exposure_counts_our_open_prizes_with_that_stamper(cast: Cast) -> None:
    from rpcpay.lottery.rules import exposure_of

    lot = cast.lottery()  # prize 1 ETH; ACTIVE burns 40% of 3 ETH = 1.2 ETH
    others = [
        replace(lot, id=b"\x01" * 32, prize=2 * 10**17),
        replace(lot, id=b"\x02" * 32, prize=10**17, stamper=b"\x05" * 20),  # another stamper
        replace(lot, prize=10**18),  # this very lottery: counted once, as the cheque's
    ]
    exposed = exposure_of(lot.stamper, lot.id, others)
    assert exposed == 2 * 10**17
    sc = cast.stamped(100, 25)
    ok = check_cheque(cast.domain, sc, policy(cast), lot, ACTIVE, HEAD, (), exposed)
    assert isinstance(ok, Accepted)  # 1.2 ETH of burn covers 1.2 ETH of prizes exactly
    over = check_cheque(cast.domain, sc, policy(cast), lot, ACTIVE, HEAD, (), exposed + 1)
    assert over == Refused(ChequeRefusal.STAMPER_EXPOSURE)
    # The burnt share is the contract's: with none burnt, no deposit covers any prize.
    none = check_cheque(cast.domain, sc, policy(cast, burnt_bps=0), lot, ACTIVE, HEAD)
    assert none == Refused(ChequeRefusal.STAMPER_EXPOSURE)


def test_account_signature_is_the_payers_for_this_client(cast: Cast) -> None:
    from rpcpay.lottery.eip712 import sign_credit
    from rpcpay.lottery.rules import check_account_signature

    sc, lot, account = cast.stamped(100, 25), cast.lottery(), b"\x44" * 32
    good = sign_credit(cast.payer, cast.domain, sc.cheque, account)
    assert check_account_signature(cast.domain, sc, lot, account, good) is None
    bad = Refused(ChequeRefusal.BAD_ACCOUNT_SIGNATURE)
    assert check_account_signature(cast.domain, sc, lot, b"\x45" * 32, good) == bad
    by_stamper = sign_credit(cast.stamper, cast.domain, sc.cheque, account)
    assert check_account_signature(cast.domain, sc, lot, account, by_stamper) == bad
    assert check_account_signature(cast.domain, sc, lot, account, b"\0" * 65) == bad
