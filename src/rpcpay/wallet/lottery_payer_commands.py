"""``rpcpay wallet lottery-*``: pay servers with stamped lottery cheques (docs/lottery.md §12).

- ``lottery-deposit``: lock a prize in a new lottery naming the stamper;
- ``lottery-pay``: the long-running payer, a cheque per server per interval, with progress;
- ``lottery-status``: the payer's lotteries, their cursors and what the chain says;
- ``lottery-refund``: take back the prizes nobody won, once their redeem window is over.

The payer's Ethereum key lives in an owner-only key file (made on first use), its
lotteries and ticket cursors in an owner-only state file. The chain is any Ethereum
JSON-RPC node: ``rpcpay chain`` serves the embedded one on 127.0.0.1:8545, the default.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from rpcpay.argtypes import integer_in, number_in
from rpcpay.errors import ConfigError
from rpcpay.lottery.eth import EthKey, checksum_address
from rpcpay.lottery.keyfile import load_key
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.lottery_payer import (
    DEFAULT_INTERVAL,
    DEFAULT_PRICE_PER_MINUTE,
    DEFAULT_PRIZE,
    DEFAULT_REVEAL_BLOCKS,
    LotteryPayer,
    ServerSpec,
)
from rpcpay.wallet.lottery_payer_state import LotteryStatus, PayerStateFile
from rpcpay.wallet.settings import client_key_for, load_wallet

if TYPE_CHECKING:  # the chain layer loads py-evm: only these commands pay for it
    from rpcpay.chain.jsonrpc import JsonRpcChain

__all__ = ["LOTTERY_COMMANDS", "add_lottery_parsers", "parse_server", "run_lottery"]

LOTTERY_COMMANDS = ("lottery-deposit", "lottery-pay", "lottery-status", "lottery-refund")
DEFAULT_CHAIN_URL = "http://127.0.0.1:8545"
DEFAULT_STAMPER_URL = "http://127.0.0.1:18100"

_wei = integer_in(1, 2**128 - 1, "must be a number of wei in [1, 2^128)")
_blocks = integer_in(2, None, "must be 2 or more blocks")
_rounds = integer_in(1, None, "must be 1 or more")
_chain_id = integer_in(1, 2**64 - 1, "a chain id is 1 to 2^64-1")
_seconds = number_in(0.0, include_low=False, rule="must be a positive number of seconds")


def _address(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        raw = b""
    # An address is 20 bytes of hex.
    if len(raw) != 20:
        raise argparse.ArgumentTypeError(f"not a 0x-prefixed 20-byte address: {text!r}")
    return raw


def parse_server(text: str) -> ServerSpec:
    """``URL[,0xADDRESS][,WEI_PER_MINUTE]`` -> a ``ServerSpec`` (argparse type). Without
    an address the payer asks the gateway's ``lottery_info`` for it."""
    url, *rest = text.split(",")
    usage = f"--server must be URL[,0xADDRESS][,WEI_PER_MINUTE], got {text!r}"
    # A URL, then maybe an address (0x…), then maybe a price (decimal wei).
    if not url.startswith(("http://", "https://")) or len(rest) > 2:
        raise argparse.ArgumentTypeError(usage)
    recipient = None
    if rest and rest[0].strip().lower().startswith("0x"):
        recipient = _address(rest.pop(0))
    price = DEFAULT_PRICE_PER_MINUTE
    if len(rest) > 1:
        raise argparse.ArgumentTypeError(usage)
    if rest:
        try:
            price = int(rest[0])
        except ValueError:
            price = 0
        # A price is a positive number of wei.
        if price <= 0:
            raise argparse.ArgumentTypeError(f"the price in {text!r} must be wei > 0 per minute")
    return ServerSpec(url, recipient, price)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chain-url",
        default=DEFAULT_CHAIN_URL,
        metavar="URL",
        help="Ethereum JSON-RPC node of the settlement contract; `rpcpay chain` serves the "
        "embedded one there (default: %(default)s)",
    )
    p.add_argument(
        "--chain-id",
        type=_chain_id,
        metavar="ID",
        help="refuse a node on another chain (default: accept the node's)",
    )
    p.add_argument(
        "--contract",
        type=_address,
        metavar="ADDRESS",
        help="the settlement contract (`rpcpay chain` prints it) (default: the one in "
        "--lottery-file; required the first time)",
    )
    p.add_argument(
        "--payer-key-file",
        type=Path,
        default=Path("rpcpay-payer.key"),
        metavar="FILE",
        help="the payer's secp256k1 key, 64 hex digits, owner-only; made on first use: fund "
        "its address before paying (default: %(default)s)",
    )
    p.add_argument(
        "--lottery-file",
        type=Path,
        default=Path("rpcpay-lottery.json"),
        metavar="FILE",
        help="the payer's lotteries and ticket cursors, JSON, owner-only, saved before every "
        "stamp request (default: %(default)s)",
    )


