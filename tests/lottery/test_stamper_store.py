"""The stamp store: no two stored ranges of a lottery ever overlap, across restarts."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rpcpay.errors import StampStoreError
from rpcpay.lottery.cheque import Cheque, Domain, ranges_overlap
from rpcpay.lottery.stamper import Conflict, Repeat, StampRecord
from rpcpay.lottery.stamper_store import LotteryUsage, Overspend, SqliteStampStore, Stored

DOMAIN = Domain(chain_id=1337, contract=b"\xcc" * 20)
STAMPER = b"\x5a" * 20
LOTTERIES = [b"\x01" * 32, b"\x02" * 32]
RECIPIENTS = [b"\x0a" * 20, b"\x0b" * 20, STAMPER]
PRIZE = 48


def _records(
    lottery: bytes, start: int, value: int, recipient: bytes, fee: int
) -> list[StampRecord]:
    """A request's records: the cheque, and its fee cheque right after it (if any)."""
    out = [StampRecord(Cheque(lottery, recipient, start, value), b"\1" * 65, b"\2" * 65, False, 7)]
    if fee:
        out.append(
            StampRecord(
                Cheque(lottery, STAMPER, start + value, fee), b"\3" * 65, b"\4" * 65, True, 7
            )
        )
    return out


def _open(path: Path, sync: str = "normal") -> SqliteStampStore:
    return SqliteStampStore(path, DOMAIN, STAMPER, synchronous=sync)  # type: ignore[arg-type]


stamp_op = st.tuples(
    st.just("stamp"),
    st.integers(0, 1),  # lottery
    st.integers(0, 44),  # start
    st.integers(1, 8),  # value
    st.integers(0, 2),  # recipient
    st.integers(0, 2),  # fee
)
ops = st.lists(st.one_of(stamp_op, st.just(("restart",))), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_no_two_stamps_ever_overlap_across_restarts(script: list[tuple[object, ...]]) -> None:
    """Against a model: what is stored is exactly what was accepted, and never overlaps."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stamps.sqlite3"
        store = _open(path)
        model: dict[bytes, list[StampRecord]] = {lot: [] for lot in LOTTERIES}
        try:
            for op in script:
                if op[0] == "restart":
                    store.close()
                    store = _open(path)
                    continue
                _, li, start, value, ri, fee = op
                lottery = LOTTERIES[int(li)]  # type: ignore[call-overload]
                new = _records(lottery, start, value, RECIPIENTS[ri], fee)  # type: ignore[arg-type,index]
                held = model[lottery]
                clash = [r for n in new for r in held if ranges_overlap(r.cheque, n.cheque)]
                outcome = store.stamp(PRIZE, new)
                event(type(outcome).__name__)
                if clash and all(r in held for r in new) and len(clash) == len(new):
                    assert outcome == Repeat(tuple(new))
                elif clash:
                    assert isinstance(outcome, Conflict)
                    assert outcome.existing in held
                elif sum(r.cheque.value for r in held + new) > PRIZE:
                    assert isinstance(outcome, Overspend)
                else:
                    assert outcome == Stored(tuple(new))
                    held.extend(new)
            store.close()
            store = _open(path)  # one more restart: everything accepted is still there
            for lottery, held in model.items():
                stored = store.records(lottery)
                assert stored == sorted(held, key=lambda r: r.cheque.start)
                for i, a in enumerate(stored):
                    for b in stored[i + 1 :]:
                        assert not ranges_overlap(a.cheque, b.cheque)
                usage = store.usage(lottery)
                assert usage.stamped == sum(r.cheque.value for r in held) <= PRIZE
                assert usage.next_start == max((r.cheque.end for r in held), default=0)
        finally:
            store.close()


def test_store_is_durable_private_and_bound_to_one_domain(tmp_path: Path) -> None:
    path = tmp_path / "d" / "stamps.sqlite3"
    store = _open(path, "full")
    first = _records(LOTTERIES[0], 0, 10, RECIPIENTS[0], 1)
    assert store.stamp(PRIZE, first) == Stored(tuple(first))
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = _open(path, "full")
    assert again.records(LOTTERIES[0]) == first
    assert again.usage(LOTTERIES[0]) == LotteryUsage(stamped=11, next_start=11)
    assert again.usage(LOTTERIES[1]) == LotteryUsage(0, 0)
    again.close()
    for domain, stamper, what in (
        (Domain(7, DOMAIN.contract), STAMPER, "chain id"),
        (Domain(1337, b"\xdd" * 20), STAMPER, "contract"),
        (DOMAIN, b"\x5b" * 20, "stamper"),
    ):
        with pytest.raises(StampStoreError, match=f"another {what}"):
            SqliteStampStore(path, domain, stamper)


def test_store_refuses_mixed_requests_and_reports_sqlite_failures(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.sqlite3")
    with pytest.raises(ValueError):
        store.stamp(PRIZE, [])
    with pytest.raises(ValueError):
        store.stamp(PRIZE, _records(LOTTERIES[0], 0, 1, RECIPIENTS[0], 0)
                    + _records(LOTTERIES[1], 0, 1, RECIPIENTS[0], 0))  # fmt: skip
    with pytest.raises(ValueError):
        store.stamp(2**128, _records(LOTTERIES[0], 0, 1, RECIPIENTS[0], 0))
    # The last line of defence: never more than the prize stamped, even if a range
    # outside the ticket space got past the rules.
    assert isinstance(store.stamp(10, _records(LOTTERIES[0], 0, 8, RECIPIENTS[0], 0)), Stored)
    assert store.stamp(10, _records(LOTTERIES[0], 8, 5, RECIPIENTS[0], 0)) == Overspend(8, 10)
    assert store.usage(LOTTERIES[0]) == LotteryUsage(stamped=8, next_start=8)
    store.close()
    with pytest.raises(StampStoreError):
        store.records(LOTTERIES[0])  # closed
    bad = tmp_path / "not-a-db.sqlite3"
    bad.write_bytes(b"this is not a database file at all" * 100)
    bad.chmod(0o600)
    with pytest.raises(StampStoreError, match="not-a-db"):
        _open(bad)
