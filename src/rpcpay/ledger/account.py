"""One client's account and monerod 0.18's balance rules, as pure functions.

Every rule here mirrors ``rpc_payment::pay``, ``submit_nonce``, ``balance`` and
``flush_by_age`` in monerod's ``src/rpc/rpc_payment.cpp``: an ``Account`` is never
mutated, each rule returns the account the client would have in monerod after the same
event. Keeping the rules pure lets the ``SharedLedger`` store the new account durably *before*
it adopts it, so a failed write changes no balance.

monerod keeps every value in a ``uint64_t``. Balances and the credit totals therefore
saturate at ``2**64 - 1`` on the way up (``add64clamp``) and clamp at 0 on the way down
(``sub64clamp``). The nonce counters use ``++`` in monerod, which would wrap after
``2**64`` shares; that cannot happen in practice, and saturating instead keeps the
"counters only grow" property true, so the counters saturate too.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import Enum

U64_MAX = 2**64 - 1
"""The largest value a monerod ``uint64_t`` holds."""

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

CLIENT_KEY_LENGTH = 32
"""A client is named by its 32-byte ed25519 public key."""

# Named as in rpc_payment.cpp: multiples of credits_per_hash_found taken on a bad share.
PENALTY_FOR_STALE = 0
PENALTY_FOR_BAD_HASH = 20
PENALTY_FOR_DUPLICATE = 20

# rpc_payment.cpp's DEFAULT_FLUSH_AGE and DEFAULT_ZERO_FLUSH_AGE.
DEFAULT_FLUSH_AGE = 3600 * 24 * 180
DEFAULT_ZERO_FLUSH_AGE = 60 * 2


@dataclass(frozen=True, slots=True)
class Account:
    """What monerod's ``client_info`` holds about credits, without the mining job.

    The job fields (block template, cookie, seen nonces) live in the gateway: they are
    only meaningful for the current chain top and are never worth storing.
    """

    client: bytes  # 32-byte public key
    balance: int
    credits_total: int
    credits_used: int
    nonces_good: int
    nonces_stale: int
    nonces_bad: int
    nonces_dupe: int
    last_request_timestamp_us: int
    update_time: int  # unix seconds

    def __post_init__(self) -> None:
        # A client key is exactly one ed25519 public key.
        if len(self.client) != CLIENT_KEY_LENGTH:
            raise ValueError(f"client key must be {CLIENT_KEY_LENGTH} bytes")
        values = (
            self.balance,
            self.credits_total,
            self.credits_used,
            self.nonces_good,
            self.nonces_stale,
            self.nonces_bad,
            self.nonces_dupe,
            self.last_request_timestamp_us,
            self.update_time,
        )
        # Every number is a monerod uint64_t (one min/max pass: this runs on every change).
        if min(values) < 0 or max(values) > U64_MAX:
            bad = next(n for n, v in zip(_U64_FIELDS, values, strict=True) if not 0 <= v <= U64_MAX)
            raise ValueError(f"{bad}={getattr(self, bad)} is not a u64")


_U64_FIELDS = tuple(f.name for f in fields(Account) if f.name != "client")


class ShareOutcome(Enum):
    """How a submitted nonce was judged (the gateway decides; the ledger only books it)."""

    GOOD = "good"
    STALE = "stale"  # monerod's "Very stale" and "stale" both count here
    BAD = "bad"  # hash does not meet the difficulty
    DUPE = "dupe"  # nonce already submitted for this job


class PaymentRefusal(Enum):
    """Why ``apply_payment`` refused; both make monerod answer "PAYMENT REQUIRED"."""

    TIMESTAMP = "timestamp"  # replayed or out-of-order client id
    CREDITS = "credits"  # not enough credits


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """The outcome of a charge, with what monerod would report to the client.

    ``credits`` is the value for the response's ``credits`` field. monerod's ``pay``
    leaves that output untouched on a timestamp refusal, so the response keeps its
    default of 0: ``credits`` is 0 then, whatever the balance. ``balance`` is the real
    balance after the call, for logs and the admin view.
    """

    ok: bool
    reason: PaymentRefusal | None
    credits: int
    balance: int


def add_saturating(value: int, amount: int) -> int:
    """``add64clamp``: u64 addition that sticks at ``2**64 - 1`` instead of wrapping."""
    return min(value + amount, U64_MAX)


def sub_clamped(value: int, amount: int) -> int:
    """``sub64clamp``: u64 subtraction that stops at 0 instead of wrapping."""
    return max(value - amount, 0)


def new_account(client: bytes, now: int) -> Account:
    """The account monerod creates on a client's first contact (``client_info()``).

    Its ``update_time`` is the creation time, so a fresh zero-balance account is
    forgotten two minutes later unless it earns credits.
    """
    return Account(
        client=client,
        balance=0,
        credits_total=0,
        credits_used=0,
        nonces_good=0,
        nonces_stale=0,
        nonces_bad=0,
        nonces_dupe=0,
        last_request_timestamp_us=0,
        update_time=now,
    )


def is_blank(acct: Account) -> bool:
    """True when the account never held a credit: no balance, none earned, none spent.

    Such an account is worth nothing to its client, and anyone can make millions of
    them with free keys; an account that is also ``is_pristine`` gets no row.
    """
    return acct.balance == 0 and acct.credits_total == 0 and acct.credits_used == 0


def is_pristine(acct: Account) -> bool:
    """True when no call has left a mark on the account: no credit, no share counted, no
    signed client id used. Only its idle clock may differ from a new account's; a store
    keeps no row for it (there is nothing another process would need to know)."""
    return (
        is_blank(acct)
        and acct.last_request_timestamp_us == 0
        and acct.nonces_good == acct.nonces_stale == acct.nonces_bad == acct.nonces_dupe == 0
    )


def apply_payment(
    acct: Account, ts_us: int, payment: int, same_ts: bool = False
) -> tuple[Account, PaymentResult]:
    """Charge ``payment`` credits for a call signed at ``ts_us`` (``rpc_payment::pay``).

    The timestamp must be strictly newer than the last charged one, which stops a
    captured client id from being replayed; ``same_ts`` allows an equal one for the
    calls monerod charges twice per request. On a timestamp refusal nothing changes.
    Otherwise the timestamp is recorded *before* the balance check, so even a call
    refused for lack of credits burns its client id, as in monerod.
    """
    # The payment is a u64.
    if not 0 <= payment <= U64_MAX:
        raise ValueError(f"payment={payment} is not a u64")
    # The timestamp is a u64.
    if not 0 <= ts_us <= U64_MAX:
        raise ValueError(f"ts_us={ts_us} is not a u64")
    # An older timestamp, or a repeated one unless allowed, is a replay.
    if not is_fresh(acct, ts_us, same_ts):
        return acct, PaymentResult(
            ok=False, reason=PaymentRefusal.TIMESTAMP, credits=0, balance=acct.balance
        )
    # The client must hold at least the price (the timestamp is burnt either way).
    if acct.balance < payment:
        stamped = replace(acct, last_request_timestamp_us=ts_us)
        return stamped, PaymentResult(
            ok=False,
            reason=PaymentRefusal.CREDITS,
            credits=stamped.balance,
            balance=stamped.balance,
        )
    # Built field by field rather than with ``replace`` (half the cost: every paid call).
    paid = Account(
        client=acct.client,
        balance=acct.balance - payment,
        credits_total=acct.credits_total,
        credits_used=add_saturating(acct.credits_used, payment),
        nonces_good=acct.nonces_good,
        nonces_stale=acct.nonces_stale,
        nonces_bad=acct.nonces_bad,
        nonces_dupe=acct.nonces_dupe,
        last_request_timestamp_us=ts_us,
        update_time=acct.update_time,
    )
    return paid, PaymentResult(ok=True, reason=None, credits=paid.balance, balance=paid.balance)


def is_fresh(acct: Account, ts_us: int, same_ts: bool = False) -> bool:
    """Whether a client id signed at ``ts_us`` may still change this account.

    One rule for everything that moves a balance or a budget (charged calls,
    ``rpc_access_pay``, submitted shares): the signed timestamp must be strictly newer than
    the last one the client used, so a captured id is worth nothing once its owner sent it.
    ``same_ts`` admits an equal timestamp only for monerod's second charge of the *same*
    request (``CHECK_PAYMENT_SAME_TS``), which no stranger can trigger on its own.
    """
    last = acct.last_request_timestamp_us
    return ts_us > last or (same_ts and ts_us == last)


def claim_timestamp(acct: Account, ts_us: int) -> Account | None:
    """Use up a client id for a submitted share (rpcpay's rule; monerod checks none).

    None if the id is not fresh: the share is then refused before any hashing, penalty or
    budget. Otherwise the account with ``ts_us`` recorded, so the same id cannot come back.
    """
    # The timestamp is a u64.
    if not 0 <= ts_us <= U64_MAX:
        raise ValueError(f"ts_us={ts_us} is not a u64")
    # A share's id must be strictly newer than every id the client used before.
    if not is_fresh(acct, ts_us):
        return None
    return replace(acct, last_request_timestamp_us=ts_us)


def compute_penalty(factor: int, credits_per_hash_found: int) -> int:
    """The credits taken for a refused share: ``factor * credits_per_hash_found``.

    monerod multiplies in ``uint64_t``, so the product wraps modulo ``2**64``; we
    reproduce that so a balance never differs from monerod's, even for an absurd
    ``credits_per_hash_found`` above ``2**64 / 20``.
    """
    return (factor * credits_per_hash_found) & U64_MAX


def apply_share(acct: Account, outcome: ShareOutcome, credits_per_hash_found: int) -> Account:
    """Book one submitted nonce (the credit side of ``rpc_payment::submit_nonce``).

    A good share earns ``credits_per_hash_found``; a duplicate or a bad hash costs
    twenty times that, so guessing nonces or replaying a good one never pays; a stale
    share costs nothing (``PENALTY_FOR_STALE`` is 0) because honest miners send them
    whenever the chain top moves.
    """
    # The credit rate is a u64.
    if not 0 <= credits_per_hash_found <= U64_MAX:
        raise ValueError(f"credits_per_hash_found={credits_per_hash_found} is not a u64")
    # A good share credits the balance and the lifetime total.
    if outcome is ShareOutcome.GOOD:
        return replace(
            acct,
            balance=add_saturating(acct.balance, credits_per_hash_found),
            credits_total=add_saturating(acct.credits_total, credits_per_hash_found),
            nonces_good=add_saturating(acct.nonces_good, 1),
        )
    # A stale share is counted and charged PENALTY_FOR_STALE.
    if outcome is ShareOutcome.STALE:
        return replace(
            acct,
            balance=sub_clamped(
                acct.balance, compute_penalty(PENALTY_FOR_STALE, credits_per_hash_found)
            ),
            nonces_stale=add_saturating(acct.nonces_stale, 1),
        )
    # A bad hash is counted and charged PENALTY_FOR_BAD_HASH.
    if outcome is ShareOutcome.BAD:
        return replace(
            acct,
            balance=sub_clamped(
                acct.balance, compute_penalty(PENALTY_FOR_BAD_HASH, credits_per_hash_found)
            ),
            nonces_bad=add_saturating(acct.nonces_bad, 1),
        )
    # What is left is a duplicate, charged PENALTY_FOR_DUPLICATE.
    assert outcome is ShareOutcome.DUPE
    return replace(
        acct,
        balance=sub_clamped(
            acct.balance, compute_penalty(PENALTY_FOR_DUPLICATE, credits_per_hash_found)
        ),
        nonces_dupe=add_saturating(acct.nonces_dupe, 1),
    )


def adjust_balance(acct: Account, delta: int) -> Account:
    """Add a signed amount to the balance (``rpc_payment::balance``, admin's
    ``rpc_access_account``).

    Only the balance moves: monerod does not count admin grants as mined or used
    credits. The result saturates at ``2**64 - 1`` and clamps at 0.
    """
    # monerod's delta_balance is an int64_t.
    if not I64_MIN <= delta <= I64_MAX:
        raise ValueError(f"delta={delta} is not an i64")
    # A positive delta saturates; a negative one clamps.
    if delta >= 0:
        return replace(acct, balance=add_saturating(acct.balance, delta))
    return replace(acct, balance=sub_clamped(acct.balance, -delta))


def apply_credit(acct: Account, credits: int) -> Account:
    """Credit a payment made on another rail (a lottery cheque): like a good share, the
    balance and the lifetime total grow, saturating at ``2**64 - 1``."""
    # A credit is a u64 amount.
    if not 0 <= credits <= U64_MAX:
        raise ValueError(f"credits={credits} is not a u64")
    return replace(
        acct,
        balance=add_saturating(acct.balance, credits),
        credits_total=add_saturating(acct.credits_total, credits),
    )


def apply_refund(acct: Account, amount: int) -> Account:
    """Undo a charge whose call the upstream never answered (rpcpay's rule, not monerod's).

    The balance gets the amount back (saturating) and ``credits_used`` forgets it, so the
    client paid nothing for a call that did not happen.
    """
    # A refund is a u64 amount.
    if not 0 <= amount <= U64_MAX:
        raise ValueError(f"refund={amount} is not a u64")
    return replace(
        acct,
        balance=add_saturating(acct.balance, amount),
        credits_used=sub_clamped(acct.credits_used, amount),
    )


def touch(acct: Account, now: int) -> Account:
    """Mark the client as seen now (``get_info`` sets ``update_time``), keeping it from
    being forgotten."""
    # The time is a u64 of unix seconds.
    if not 0 <= now <= U64_MAX:
        raise ValueError(f"now={now} is not a u64")
    return replace(acct, update_time=now)


def last_activity(acct: Account) -> int:
    """The last time (unix seconds) the client was heard from, as ``flush_by_age`` and
    ``rpc_access_data`` compute it: its newest charged call or its newest job request."""
    return max(acct.last_request_timestamp_us // 1_000_000, acct.update_time)


def is_forgettable(
    acct: Account,
    now: int,
    idle_s: int = DEFAULT_FLUSH_AGE,
    zero_idle_s: int = DEFAULT_ZERO_FLUSH_AGE,
) -> bool:
    """Whether ``flush_by_age`` would erase this account at ``now``.

    An account with credits is kept for ``idle_s`` (half a year) after its last
    activity; an empty one only for ``zero_idle_s`` (two minutes), so clients that
    never pay cost nothing for long. A threshold before the epoch is clamped to 0, and
    the comparison is strict, as in monerod.
    """
    # An empty account gets the short grace period, any other the long one.
    age = zero_idle_s if acct.balance == 0 else idle_s
    threshold = max(now - age, 0)
    return last_activity(acct) < threshold