def _add_lottery_terms(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stamper-url",
        default=DEFAULT_STAMPER_URL,
        metavar="URL",
        help="the stamper (`rpcpay stamper run`) (default: %(default)s)",
    )
    p.add_argument(
        "--prize",
        type=_wei,
        default=DEFAULT_PRIZE,
        metavar="WEI",
        help="wei locked in each new lottery, the most one winner gets; keep it well above a "
        "claim's gas cost; a default gateway takes two lotteries of one stamper at 0.006 ETH "
        "(default: %(default)s = 0.006 ETH)",
    )
    p.add_argument(
        "--reveal-blocks",
        type=_blocks,
        default=DEFAULT_REVEAL_BLOCKS,
        metavar="BLOCKS",
        help="a new lottery reveals this many blocks ahead, at most the contract's "
        "max_reveal_delay; its prize is locked until the redeem window after that "
        "(default: %(default)s = 30 days of 12 s blocks)",
    )


def add_lottery_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``lottery-*`` commands under ``rpcpay wallet``."""
    deposit = commands.add_parser(
        "lottery-deposit",
        help="lock a prize in a new lottery for stamped cheques",
        description="Create a lottery (create_lottery) naming the stamper at --stamper-url, "
        "with --prize wei, revealing --reveal-blocks ahead. lottery-pay creates lotteries "
        "itself when needed; this makes one ahead of time.",
    )
    _add_common(deposit)
    _add_lottery_terms(deposit)

    pay = commands.add_parser(
        "lottery-pay",
        help="pay servers a stamped lottery cheque every interval (long-running)",
        description="Every --interval seconds, send each --server a cheque worth its price for "
        "that interval, stamped by the stamper, to its JSON-RPC method lottery_pay_cheque, "
        "credited to this wallet's client id. Creates a new lottery before the current one "
        "gets close to its reveal, and refunds lotteries nobody won. Progress goes to stderr.",
    )
    _add_common(pay)
    _add_lottery_terms(pay)
    pay.add_argument(
        "--server",
        type=parse_server,
        action="append",
        required=True,
        metavar="URL[,0xADDRESS][,WEI_PER_MINUTE]",
        help="a server to pay: its base URL (cheques go to URL/json_rpc), its payee address "
        "(default: the one its lottery_info announces; if given, it must match), and its price "
        f"(default: {DEFAULT_PRICE_PER_MINUTE} wei = 100 gwei per minute, vipnode's); each "
        "cheque is rounded down to whole credits of the server (at least one); repeat for "
        "each server (required)",
    )
    pay.add_argument(
        "--interval",
        type=_seconds,
        default=DEFAULT_INTERVAL,
        metavar="S",
        help="seconds between cheques to each server (default: %(default)s)",
    )
    pay.add_argument(
        "--rounds", type=_rounds, metavar="N", help="stop after N rounds (default: no limit)"
    )
    pay.add_argument(
        "--duration",
        type=_seconds,
        metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )

    status = commands.add_parser(
        "lottery-status",
        help="show the payer's lotteries, cursors and their state on chain",
        description="For each lottery in --lottery-file: prize, tickets handed out, reveal "
        "block, and whether it is open, won, refunded or refundable.",
    )
    _add_common(status)

    refund = commands.add_parser(
        "lottery-refund",
        help="take back prizes nobody won, after their redeem window",
        description="refund every lottery in --lottery-file whose redeem window is over and "
        "whose prize nobody claimed.",
    )
    _add_common(refund)


def _connect(args: argparse.Namespace, *, create_key: bool) -> tuple[JsonRpcChain, EthKey]:
    from rpcpay.chain.jsonrpc import JsonRpcChain

    key, made = load_key(args.payer_key_file, create=create_key)
    if made:
        print(
            f"new payer key in {args.payer_key_file}, address {checksum_address(key.address)}: "
            "fund it before paying",
            file=sys.stderr,
        )
    contract = args.contract
    if contract is None:
        saved = PayerStateFile(args.lottery_file).load()
        if saved is None:
            raise ConfigError(f"no --contract given and no {args.lottery_file} yet")
        contract = saved.contract
    chain = JsonRpcChain(args.chain_url, chain_id=args.chain_id)
    try:
        chain.attach(contract)
    except BaseException:
        chain.close()
        raise
    return chain, key


def run_lottery(args: argparse.Namespace, wallet_path: Path, secret: bytes | None) -> int:
    """Run one ``lottery-*`` command; errors are ``RpcPayError``s for the wallet's handler."""
    command = args.wallet_command
    chain, key = _connect(args, create_key=command in ("lottery-deposit", "lottery-pay"))
    try:
        if command == "lottery-status":
            return _status(args, chain, key)
        client_key = client_key_for(load_wallet(wallet_path), secret, path=wallet_path)
        return asyncio.run(_run_async(args, chain, key, client_key))
    finally:
        chain.close()


