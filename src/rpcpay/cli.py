"""The ``rpcpay`` command: ``serve``, ``payments`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from rpcpay import __version__
from rpcpay.argtypes import integer_in, number_in
from rpcpay.errors import RpcPayError
from rpcpay.gateway.limits import AbuseLimits
from rpcpay.logs import configure_logging
from rpcpay.lottery import stamper_commands
from rpcpay.wallet import commands as wallet_commands

_positive = integer_in(1, None, "must be at least 1")
_non_negative = integer_in(0, None, "must be 0 or more")
_port = integer_in(0, 65535, "a port is 0-65535 (0 picks a free one)")
_rate = number_in(0.0, include_low=False, rule="must be a positive number")


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the paying gateway in front of a backend",
        description="Run the pay-for-RPC gateway. Clients pay for calls with RandomX hashes, "
        "speaking monerod 0.18's RPC payment protocol; unpaid calls never reach the upstream.",
    )
    p.add_argument(
        "--upstream",
        default="http://127.0.0.1:18081",
        help="backend URL: a monerod without payment, or any HTTP JSON-RPC service "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--upstream-kind",
        choices=("auto", "monero", "jsonrpc"),
        default="auto",
        help="what the upstream is; auto asks its /get_height (default: %(default)s)",
    )
    p.add_argument(
        "--rpc-payment-address",
        metavar="ADDRESS",
        help="Monero address that real blocks found by clients pay to "
        "(required in front of monerod)",
    )
    p.add_argument(
        "--rpc-payment-difficulty",
        type=_positive,
        default=1000,
        metavar="D",
        help="difficulty of one share (default: %(default)s)",
    )
    p.add_argument(
        "--rpc-payment-credits",
        type=_positive,
        default=100,
        metavar="C",
        help="credits paid per share; clients earn C/D credits per hash on average "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--rpc-payment-allow-free-loopback",
        action="store_true",
        help="serve calls from 127.0.0.0/8 and ::1 for free",
    )
    p.add_argument(
        "--rpc-bind-ip", default="127.0.0.1", help="public listener address (default: %(default)s)"
    )
    p.add_argument(
        "--rpc-bind-port",
        type=_port,
        default=18089,
        help="public listener port (default: %(default)s)",
    )
    p.add_argument(
        "--admin-bind-ip",
        default="127.0.0.1",
        help="admin listener address for rpc_access_data/account/tracking (default: %(default)s)",
    )
    p.add_argument(
        "--admin-bind-port",
        type=_port,
        default=18090,
        help="admin listener port (default: %(default)s)",
    )
    p.add_argument("--no-admin", action="store_true", help="do not open the admin listener")
    p.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="bearer token the admin listener requires (required off loopback)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("rpcpay-data"),
        help="where the ledger and keys live (default: %(default)s)",
    )
    p.add_argument(
        "--price-file",
        type=Path,
        metavar="FILE",
        help='JSON prices for a non-Monero backend: {"default": 1, "methods": '
        '{"eth_getLogs": 20}} (default: every method costs 1)',
    )
    p.add_argument(
        "--pow-mode",
        choices=("auto", "light", "fast"),
        default="auto",
        help="RandomX verification mode; fast builds a 2 GiB dataset per seed and "
        "auto uses it when memory allows (default: %(default)s)",
    )
    p.add_argument(
        "--verify-threads",
        type=_positive,
        default=None,
        metavar="N",
        help="share verification threads (default: one per CPU)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=4 * 1024 * 1024,
        metavar="N",
        help="largest request body accepted (default: %(default)s)",
    )
    p.add_argument(
        "--ledger-sync",
        choices=("full", "normal"),
        default="normal",
        help="SQLite durability: normal survives crashes and kill -9 of the gateway; full "
        "also survives power loss, at a cost in calls/s (default: %(default)s)",
    )
    p.add_argument(
        "--info-cache-ms",
        type=_non_negative,
        default=1000,
        metavar="MS",
        help="serve paid get_info answers from memory for at most MS ms, never across a new "
        "block; 0 turns it off (default: %(default)s)",
    )
    p.add_argument(
        "--cache-mb",
        type=_non_negative,
        default=256,
        metavar="MB",
        help="memory for settled blocks, hashes and outputs served without asking monerod; "
        "0 turns the cache off (default: %(default)s)",
    )
    p.add_argument(
        "--cache-margin",
        type=_non_negative,
        default=20,
        metavar="BLOCKS",
        help="only data at least this many blocks below the chain top is cached; a deeper "
        "reorg empties the cache (default: %(default)s)",
    )
    p.add_argument(
        "--bad-shares-burst",
        type=_rate,
        default=20.0,
        metavar="N",
        help="bad or duplicate shares one address or client may send before "
        "shares are refused unhashed (default: %(default)s)",
    )
    p.add_argument(
        "--bad-shares-per-second",
        type=_rate,
        default=0.1,
        metavar="R",
        help="rate at which that budget refills (default: %(default)s)",
    )
    p.add_argument(
        "--new-clients-burst",
        type=_rate,
        default=20.0,
        metavar="N",
        help="new client ids one address may introduce at once (default: %(default)s)",
    )
    p.add_argument(
        "--new-clients-per-second",
        type=_rate,
        default=0.2,
        metavar="R",
        help="rate at which that budget refills (default: %(default)s)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level; logs are JSON lines on stderr (default: %(default)s)",
    )


def _add_payments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "payments",
        help="list clients, balances and hash rate (monerod's rpc_payments)",
        description="Ask a running gateway's admin listener for every client's balance and "
        "counters, then the totals and the aggregate hash rate.",
    )
    p.add_argument(
        "--admin",
        default="http://127.0.0.1:18090",
        help="admin listener URL (default: %(default)s)",
    )
    p.add_argument("--admin-token", metavar="TOKEN", help="bearer token, if the gateway has one")


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a toy backend, the gateway and a mining client on loopback",
        description="Start a toy JSON-RPC backend, the gateway in front of it, and a client "
        "that mines credits and makes paid calls, printing each step.",
    )
    p.add_argument(
        "--calls", type=_positive, default=9, help="paid calls to make (default: %(default)s)"
    )
    p.add_argument(
        "--difficulty", type=_positive, default=16, help="share difficulty (default: %(default)s)"
    )
    p.add_argument(
        "--credits", type=_positive, default=32, help="credits per share (default: %(default)s)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the demo's ledger here (default: a temporary directory)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpcpay", description="Pay-as-you-go RPC: hash credits in front of any backend."
    )
    parser.add_argument("--version", action="version", version=f"rpcpay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_payments(sub)
    _add_demo(sub)
    wallet_commands.add_wallet_parser(sub)
    stamper_commands.add_stamper_parser(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from rpcpay.gateway.server import GatewayConfig, serve_forever

    configure_logging(args.log_level)
    config = GatewayConfig(
        upstream=args.upstream,
        upstream_kind=args.upstream_kind,
        payment_address=args.rpc_payment_address,
        difficulty=args.rpc_payment_difficulty,
        credits_per_hash=args.rpc_payment_credits,
        allow_free_loopback=args.rpc_payment_allow_free_loopback,
        bind_ip=args.rpc_bind_ip,
        bind_port=args.rpc_bind_port,
        admin_bind_ip=args.admin_bind_ip,
        admin_bind_port=None if args.no_admin else args.admin_bind_port,
        admin_token=args.admin_token,
        data_dir=args.data_dir,
        price_file=args.price_file,
        pow_mode=args.pow_mode,
        **({"verify_threads": args.verify_threads} if args.verify_threads else {}),
        max_body_bytes=args.max_body_bytes,
        ledger_sync=args.ledger_sync,
        info_cache_ms=args.info_cache_ms,
        cache_mb=args.cache_mb,
        cache_margin=args.cache_margin,
        limits=AbuseLimits(
            args.bad_shares_burst,
            args.bad_shares_per_second,
            args.new_clients_burst,
            args.new_clients_per_second,
        ),
    )
    asyncio.run(serve_forever(config))
    return 0


def _payments(args: argparse.Namespace) -> int:
    from rpcpay.gateway.report import format_payments

    body = json.dumps({"jsonrpc": "2.0", "id": "0", "method": "rpc_access_data"}).encode()
    request = urllib.request.Request(
        args.admin.rstrip("/") + "/json_rpc",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    if args.admin_token:
        request.add_header("Authorization", f"Bearer {args.admin_token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"rpcpay payments: admin listener answered HTTP {exc.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"rpcpay payments: cannot reach {args.admin}: {exc}", file=sys.stderr)
        return 1
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, dict):
        print(f"rpcpay payments: unexpected answer: {answer!r}", file=sys.stderr)
        return 1
    print(format_payments(result, int(time.time())))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rpcpay.demo import main as demo_main

    return demo_main(args.calls, args.difficulty, args.credits, args.data_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rpcpay`` console script."""
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "payments": _payments,
        "demo": _demo,
        "wallet": wallet_commands.run_wallet,
        "stamper": stamper_commands.run_stamper,
    }
    try:
        return handlers[args.command](args)
    except RpcPayError as exc:
        print(f"rpcpay {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
