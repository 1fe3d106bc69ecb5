"""The ``rpcpay`` command: ``serve``, ``payments`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rpcpay import __version__
from rpcpay.argtypes import BriefArgumentParser, integer_in, number_in
from rpcpay.cli_capacity import add_capacity_arguments, capacity_settings
from rpcpay.cli_limits import add_limit_arguments, limit_settings
from rpcpay.config_file import SECRET_ENV, load_config_tokens, read_secret_file
from rpcpay.errors import RpcPayError
from rpcpay.gateway.client_address import parse_trusted_proxies
from rpcpay.logs import configure_logging
from rpcpay.lottery import stamper_commands
from rpcpay.paths import default_data_dir
from rpcpay.wallet import commands as wallet_commands

if TYPE_CHECKING:
    from rpcpay.gateway.cheques import LotterySettings
    from rpcpay.gateway.server import GatewayConfig

log = logging.getLogger("rpcpay.cli")

LOTTERY_EXTRA_MODULES = frozenset({"eth", "eth_abi", "eth_keys", "eth_account", "eth_utils"})
"""Top-level modules of the ``lottery`` extra (pyproject.toml)."""

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
        "--config",
        type=Path,
        metavar="FILE",
        help="read flags from a TOML file whose keys are the flag names without the dashes "
        "(rpc-bind-port = 18089); flags on the command line override it; SIGHUP reloads it "
        "(docs/operating.md) (default: none)",
    )
    p.add_argument(
        "--upstream",
        default="http://127.0.0.1:18081",
        help="backend URL (http:// or https://): a monerod without payment, or any HTTP "
        "JSON-RPC service, called at exactly this URL (default: %(default)s)",
    )
    p.add_argument(
        "--upstream-kind",
        choices=("auto", "monero", "jsonrpc"),
        default="auto",
        help="what the upstream is; auto means monero when a Monero-only flag is given "
        "(--rpc-payment-address, --info-cache-ms, --cache-mb, --cache-margin), else asks the "
        "upstream's /get_height, waiting with backoff while it is unreachable "
        "(default: %(default)s)",
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
        help="bearer token the admin listener requires (required off loopback); prefer "
        "--admin-token-file or the RPCPAY_ADMIN_TOKEN environment variable, since ps shows "
        "the command line (default: none)",
    )
    p.add_argument(
        "--admin-token-file",
        type=Path,
        metavar="FILE",
        help="read the admin token from the first line of FILE (keep it owner-only) "
        "(default: $RPCPAY_ADMIN_TOKEN if set, else no token)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir("gateway"),
        help="where the ledger and keys live: $STATE_DIRECTORY under systemd, else "
        "$XDG_DATA_HOME/rpcpay/gateway (default: %(default)s)",
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
        help="share verification threads per worker (default: one per CPU, divided among "
        "the --workers)",
    )
    p.add_argument(
        "--workers",
        type=integer_in(1, 64, "must be 1 to 64 processes"),
        default=1,
        metavar="N",
        help="gateway processes sharing the ledger, each verifying shares, under one "
        "supervisor that accepts every public connection and hands it to the worker holding "
        "the fewest, and restarts a worker that dies; connection caps and abuse budgets "
        'apply per worker (docs/gateway.md, "Workers") (default: %(default)s, a single '
        "process)",
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
        help="ledger durability. SQLite: normal survives crashes and kill -9 of the gateway, "
        "full also survives power loss. PostgreSQL (--ledger-url): every credit waits for "
        "the server's disk either way; with normal, a write that only debits (a paid call) "
        "does not, so a crash of PostgreSQL itself (not of a gateway) may lose up to ~0.6 s "
        "of charges, never a credit; full makes every write wait. full costs calls/s "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--ledger-url",
        metavar="URL",
        help="keep the ledger (balances, jobs, used nonces and client ids) in this shared "
        "PostgreSQL database, postgresql://USER@HOST:PORT/DB, so that several gateway "
        "instances serve the same clients (a server on this host through its Unix socket: "
        "postgresql://USER@/DB?host=/SOCKET/DIR&port=PORT); the schema is created or "
        "migrated on start. The "
        "password is best given by PGPASSWORD or ~/.pgpass (default: SQLite in --data-dir)",
    )
    p.add_argument(
        "--ledger-pool-size",
        type=_positive,
        default=8,
        metavar="N",
        help="PostgreSQL connections this instance (each worker) opens at most (with "
        "--ledger-url); calls wait for a free one as --ledger-queue-timeout and "
        "--ledger-max-waiters allow, then get a clean busy answer. Keep instances x workers x "
        "N under the server's max_connections (default: %(default)s)",
    )
    p.add_argument(
        "--ledger-queue-timeout",
        type=number_in(0.0, include_low=False, rule="must be a positive number of seconds"),
        default=5.0,
        metavar="S",
        help="with --ledger-url: how long a call waits for a free connection before it is "
        "answered busy (monerod's BUSY; HTTP 503 in front of a JSON-RPC backend) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--ledger-max-waiters",
        type=_positive,
        default=64,
        metavar="N",
        help="with --ledger-url: how many calls may wait for a connection at once; more are "
        "answered busy at once instead of queueing (default: %(default)s)",
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
        type=_positive,
        default=20,
        metavar="N",
        help="bad or duplicate shares one address (an IPv6 /64) may send before "
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
        type=_positive,
        default=20,
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
    add_limit_arguments(p)
    add_capacity_arguments(p)
    p.add_argument(
        "--rpc-ssl-certificate",
        type=Path,
        metavar="FILE",
        help="PEM certificate (chain) for TLS on the public listener, as monerod's flag of the "
        "same name; needs --rpc-ssl-private-key (default: plain HTTP, e.g. behind a proxy)",
    )
    p.add_argument(
        "--rpc-ssl-private-key",
        type=Path,
        metavar="FILE",
        help="the certificate's unencrypted PEM private key, owner-only (default: none)",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy's address or network (repeatable); only from these peers is "
        "the client address read from the forwarding header, rightmost untrusted entry first; "
        "free loopback, abuse budgets and logs use that address (default: none, the TCP peer "
        "is the client)",
    )
    p.add_argument(
        "--trusted-proxy-header",
        choices=("x-forwarded-for", "forwarded"),
        default="x-forwarded-for",
        help="the header the trusted proxies set: X-Forwarded-For (nginx, caddy) or RFC 7239 "
        "Forwarded; the other one is ignored, so a client cannot smuggle it through "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--access-log",
        type=Path,
        metavar="FILE",
        help="append one JSON line per public call (real client address, method, outcome, "
        "credits, HTTP status, ms) to FILE, or to stderr for '-'; reopened on SIGHUP for "
        "logrotate (default: off)",
    )
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not count anything for GET /metrics on the admin listener (default: counted)",
    )
    _add_lottery_flags(p)
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level; logs are JSON lines on stderr (default: %(default)s)",
    )


def _eth_address(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raw = b""
    # An address is 20 bytes of hex.
    if len(raw) != 20:
        raise argparse.ArgumentTypeError(f"not a 0x-prefixed 20-byte address: {text!r}")
    return raw


_wei = integer_in(1, 2**256 - 1, "must be a positive number of wei")
_blocks = integer_in(0, None, "must be 0 or more blocks")


def _add_lottery_flags(p: argparse.ArgumentParser) -> None:
    """The payee of the stamped-lottery rail (docs/lottery.md §15); off without a contract."""
    from rpcpay.lottery.payee import DEFAULT_CREDIT_PRICE_WEI, DEFAULT_MIN_STAMPER_DEPOSIT
    from rpcpay.lottery.rules import DEFAULT_CONFIRMATIONS, DEFAULT_REVEAL_MARGIN

    g = p.add_argument_group(
        "lottery rail",
        "Accept stamped lottery cheques (lottery_pay_cheque) as payment, on the same ledger "
        "as hash credits. Off unless --lottery-contract is given. See docs/lottery.md.",
    )
    g.add_argument(
        "--lottery-chain-url",
        metavar="URL",
        help="Ethereum JSON-RPC node of the settlement contract; only scheme, host and port "
        "are logged (required with --lottery-contract)",
    )
    g.add_argument(
        "--lottery-contract",
        type=_eth_address,
        metavar="ADDRESS",
        help="the deployed stamped-lottery contract; turns the lottery rail on",
    )
    g.add_argument(
        "--lottery-key-file",
        type=Path,
        metavar="FILE",
        help="this gateway's secp256k1 key (64 hex digits, owner-only, made if missing): its "
        "address is the cheques' recipient and sends claims and fraud proofs, so fund it with "
        "a little ether for gas (default: DATA_DIR/lottery.key)",
    )
    g.add_argument(
        "--credit-price-wei",
        type=_wei,
        default=DEFAULT_CREDIT_PRICE_WEI,
        metavar="WEI",
        help="wei of a cheque's expected value per credit; credits are rounded down and the "
        "remainder is not carried, cheques worth less than one credit are refused "
        "(default: %(default)s = 1 gwei)",
    )
    g.add_argument(
        "--min-stamper-deposit",
        type=_wei,
        default=DEFAULT_MIN_STAMPER_DEPOSIT,
        metavar="WEI",
        help="refuse cheques whose stamper has less at stake (default: %(default)s, about 100 USD)",
    )
    g.add_argument(
        "--reveal-margin",
        type=_blocks,
        default=DEFAULT_REVEAL_MARGIN,
        metavar="BLOCKS",
        help="refuse cheques of lotteries that reveal within this many blocks of the newest "
        "head (default: %(default)s)",
    )
    g.add_argument(
        "--confirmations",
        type=_blocks,
        default=DEFAULT_CONFIRMATIONS,
        metavar="BLOCKS",
        help="read lotteries and stamper deposits this many blocks below the head, so a reorg "
        "cannot undo what a cheque relies on; wins are claimed from the block after the "
        "reveal, without waiting (default: %(default)s)",
    )
    g.add_argument(
        "--gossip-peer",
        action="append",
        default=[],
        metavar="URL",
        help="another payee gateway's public URL; accepted cheques are sent to its "
        "/lottery/gossip so overlapping stamps are caught (repeatable; default: none; peers "
        "that gossip to us naming their URL are added too, docs/lottery.md §16)",
    )
    _add_pacing_flags(g)


def _add_pacing_flags(g: argparse._ArgumentGroup) -> None:
    """How much of a cheque is credited at once (docs/lottery.md §9, issue 9)."""
    from rpcpay.lottery.pacing import DEFAULT_BURST_WEI, DEFAULT_HOLD_S, DEFAULT_RATE_WEI_PER_MINUTE

    g.add_argument(
        "--gossip-public-url",
        metavar="URL",
        help="this gateway's public URL, sent with its gossip and shown in lottery_info so "
        "peers can gossip back (default: none)",
    )
    g.add_argument(
        "--credit-rate-wei",
        type=_wei,
        default=DEFAULT_RATE_WEI_PER_MINUTE,
        metavar="WEI",
        help="wei a minute per lottery credited at once; more waits for --cheque-hold-s "
        "(default: %(default)s = 100 gwei, the seed's price of a server a minute)",
    )
    g.add_argument(
        "--credit-burst-wei",
        type=_wei,
        default=DEFAULT_BURST_WEI,
        metavar="WEI",
        help="wei per lottery credited at once beyond the rate (default: %(default)s)",
    )
    g.add_argument(
        "--cheque-hold-s",
        type=float,
        default=DEFAULT_HOLD_S,
        metavar="SECONDS",
        help="how long a cheque beyond the rate waits for peers' gossip before it is "
        "credited; at least three gossip delays (default: %(default)s)",
    )


def _lottery_settings(args: argparse.Namespace) -> LotterySettings | None:
    """The lottery rail's settings, or None when --lottery-contract is not given."""
    from rpcpay.errors import ConfigError
    from rpcpay.gateway.cheques import LotterySettings

    if args.lottery_contract is None:
        # Lottery flags without a contract would silently do nothing.
        if (
            args.lottery_chain_url
            or args.gossip_peer
            or args.lottery_key_file
            or args.gossip_public_url
        ):
            raise ConfigError("the lottery flags need --lottery-contract")
        return None
    if not args.lottery_chain_url:
        raise ConfigError("--lottery-contract needs --lottery-chain-url")
    return LotterySettings(
        contract=args.lottery_contract,
        chain_url=args.lottery_chain_url,
        key_file=args.lottery_key_file,
        credit_price_wei=args.credit_price_wei,
        min_stamper_deposit=args.min_stamper_deposit,
        reveal_margin=args.reveal_margin,
        confirmations=args.confirmations,
        gossip_peers=tuple(args.gossip_peer),
        rate_wei_per_minute=args.credit_rate_wei,
        burst_wei=args.credit_burst_wei,
        hold_s=args.cheque_hold_s,
        public_url=args.gossip_public_url,
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
    p.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="bearer token, if the gateway has one (default: $RPCPAY_ADMIN_TOKEN)",
    )
    p.add_argument(
        "--admin-token-file",
        type=Path,
        metavar="FILE",
        help="read the bearer token from the first line of FILE (default: none)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print rpc_access_data's answer as JSON instead of the table (default: table)",
    )


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
    p.add_argument(
        "--backend-only",
        type=integer_in(1, 65535, "a port is 1 to 65535"),
        metavar="PORT",
        help="run only the toy JSON-RPC backend on 127.0.0.1:PORT until interrupted, for "
        "gateways started separately (scripts/demo_lottery.sh) (default: the whole demo)",
    )


