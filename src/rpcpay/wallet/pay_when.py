"""When the wallet pays: always, or only once free service is refused or slow (seed 000: "some
clients will also try paying when they get shitty service for free").

Contract: with ``always`` (the default) every call is signed, as before: a node charges it
(one with a free tier may still serve it free while the balance is empty).
With ``refused`` or ``slow`` a call goes *unsigned* (no client id: a gateway with a free tier
serves it from the host's free allowance) until the node refuses it (``PAYMENT REQUIRED``,
HTTP 402, "busy"), or, with ``slow``, until a free call takes longer than ``slow_s``. Then
the wallet pays (earns credits first if its balance is empty, then signs) for
``stay_paid_s``, after which it tries free service again. A refused free call is sent again
at once, paid: the caller sees one answer.

Why unsigned rather than signed with a zero balance: a signed call from a client with
credits is always charged, and a wallet that has credits left over should still be able to
use free service while it serves.

The rules are pure functions over the frozen ``PayPolicy`` and ``PayState``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Literal

from rpcpay.argtypes import integer_in, number_in

PayWhen = Literal["always", "refused", "slow"]
PAY_WHEN_CHOICES: tuple[PayWhen, ...] = ("always", "refused", "slow")
DEFAULT_SLOW_S = 2.0
DEFAULT_STAY_PAID_S = 60.0


@dataclass(frozen=True, slots=True)
class PayPolicy:
    """``when`` to pay; ``slow_s``: the latency bound for ``slow``; ``stay_paid_s``: how long
    paying lasts once started before free service is tried again."""

    when: PayWhen = "always"
    slow_s: float = DEFAULT_SLOW_S
    stay_paid_s: float = DEFAULT_STAY_PAID_S


@dataclass(frozen=True, slots=True)
class PayState:
    """Paying until ``paying_until`` (monotonic seconds); counts of calls by how they went."""

    paying_until: float = 0.0
    free_calls: int = 0
    refusals: int = 0
    slow_calls: int = 0


def goes_free(policy: PayPolicy, state: PayState, now: float) -> bool:
    """Should the next call try free service (unsigned)?"""
    # "always" signs every call; otherwise free unless a refusal or slowness started paying.
    return policy.when != "always" and now >= state.paying_until


def after_free_call(policy: PayPolicy, state: PayState, seconds: float, now: float) -> PayState:
    """A free call was served in ``seconds``: with ``slow``, past the bound, start paying."""
    counted = replace(state, free_calls=state.free_calls + 1)
    # Only "slow" pays for service that is served, but served late.
    if policy.when == "slow" and seconds > policy.slow_s:
        return replace(
            counted, paying_until=now + policy.stay_paid_s, slow_calls=state.slow_calls + 1
        )
    return counted


def after_refusal(policy: PayPolicy, state: PayState, now: float) -> PayState:
    """A free call was refused (payment required, busy): pay from now on, for a while."""
    return replace(state, paying_until=now + policy.stay_paid_s, refusals=state.refusals + 1)


_positive_ms = number_in(0, include_low=False, rule="must be a number of milliseconds above 0")
_positive_s = number_in(0, include_low=False, rule="must be a number of seconds above 0")


def add_pay_when_arguments(p: argparse.ArgumentParser) -> None:
    """``rpcpay wallet``'s --pay-when, --slow-ms and --stay-paid-s."""
    p.add_argument(
        "--pay-when",
        choices=PAY_WHEN_CHOICES,
        default="always",
        help="always: sign and pay every call; refused: send calls unsigned to the node's "
        "free tier and pay (mine or send a cheque) only once a free call is refused "
        "(PAYMENT REQUIRED, HTTP 402, busy); slow: also pay once a free call takes longer "
        "than --slow-ms (default: %(default)s)",
    )
    p.add_argument(
        "--slow-ms",
        type=_positive_ms,
        default=DEFAULT_SLOW_S * 1000,
        metavar="MS",
        help="with --pay-when slow: the free call latency past which the wallet pays "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--stay-paid-s",
        type=_positive_s,
        default=DEFAULT_STAY_PAID_S,
        metavar="S",
        help="once paying started, keep paying this long before trying free service again "
        "(default: %(default)g)",
    )


_credits = integer_in(0, 2**64 - 1, "must be a whole number of credits, 0 or more")


def add_bid_argument(p: argparse.ArgumentParser) -> None:
    """``rpcpay wallet``'s --bid."""
    p.add_argument(
        "--bid",
        type=_credits,
        default=0,
        metavar="CREDITS",
        help="offer this many credits more per paid JSON-RPC call to go first when the node "
        "is busy (an X-Rpc-Bid header; only a gateway run with --bids takes it, others "
        "ignore it) (default: %(default)s)",
    )


def pay_policy(args: argparse.Namespace) -> PayPolicy:
    """The policy the wallet's flags ask for."""
    return PayPolicy(args.pay_when, args.slow_ms / 1000, args.stay_paid_s)