async def _run_async(
    args: argparse.Namespace, chain: JsonRpcChain, key: EthKey, client: ClientKey
) -> int:
    state_file = PayerStateFile(args.lottery_file)
    async with aiohttp.ClientSession() as session:
        payer = LotteryPayer(
            chain,
            key,
            state_file,
            getattr(args, "stamper_url", DEFAULT_STAMPER_URL),
            getattr(args, "server", None) or [],
            client,
            session,
            interval=getattr(args, "interval", DEFAULT_INTERVAL),
            prize=getattr(args, "prize", DEFAULT_PRIZE),
            reveal_blocks=getattr(args, "reveal_blocks", DEFAULT_REVEAL_BLOCKS),
        )
        head = await asyncio.to_thread(chain.block_number)
        if args.wallet_command == "lottery-refund":
            done = await payer.refund_due(head)
            for lottery_id in done:
                print(f"refunded lottery 0x{lottery_id.hex()}")
            if not done:
                print("nothing to refund yet")
            return 0
        if args.wallet_command == "lottery-deposit":
            info = await payer.stamper_info()
            lottery = await payer.create_lottery(info, head)
            print(f"lottery 0x{lottery.id.hex()}: prize {lottery.terms.prize} wei, stamper "
                  f"{checksum_address(info.stamper)}, reveals at block "
                  f"{lottery.terms.reveal_block}")  # fmt: skip
            return 0
        for line in await payer.prepare():
            print(line, file=sys.stderr)
        print(
            f"paying {len(payer.servers)} servers every {payer.interval:g} s from payer "
            f"{checksum_address(key.address)}, credits to client id {client.public.hex()}",
            file=sys.stderr,
        )
        shown: list[str] = []

        def progress(line: str) -> None:
            shown.append(line)
            print(line, file=sys.stderr)

        try:
            await payer.run(args.rounds, args.duration, progress=progress)
        finally:
            # Interrupted mid-round: say where it stopped (once, not twice).
            if not shown or shown[-1] != payer.progress_line():
                print(payer.progress_line(), file=sys.stderr)
        return 0


def _status(args: argparse.Namespace, chain: JsonRpcChain, key: EthKey) -> int:
    state = PayerStateFile(args.lottery_file).load_for(chain.chain_id, chain.contract, key.address)
    head = chain.block_number()
    redeem = chain.params().redeem_blocks
    print(f"payer    {checksum_address(key.address)}, balance {chain.balance(key.address)} wei")
    print(f"chain    {chain.chain_id} at {chain.node}, contract "
          f"{checksum_address(chain.contract)}, head {head}")  # fmt: skip
    if not state.lotteries:
        print("no lotteries yet")
    for lottery in state.lotteries:
        onchain = chain.lottery(lottery.id)
        status = lottery.status.value
        if onchain is not None and onchain.paid:
            status = "won by a payee"
        elif onchain is not None and onchain.refunded:
            status = "refunded"
        elif lottery.status in (LotteryStatus.OPEN, LotteryStatus.RETIRED):
            if head > lottery.terms.reveal_block + redeem:
                status = "refundable (run lottery-refund)"
            elif head >= lottery.terms.reveal_block:
                status = (
                    f"revealed; redeem window until block {lottery.terms.reveal_block + redeem}"
                )
        print(
            f"lottery  0x{lottery.id.hex()}: prize {lottery.terms.prize} wei, handed out "
            f"{lottery.cursor} ({100 * lottery.cursor / lottery.terms.prize:.3f}%), reveals at "
            f"block {lottery.terms.reveal_block}, {status}"
        )
    return 0