def _add_chain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rpcpay chain`` (run by ``rpcpay.chain.devnode_commands``)."""
    chain_id = integer_in(1, 2**64 - 1, "a chain id is 1 to 2^64-1")
    keys = integer_in(1, 1000, "must be 1 to 1000 keys")
    block_time = number_in(0.0, include_low=True, rule="must be 0 or a positive number of seconds")
    p = sub.add_parser(
        "chain",
        help="run the embedded development chain (py-evm) over JSON-RPC on loopback",
        description="Serve an in-memory Ethereum chain (py-evm, Cancun) with the stamped-"
        "lottery contract deployed and funded development keys, over the JSON-RPC methods "
        "rpcpay's chain client uses, so payers, stampers and gateways can share it. State is "
        "in memory only: stopping the command loses it (a restart deploys the same contract "
        "address again, on a new chain). The keys are public: never use them for real funds.",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument(
        "--port", type=_port, default=8545, help="listen port, 0 picks one (default: %(default)s)"
    )
    p.add_argument("--chain-id", type=chain_id, default=1337, help="(default: %(default)s)")
    p.add_argument(
        "--keys", type=keys, default=10, help="funded development keys (default: %(default)s)"
    )
    p.add_argument(
        "--block-time",
        type=block_time,
        default=0.0,
        metavar="S",
        help="0: mine a block for each transaction (and on anvil_mine/evm_mine), like anvil's "
        "default; S > 0: also mine an empty block every S seconds (default: %(default)s)",
    )
    p.add_argument(
        "--info-file",
        type=Path,
        default=Path("rpcpay-chain.json"),
        metavar="FILE",
        help="where to write the URL, chain id, contract and the keys (with their secrets), "
        "owner-only (default: %(default)s)",
    )
    p.add_argument(
        "--max-reveal-delay",
        type=_positive,
        metavar="BLOCKS",
        help="contract parameter (default: 216000, 30 days of 12 s blocks)",
    )
    p.add_argument(
        "--redeem-blocks",
        type=_positive,
        metavar="BLOCKS",
        help="contract parameter (default: 7200)",
    )
    p.add_argument("--proof-grace", type=_positive, metavar="BLOCKS",
                   help="contract parameter (default: 7200)")  # fmt: skip
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="log level; logs are JSON lines on stderr (default: %(default)s)",
    )


def _chain(args: argparse.Namespace) -> int:
    from rpcpay.chain.devnode_commands import run_chain

    return run_chain(args)


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = BriefArgumentParser(
        prog="rpcpay", description="Pay-as-you-go RPC: hash credits in front of any backend."
    )
    parser.add_argument("--version", action="version", version=f"rpcpay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_payments(sub)
    _add_demo(sub)
    wallet_commands.add_wallet_parser(sub)
    stamper_commands.add_stamper_parser(sub)
    _add_chain(sub)
    return parser


def _admin_token(args: argparse.Namespace) -> str | None:
    """The admin token: --admin-token-file, else --admin-token, else $RPCPAY_ADMIN_TOKEN."""
    if args.admin_token_file is not None:
        return read_secret_file("--admin-token-file", args.admin_token_file)
    if args.admin_token:
        return str(args.admin_token)
    return os.environ.get(SECRET_ENV["admin-token"]) or None


def _gateway_config(args: argparse.Namespace) -> GatewayConfig:
    """``rpcpay serve``'s flags as the gateway's settings (ConfigError if they conflict)."""
    from rpcpay.gateway.mode import monero_flags_given
    from rpcpay.gateway.server import GatewayConfig

    return GatewayConfig(
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
        admin_token=_admin_token(args),
        data_dir=args.data_dir,
        price_file=args.price_file,
        pow_mode=args.pow_mode,
        verify_threads=args.verify_threads or max(1, (os.cpu_count() or 1) // args.workers),
        max_body_bytes=args.max_body_bytes,
        ledger_sync=args.ledger_sync,
        ledger_url=args.ledger_url,
        ledger_pool_size=args.ledger_pool_size,
        ledger_queue_timeout_s=args.ledger_queue_timeout,
        ledger_max_waiters=args.ledger_max_waiters,
        info_cache_ms=args.info_cache_ms,
        cache_mb=args.cache_mb,
        cache_margin=args.cache_margin,
        **limit_settings(args),
        lottery=_lottery_settings(args),
        monero_flags=monero_flags_given(args),
        proxies=parse_trusted_proxies(args.trusted_proxy, args.trusted_proxy_header),
        metrics=not args.no_metrics,
        access_log=args.access_log,
        ssl_certificate=args.rpc_ssl_certificate,
        ssl_private_key=args.rpc_ssl_private_key,
        **capacity_settings(args),
    )


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rpcpay.gateway.server import serve_forever

    configure_logging(args.log_level)
    config = _gateway_config(args)
    if args.admin_token and not args.config:
        log.warning("--admin-token is visible to every local user in ps; use --admin-token-file")

    def reload() -> GatewayConfig:
        # SIGHUP: the same command line and config file, read again.
        return _gateway_config(parse_args(argv))

    if args.workers > 1:
        from rpcpay.gateway.workers import run_workers

        return run_workers(config, args.workers, argv, reload)
    asyncio.run(serve_forever(config, reload))
    return 0


def _payments(args: argparse.Namespace) -> int:
    from rpcpay.gateway.report import format_payments

    body = json.dumps({"jsonrpc": "2.0", "id": "0", "method": "rpc_access_data"}).encode()
    request = urllib.request.Request(
        args.admin.rstrip("/") + "/json_rpc",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    token = _admin_token(args)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        hint = {
            401: "; give the gateway's admin token (--admin-token-file or RPCPAY_ADMIN_TOKEN)",
            404: "; is this the public port? point --admin at the admin listener "
            "(rpcpay serve --admin-bind-port, default 18090)",
        }.get(exc.code, "")
        print(f"rpcpay payments: admin listener answered HTTP {exc.code}{hint}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"rpcpay payments: cannot reach {args.admin}: {exc}", file=sys.stderr)
        return 1
    result = answer.get("result") if isinstance(answer, dict) else None
    error = answer.get("error") if isinstance(answer, dict) else None
    # The public listener refuses the admin methods as "Method not found".
    if isinstance(error, dict) and error.get("code") == -32601:
        print(
            f"rpcpay payments: {args.admin} does not serve rpc_access_data; it is probably the "
            "gateway's public port: point --admin at the admin listener (rpcpay serve "
            "--admin-bind-port, default http://127.0.0.1:18090)",
            file=sys.stderr,
        )
        return 1
    if not isinstance(result, dict):
        print(f"rpcpay payments: unexpected answer: {answer!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(format_payments(result, int(time.time())))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rpcpay.demo import main as demo_main
    from rpcpay.demo import serve_backend

    if args.backend_only is not None:
        return serve_backend(args.backend_only)
    return demo_main(args.calls, args.difficulty, args.credits, args.data_dir)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; with ``serve --config FILE``, the file's flags first, then argv's."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve" or args.config is None:
        return args
    serve = _subparser(parser, "serve")
    at = list(argv).index("serve") + 1
    tokens = load_config_tokens(args.config, serve, argv[at:])
    return parser.parse_args([*argv[:at], *tokens, *argv[at:]])


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise KeyError(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rpcpay`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except RpcPayError as exc:
        print(f"rpcpay: {exc}", file=sys.stderr)
        return 2
    handlers = {
        "serve": lambda a: _serve(a, argv),
        "payments": _payments,
        "demo": _demo,
        "wallet": wallet_commands.run_wallet,
        "stamper": stamper_commands.run_stamper,
        "chain": _chain,
    }
    try:
        return handlers[args.command](args)
    except RpcPayError as exc:
        print(f"rpcpay {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file or socket the command needed (names it; no traceback for the operator).
        print(f"rpcpay {args.command}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        # The lottery rail's chain side is an extra a Monero operator does not install.
        if (exc.name or "").split(".")[0] not in LOTTERY_EXTRA_MODULES:
            raise
        print(
            f"rpcpay {args.command}: this needs the lottery extra ({exc.name} is missing): "
            "pip install 'rpcpay[lottery]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
