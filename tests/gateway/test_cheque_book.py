"""The payee's cheque book (issue 9): the range index finds exactly the overlapping
ranges (against brute force), and peers' cheques stay within their bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rpcpay.gateway.cheque_book import ChequeBook, Kept
from rpcpay.lottery.cheque import Cheque, StampedCheque

LOTTERY = b"\x01" * 32
SIG = b"\x00" * 65


def kept(start: int, value: int, peer: str | None = "p", recipient: bytes = b"r" * 20) -> Kept:
    c = Cheque(LOTTERY, recipient, start, value)
    return Kept(
        StampedCheque(c, SIG, SIG), b"", start.to_bytes(16, "big") + value.to_bytes(16, "big"), peer
    )


@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 20)), max_size=40),
    st.tuples(st.integers(0, 220), st.integers(1, 40)),
)
def test_overlapping_is_exactly_the_brute_force_answer(
    ranges: list[tuple[int, int]], probe: tuple[int, int]
) -> None:
    book = ChequeBook()
    inserted = []
    for start, value in ranges:
        k = kept(start, value, None)
        # Only non-overlapping ranges go in; the brute force agrees on which.
        clash = any(s < start + value and start < s + v for s, v in inserted)
        assert book.add_ours(k) is not clash
        if not clash:
            inserted.append((start, value))
    s, v = probe
    found = {(k.start, k.end - k.start) for k in book.overlapping(LOTTERY, s, s + v)}
    assert found == {(a, b) for a, b in inserted if a < s + v and s < a + b}


def test_a_sender_keeps_its_newest_and_a_recipient_its_share() -> None:
    book = ChequeBook(per_peer=10, per_recipient=6, max_peers=2)
    for n in range(20):
        book.add_peers(kept(2 * n, 1, "a", recipient=bytes([n % 2]) * 20))
    # Recipient 0 and 1 each got 6 kept; the sender's FIFO holds at most 10.
    assert book.peers_kept() <= 10 + 2
    assert len(book.overlapping(LOTTERY, 0, 10**6)) <= 10
    # Senders beyond max_peers share one FIFO; ours are never bounded.
    for n in range(50):
        assert book.add_ours(kept(1_000 + 2 * n, 1, None))
    assert len(book.ours(LOTTERY)) == 50
    book.drop_lottery(LOTTERY)
    assert book.overlapping(LOTTERY, 0, 10**6) == [] and book.peers_kept() >= 0
