"""``rpcpay serve`` flags for what strangers may cost: abuse budgets, connection bounds,
upstream and shutdown timeouts (see docs/gateway.md, "Limits")."""

from __future__ import annotations

import argparse
from typing import Any

from rpcpay.argtypes import integer_in, number_in
from rpcpay.gateway.connections import ConnectionLimits
from rpcpay.gateway.limits import AbuseLimits

_seconds = number_in(0, include_low=False, rule="must be a number of seconds above 0")
_rate = number_in(0, include_low=False, rule="must be a number above 0")
_count = integer_in(1, None, "must be an integer of at least 1")


def add_limit_arguments(p: argparse.ArgumentParser) -> None:
    """The flags beyond --bad-shares-* and --new-clients-* (which cli.py defines)."""
    defaults = AbuseLimits()
    for flag, default, help_text in (
        (
            "--new-clients-prefix-burst",
            defaults.new_clients_prefix_burst,
            "new client ids one /24 (IPv4) or /64 (IPv6) network may introduce at once",
        ),
        ("--new-clients-prefix-per-second", defaults.new_clients_prefix_per_second, None),
        (
            "--new-clients-total-burst",
            defaults.new_clients_total_burst,
            "new client ids all addresses together may introduce at once",
        ),
        ("--new-clients-total-per-second", defaults.new_clients_total_per_second, None),
    ):
        p.add_argument(
            flag,
            type=_rate,
            default=default,
            metavar="R" if help_text is None else "N",
            help=(help_text or "rate at which that budget refills") + " (default: %(default)s)",
        )
    conn = ConnectionLimits()
    p.add_argument(
        "--header-timeout",
        type=_seconds,
        default=conn.header_timeout_s,
        metavar="S",
        help="a request's header must arrive within S seconds of its first byte, or the "
        "connection is closed (slowloris) (default: %(default)s)",
    )
    p.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=conn.idle_timeout_s,
        metavar="S",
        help="close a connection that starts no request for S seconds after opening or "
        "after its last answer (default: %(default)s)",
    )
    p.add_argument(
        "--body-timeout",
        type=_seconds,
        default=conn.body_timeout_s,
        metavar="S",
        help="a request body must arrive within S seconds of its header, else 408 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=_count,
        default=conn.max_connections,
        metavar="N",
        help="open connections in total; past it the longest-idle one is closed, or the new "
        "one refused with 503 if none is idle (default: %(default)s)",
    )
    p.add_argument(
        "--max-connections-per-address",
        type=_count,
        default=conn.max_per_address,
        metavar="N",
        help="open connections from one address; more are refused with 503 (default: %(default)s)",
    )
    p.add_argument(
        "--refusal-delay",
        type=number_in(0, include_low=True, rule="must be 0 or more seconds"),
        default=conn.refusal_delay_s,
        metavar="S",
        help=f"past {conn.refusal_burst:g} refused requests from one address (refilling at "
        f"{conn.refusals_per_second:g}/s), answer each further refusal S seconds late, so a "
        "junk flood cannot take the event loop from paying clients; 0 turns it off "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--upstream-timeout",
        type=_seconds,
        default=20.0,
        metavar="S",
        help="a charged call the upstream has not answered in S seconds is refunded and "
        "answered as failed (default: %(default)s)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="on SIGTERM, calls in flight get S seconds to finish; the rest are refunded "
        "(default: %(default)s)",
    )


def limit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """GatewayConfig's limits, connections, upstream_timeout_s and shutdown_grace_s."""
    return {
        "limits": AbuseLimits(
            bad_shares_burst=args.bad_shares_burst,
            bad_shares_per_second=args.bad_shares_per_second,
            new_clients_burst=args.new_clients_burst,
            new_clients_per_second=args.new_clients_per_second,
            new_clients_prefix_burst=args.new_clients_prefix_burst,
            new_clients_prefix_per_second=args.new_clients_prefix_per_second,
            new_clients_total_burst=args.new_clients_total_burst,
            new_clients_total_per_second=args.new_clients_total_per_second,
        ),
        "connections": ConnectionLimits(
            header_timeout_s=args.header_timeout,
            idle_timeout_s=args.idle_timeout,
            body_timeout_s=args.body_timeout,
            max_connections=args.max_connections,
            max_per_address=args.max_connections_per_address,
            refusal_delay_s=args.refusal_delay,
        ),
        "upstream_timeout_s": args.upstream_timeout,
        "shutdown_grace_s": args.shutdown_grace,
    }
