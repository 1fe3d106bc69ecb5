"""One freshness rule for shares and charges: an id used once changes nothing again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from rpcpay.ledger.account import (
    U64_MAX,
    Account,
    apply_payment,
    claim_timestamp,
    is_fresh,
    new_account,
)
from rpcpay.testing import open_test_ledger

KEY = bytes(range(32))
timestamps = st.integers(min_value=0, max_value=U64_MAX)


def funded(last_ts: int) -> Account:
    """An account holding 10,000 credits whose last id was signed at ``last_ts``."""
    return replace(new_account(KEY, 0), balance=10_000, last_request_timestamp_us=last_ts)


@given(timestamps, timestamps)
def test_a_claimed_or_charged_timestamp_is_never_fresh_again(first: int, later: int) -> None:
    claimed = claim_timestamp(funded(0), first)
    if first == 0:
        # A fresh account's last timestamp is 0: an id signed at 0 is a replay already.
        assert claimed is None
        return
    assert claimed is not None and claimed.last_request_timestamp_us == first
    # The same id, or any older one, changes nothing: not a share, not a charge.
    replay = min(first, later)
    assert claim_timestamp(claimed, replay) is None
    after, result = apply_payment(claimed, replay, 1)
    assert after == claimed and not result.ok
    # Only a strictly newer one is fresh; the same-request second charge alone may repeat.
    assert is_fresh(claimed, later) == (later > first)
    assert is_fresh(claimed, first, same_ts=True)


@given(st.lists(timestamps, min_size=1, max_size=20))
def test_claims_only_move_the_timestamp_forward(sent: list[int]) -> None:
    acct = funded(0)
    for ts in sent:
        claimed = claim_timestamp(acct, ts)
        if claimed is not None:
            assert claimed.last_request_timestamp_us > acct.last_request_timestamp_us
            assert claimed.balance == acct.balance
            acct = claimed
    assert acct.last_request_timestamp_us == max([0, *sent])


async def test_a_claim_is_durable_even_without_credit(tmp_path: Path) -> None:
    """A claimed id is in the ledger before the share is hashed, for a client that never
    held a credit too (its account is then marked, so it is stored)."""
    ledger = await open_test_ledger(tmp_path)
    assert await ledger.claim(KEY, 1_000)
    assert not await ledger.claim(KEY, 1_000)
    await ledger.close()
    reopened = await open_test_ledger(tmp_path)
    try:
        assert not await reopened.claim(KEY, 999)
        assert await reopened.claim(KEY, 1_001)
    finally:
        await reopened.close()
