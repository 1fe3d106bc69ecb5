"""``rpcpay wallet proxy``: run the local paying proxy (``rpcpay.wallet.proxy``).

``--listen HOST:PORT`` must be loopback unless ``--allow-remote`` (anyone who reaches the
proxy spends this wallet's credits); ``--server URL`` (repeatable) names the paying
gateways; the key is the wallet's (``--rpc-client-secret-key``, or the persistent id, or a
fresh one). Runs until SIGINT/SIGTERM. Exit codes: 0 stopped, 2 bad input.

Cheques: with ``--lottery-contract`` the proxy also has a lottery payer (the one behind
``rpcpay wallet lottery-pay``: ``--chain-url``, ``--payer-key-file``, ``--stamper-url``,
``--prize``, ``--reveal-blocks``) and pays each refusal by the cheaper rail at that server
(``rpcpay.wallet.market.cheaper_rail``): a cheque of ``--cheque-wei`` (whole credits at the
server's ``credit_price_wei``) or hashes valued at ``--hash-value-wei`` each. Each server
gets its own payer state file, ``--lottery-file`` with the URL's digest before the suffix
(its own lotteries: payers never share a state file). Without ``--lottery-contract`` it
only mines, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from rpcpay.argtypes import integer_in, number_in
from rpcpay.errors import ConfigError
from rpcpay.gateway.payment import is_loopback
from rpcpay.logs import configure_logging
from rpcpay.lottery.keyfile import load_key
from rpcpay.wallet.cheque_funding import ChequeFunder
from rpcpay.wallet.client import Funder
from rpcpay.wallet.funding import MiningFunder
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.lottery_payer import (
    DEFAULT_PRICE_PER_MINUTE,
    DEFAULT_PRIZE,
    DEFAULT_REVEAL_BLOCKS,
    LotteryPayer,
    ServerSpec,
)
from rpcpay.wallet.lottery_payer_commands import DEFAULT_CHAIN_URL, DEFAULT_STAMPER_URL
from rpcpay.wallet.lottery_payer_state import PayerStateFile
from rpcpay.wallet.pay_when import pay_policy
from rpcpay.wallet.proxy import PayingProxy
from rpcpay.wallet.settings import client_key_for, load_wallet

if TYPE_CHECKING:  # the chain layer loads py-evm: only a proxy paying cheques loads it
    from rpcpay.chain.jsonrpc import JsonRpcChain

_millis = number_in(0.0, include_low=False, rule="must be a positive number of milliseconds")
_seconds = number_in(0.0, include_low=False, rule="must be a positive number of seconds")
_wei = integer_in(1, 2**128 - 1, "must be a number of wei in [1, 2^128)")
_hash_wei = number_in(0.0, include_low=True, rule="must be a number of wei, 0 or more")
_blocks = integer_in(2, None, "must be 2 or more blocks")
CHEQUE_INTERVAL = 60.0
"""The payer's interval: one cheque per refusal is worth one interval, ``--cheque-wei``."""
DEFAULT_HASH_VALUE_WEI = 10**7
"""What a hash is worth by default, in wei: a light-mode hash is ~30 ms of a ~10 W core,
about 1e-7 kWh, ~1e-8 USD, ~4e6 wei at 3000 USD an ether; rounded up for the wait."""


def parse_address(text: str) -> bytes:
    """A 0x-prefixed 20-byte address (argparse type)."""
    try:
        raw = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        raw = b""
    # An address is 20 bytes of hex.
    if len(raw) != 20:
        raise argparse.ArgumentTypeError(f"not a 0x-prefixed 20-byte address: {text!r}")
    return raw


