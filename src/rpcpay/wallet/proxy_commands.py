"""``rpcpay wallet proxy``: run the local paying proxy (``rpcpay.wallet.proxy``).

``--listen HOST:PORT`` must be loopback unless ``--allow-remote`` (anyone who reaches the
proxy spends this wallet's credits); ``--server URL`` (repeatable) names the paying
gateways; the key is the wallet's (``--rpc-client-secret-key``, or the persistent id, or a
fresh one). Runs until SIGINT/SIGTERM. Exit codes: 0 stopped, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from rpcpay.argtypes import number_in
from rpcpay.errors import ConfigError
from rpcpay.gateway.payment import is_loopback
from rpcpay.logs import configure_logging
from rpcpay.wallet.funding import MiningFunder
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.proxy import PayingProxy
from rpcpay.wallet.settings import client_key_for, load_wallet

_millis = number_in(0.0, include_low=False, rule="must be a positive number of milliseconds")
_seconds = number_in(0.0, include_low=False, rule="must be a positive number of seconds")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as (host, port)."""
    parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError:
        port = None
    # Both a host and a port number.
    if not parts.hostname or port is None:
        raise argparse.ArgumentTypeError(
            f"--listen must be HOST:PORT, e.g. 127.0.0.1:8545, not {text!r}"
        )
    return parts.hostname, port


def parse_server_url(text: str) -> str:
    parts = urlsplit(text)
    # A gateway is reached over HTTP(S).
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"--server must be an http(s) URL such as http://127.0.0.1:18089, not {text!r}"
        )
    return text


def add_proxy_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``proxy`` under ``rpcpay wallet``."""
    p = commands.add_parser(
        "proxy",
        help="a free local endpoint for unmodified clients, paying remote gateways",
        description="Listen on --listen and serve JSON-RPC (and Monero's JSON and .bin "
        "endpoints) for free, paying the --server gateways with hashes on the callers' "
        "behalf: each call goes to the cheapest server within --max-latency-ms, and moves to "
        "the next when one fails or refuses.",
    )
    p.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 8545),
        metavar="HOST:PORT",
        help="where clients connect (default: 127.0.0.1:8545)",
    )
    p.add_argument(
        "--server",
        type=parse_server_url,
        action="append",
        required=True,
        metavar="URL",
        help="a paying gateway (rpcpay serve, or monerod with payment on); repeat for more "
        "(required, no default)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --listen address off loopback: whoever reaches it spends your credits "
        "(default: loopback only)",
    )
    p.add_argument(
        "--max-latency-ms",
        type=_millis,
        default=1000.0,
        metavar="MS",
        help="servers slower than this are used only when no faster one is up "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--probe-interval",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="how often each server's terms and latency are asked again (default: %(default)s)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level; logs are JSON lines on stderr (default: %(default)s)",
    )


def run_proxy(args: argparse.Namespace, wallet_path: Path, secret: bytes | None) -> int:
    host, port = args.listen
    # Off loopback, anyone who reaches the proxy spends this wallet's credits.
    if not is_loopback(host) and not args.allow_remote:
        raise ConfigError(
            f"--listen {host} is not a loopback address: anyone reaching it would spend your "
            "credits; add --allow-remote if that is what you want"
        )
    configure_logging(args.log_level)
    key = client_key_for(load_wallet(wallet_path), secret, path=wallet_path)
    asyncio.run(_serve(args, host, port, key))
    return 0


async def _serve(args: argparse.Namespace, host: str, port: int, key: ClientKey) -> None:
    funder = MiningFunder()
    proxy = PayingProxy(
        args.server, funder, key=key, host=host, port=port,
        max_latency=args.max_latency_ms / 1000, probe_interval=args.probe_interval,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await proxy.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        print(
            json.dumps({"listening": f"{host}:{proxy.port}", "servers": proxy.describe()}),
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        await proxy.close()
        funder.close()
