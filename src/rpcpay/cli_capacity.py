"""``rpcpay serve`` flags for capacity: the free tier and paid priority (docs/gateway.md,
"Capacity: free service with paid priority"). All off by default: the gateway then serves
exactly as before (every priced call paid, upstream concurrency unbounded)."""

from __future__ import annotations

import argparse
from typing import Any

from rpcpay.argtypes import integer_in, number_in
from rpcpay.gateway.free_tier import FreeTierSettings
from rpcpay.gateway.priority import DEFAULT_QUEUE

_credits = number_in(0, include_low=True, rule="must be a number of credits, 0 or more")
_fraction = number_in(0, include_low=False, rule="must be a fraction above 0, at most 1")
_slots = integer_in(0, 100_000, "must be 0 (unbounded) to 100000 calls")
_line = integer_in(1, 1_000_000, "must be 1 to 1000000 calls")


def add_capacity_arguments(p: argparse.ArgumentParser) -> None:
    """--free-credits-per-second, --free-burst, --free-share, --upstream-concurrency,
    --upstream-queue, --bids."""
    defaults = FreeTierSettings()
    g = p.add_argument_group(
        "capacity (free tier and paid priority)",
        "Serve calls that are not paid for (no client id, a bad or replayed id, too few "
        "credits) free, within a per-host allowance and a share of the upstream; paid calls "
        "wait first for upstream slots. Off by default.",
    )
    g.add_argument(
        "--free-credits-per-second",
        type=_credits,
        default=defaults.credits_per_second,
        metavar="C",
        help="free credits each host (an IPv4 address, an IPv6 /64) earns per second; a call "
        "refused for payment is served free while its host has its price; 0 turns the free "
        "tier off (default: %(default)s)",
    )
    g.add_argument(
        "--free-burst",
        type=_credits,
        default=None,
        metavar="C",
        help="free credits a host may hold, and start with (default: 60 seconds' worth)",
    )
    g.add_argument(
        "--free-share",
        type=_fraction,
        default=defaults.share,
        metavar="F",
        help="fraction of --upstream-concurrency all free calls together may hold; past it, "
        "and past a host's allowance, a call gets PAYMENT REQUIRED / HTTP 402 "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--free-total-credits-per-second",
        type=_credits,
        default=0.0,
        metavar="C",
        help="free credits all hosts together may take per second (a bound on free work in "
        "the gateway's own CPU, beside --free-share's bound on upstream slots); past it a "
        "call is refused as past the share (default: 0, no global rate)",
    )
    g.add_argument(
        "--upstream-concurrency",
        type=_slots,
        default=0,
        metavar="N",
        help="upstream calls in flight at most; waiting calls queue with paid ones first "
        "(default: 0, unbounded; 8 when the free tier is on)",
    )
    g.add_argument(
        "--upstream-queue",
        type=_line,
        default=DEFAULT_QUEUE,
        metavar="N",
        help="calls that may wait for an upstream slot; when full, free calls are shed first "
        "with a 'busy' answer that costs nothing (default: %(default)s)",
    )
    g.add_argument(
        "--bids",
        action="store_true",
        help="let paying clients bid: an X-Rpc-Bid: N header adds N credits to a call's "
        "charge, and higher bids go first among paid calls waiting for a slot (an extension "
        "of monerod's protocol; its clients never send it) (default: off, the header is "
        "ignored)",
    )


def capacity_settings(args: argparse.Namespace) -> dict[str, Any]:
    """GatewayConfig's free_tier, upstream_concurrency, upstream_queue and bids."""
    rate = args.free_credits_per_second
    burst = args.free_burst if args.free_burst is not None else 60 * rate
    return {
        "free_tier": FreeTierSettings(
            rate, burst, args.free_share, args.free_total_credits_per_second
        ),
        "upstream_concurrency": args.upstream_concurrency,
        "upstream_queue": args.upstream_queue,
        "bids": args.bids,
    }