def state_file_for(lottery_file: Path, url: str) -> Path:
    """The payer state file for one server: its own, named by a digest of its URL."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return lottery_file.with_name(f"{lottery_file.stem}.{digest}{lottery_file.suffix}")


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
    _add_cheque_args(p)
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level; logs are JSON lines on stderr (default: %(default)s)",
    )


def _add_cheque_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "paying by lottery cheque",
        "With --lottery-contract, each refusal is paid by the cheaper way at that server: a "
        "stamped lottery cheque at its credit_price_wei (lottery_info), or hashes valued at "
        "--hash-value-wei each (a tie mines). Without it the proxy only mines.",
    )
    g.add_argument(
        "--lottery-contract",
        type=parse_address,
        metavar="ADDRESS",
        help="the settlement contract (`rpcpay chain` prints it); turns cheques on "
        "(default: off, mine only)",
    )
    g.add_argument(
        "--chain-url",
        default=DEFAULT_CHAIN_URL,
        metavar="URL",
        help="Ethereum JSON-RPC node of the contract (default: %(default)s)",
    )
    g.add_argument(
        "--payer-key-file",
        type=Path,
        default=Path("rpcpay-payer.key"),
        metavar="FILE",
        help="the payer's secp256k1 key, 64 hex digits, owner-only; made on first use: fund "
        "its address (default: %(default)s)",
    )
    g.add_argument(
        "--lottery-file",
        type=Path,
        default=Path("rpcpay-lottery.json"),
        metavar="FILE",
        help="base name of the payer state files, one per server (FILE's stem, a digest of "
        "the server URL, FILE's suffix), owner-only (default: %(default)s)",
    )
    g.add_argument(
        "--stamper-url",
        default=DEFAULT_STAMPER_URL,
        metavar="URL",
        help="the stamper (`rpcpay stamper run`) (default: %(default)s)",
    )
    g.add_argument(
        "--prize",
        type=_wei,
        default=DEFAULT_PRIZE,
        metavar="WEI",
        help="wei locked in each new lottery (default: %(default)s = 0.006 ETH)",
    )
    g.add_argument(
        "--reveal-blocks",
        type=_blocks,
        default=DEFAULT_REVEAL_BLOCKS,
        metavar="BLOCKS",
        help="a new lottery reveals this many blocks ahead, at most the contract's "
        "max_reveal_delay (default: %(default)s = 30 days of 12 s blocks)",
    )
    g.add_argument(
        "--cheque-wei",
        type=_wei,
        default=DEFAULT_PRICE_PER_MINUTE,
        metavar="WEI",
        help="the value of one cheque, paid per refusal, rounded down to whole credits of the "
        "server (at least one) (default: %(default)s = 100 gwei)",
    )
    g.add_argument(
        "--hash-value-wei",
        type=_hash_wei,
        default=DEFAULT_HASH_VALUE_WEI,
        metavar="WEI",
        help="what one hash of yours is worth, in wei: mining a credit costs the server's "
        "hashes per credit times this; 0 always mines where hashes pay (default: "
        "%(default)s, about a light-mode hash's electricity)",
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
    chains: list[JsonRpcChain] = []
    try:
        cheques = _cheque_funders(args, key, chains) if args.lottery_contract else None
        asyncio.run(_serve(args, host, port, key, cheques))
    finally:
        for chain in chains:
            chain.close()
    return 0


def _cheque_funders(
    args: argparse.Namespace, key: ClientKey, chains: list[JsonRpcChain]
) -> Callable[[str], Funder]:
    """A ``ChequeFunder`` per server URL, each with its own payer, chain link and state file
    (the chain is reached now: a wrong URL or contract stops the command before it listens)."""
    from rpcpay.chain.jsonrpc import JsonRpcChain

    payer_key, made = load_key(args.payer_key_file, create=True)
    if made:
        print(f"new payer key in {args.payer_key_file}: fund its address before paying",
              file=sys.stderr)  # fmt: skip

    def funder_for(url: str) -> Funder:
        chain = JsonRpcChain(args.chain_url)
        chains.append(chain)
        chain.attach(args.lottery_contract)
        state = PayerStateFile(state_file_for(args.lottery_file, url))

        def make_payer(session: aiohttp.ClientSession) -> LotteryPayer:
            return LotteryPayer(
                chain, payer_key, state, args.stamper_url, [ServerSpec(url, None, args.cheque_wei)],
                key, session, interval=CHEQUE_INTERVAL, prize=args.prize,
                reveal_blocks=args.reveal_blocks,
            )  # fmt: skip

        return ChequeFunder(make_payer)

    funders = {url.rstrip("/"): funder_for(url.rstrip("/")) for url in args.server}
    return funders.__getitem__


async def _serve(
    args: argparse.Namespace,
    host: str,
    port: int,
    key: ClientKey,
    cheques: Callable[[str], Funder] | None,
) -> None:
    funder = MiningFunder()
    proxy = PayingProxy(
        args.server, funder, key=key, host=host, port=port,
        max_latency=args.max_latency_ms / 1000, probe_interval=args.probe_interval,
        cheques=cheques, hash_value_wei=args.hash_value_wei, policy=pay_policy(args),
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
