"""Ticket ranges, lottery ids, the draw and the wire form."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.lottery.cheque import (
    MAX_PRIZE,
    STAMPED_CHEQUE_LENGTH,
    Cheque,
    Domain,
    LotteryTerms,
    StampedCheque,
    decode_stamped,
    draw_seed,
    encode_stamped,
    holds_ticket,
    in_ticket_space,
    ranges_overlap,
    winning_ticket,
)
from rpcpay.wire.keccak import keccak256

LOT = b"\x01" * 32
R = b"\x02" * 20


def cheque(start: int, value: int) -> Cheque:
    return Cheque(lottery=LOT, recipient=R, start=start, value=value)


small = st.integers(0, 40)


@given(small, small, small, small)
def test_overlap_is_set_intersection(a0: int, an: int, b0: int, bn: int) -> None:
    a, b = cheque(a0, an), cheque(b0, bn)
    tickets_a, tickets_b = set(range(a0, a0 + an)), set(range(b0, b0 + bn))
    assert ranges_overlap(a, b) == bool(tickets_a & tickets_b) == ranges_overlap(b, a)


@given(small, small, st.integers(1, 40))
def test_in_ticket_space_is_subset(start: int, value: int, prize: int) -> None:
    tickets = set(range(start, start + value))
    assert in_ticket_space(cheque(start, value), prize) == (
        bool(tickets) and tickets <= set(range(prize))
    )


@given(small, small, small)
def test_holds_ticket(start: int, value: int, ticket: int) -> None:
    assert holds_ticket(cheque(start, value), ticket) == (ticket in range(start, start + value))


def test_in_ticket_space_near_uint256_max() -> None:
    # start + value would overflow a uint256: still simply "outside".
    assert not in_ticket_space(cheque(2**256 - 1, 2**256 - 1), MAX_PRIZE - 1)


def test_cheque_and_terms_validation() -> None:
    with pytest.raises(ValueError):
        Cheque(lottery=b"x", recipient=R, start=0, value=1)
    with pytest.raises(ValueError):
        Cheque(lottery=LOT, recipient=b"x", start=0, value=1)
    with pytest.raises(ValueError):
        Cheque(lottery=LOT, recipient=R, start=-1, value=1)
    with pytest.raises(ValueError):
        Cheque(lottery=LOT, recipient=R, start=0, value=2**256)
    for prize in (0, MAX_PRIZE):
        with pytest.raises(ValueError):
            LotteryTerms(payer=R, stamper=R, prize=prize, reveal_block=1, salt=LOT)
    with pytest.raises(ValueError):
        StampedCheque(cheque=cheque(0, 1), payer_sig=b"\0" * 64, stamp_sig=b"\0" * 65)


def test_lottery_id_commits_to_every_term() -> None:
    base = LotteryTerms(payer=R, stamper=b"\x03" * 20, prize=5, reveal_block=9, salt=LOT)
    variants = [
        LotteryTerms(b"\x04" * 20, base.stamper, 5, 9, LOT),
        LotteryTerms(R, b"\x04" * 20, 5, 9, LOT),
        LotteryTerms(R, base.stamper, 6, 9, LOT),
        LotteryTerms(R, base.stamper, 5, 10, LOT),
        LotteryTerms(R, base.stamper, 5, 9, b"\x02" * 32),
    ]
    assert len({base.id, *(v.id for v in variants)}) == 6
    # abi.encode of (address, address, uint256, uint256, bytes32), hashed.
    assert base.id == keccak256(
        R.rjust(32, b"\0") + base.stamper.rjust(32, b"\0")
        + (5).to_bytes(32, "big") + (9).to_bytes(32, "big") + LOT
    )  # fmt: skip


def test_draw_is_keyed_by_lottery() -> None:
    h = keccak256(b"block")
    s1, s2 = draw_seed(h, LOT), draw_seed(h, b"\x09" * 32)
    assert s1 != s2
    assert winning_ticket(s1, 1000) == int.from_bytes(s1, "big") % 1000
    with pytest.raises(ValueError):
        winning_ticket(s1, 0)
    with pytest.raises(ValueError):
        draw_seed(b"short", LOT)


@given(
    st.integers(0, 2**64 - 1),
    st.binary(min_size=20, max_size=20),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
    st.binary(min_size=65, max_size=65),
    st.binary(min_size=65, max_size=65),
)
def test_wire_round_trip(
    chain_id: int, contract: bytes, start: int, value: int, ps: bytes, ss: bytes
) -> None:
    d = Domain(chain_id=chain_id, contract=contract)
    sc = StampedCheque(cheque=cheque(start, value), payer_sig=ps, stamp_sig=ss)
    wire = encode_stamped(d, sc)
    assert len(wire) == STAMPED_CHEQUE_LENGTH == 274
    assert decode_stamped(wire) == (d, sc)


def test_wire_refuses_other_lengths_and_big_chain_ids() -> None:
    sc = StampedCheque(cheque=cheque(0, 1), payer_sig=b"\0" * 65, stamp_sig=b"\0" * 65)
    wire = encode_stamped(Domain(1, b"\0" * 20), sc)
    for bad in (wire[:-1], wire + b"\0", b""):
        with pytest.raises(ValueError):
            decode_stamped(bad)
    with pytest.raises(ValueError):
        encode_stamped(Domain(2**64, b"\0" * 20), sc)
