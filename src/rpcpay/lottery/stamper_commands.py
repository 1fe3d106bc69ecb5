"""``rpcpay stamper``: run the stamping service, and manage the stamper's deposit.

Commands: ``run`` (the HTTP service), ``status`` (the key's address and registry
entry), ``deposit --amount WEI``, ``exit`` (start the delayed exit) and ``withdraw``.
All of them talk to one settlement contract through a JSON-RPC node: a stamper
serves payers and payees that share its chain, so the in-process EVM (which lives
and dies with one process) is not an option here; tests run the service on it
directly.

Exit codes: 0 done, 2 bad input or a failure it names (flags, key file, chain,
a refused transaction).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from rpcpay.argtypes import integer_in
from rpcpay.logs import configure_logging
from rpcpay.lottery.eth import EthKey, checksum_address
from rpcpay.lottery.keyfile import load_key
from rpcpay.lottery.stamper import (
    DEFAULT_FEE_BPS,
    DEFAULT_STAMPER_CONFIRMATIONS,
    DEFAULT_STAMPER_REVEAL_MARGIN,
)

if TYPE_CHECKING:  # the chain layer loads py-evm: only the stamper's own commands pay for it
    from rpcpay.chain.jsonrpc import JsonRpcChain
    from rpcpay.chain.settlement import Receipt

__all__ = ["add_stamper_parser", "run_stamper"]

DEFAULT_CHAIN_URL = "http://127.0.0.1:8545"
DEFAULT_DATA_DIR = Path("rpcpay-stamper")

_port = integer_in(0, 65535, "a port is 0-65535 (0 picks a free one)")
_blocks = integer_in(0, None, "must be 0 or more blocks")
_bps = integer_in(0, 9999, "must be 0-9999 basis points (100 = 1%)")
_chain_id = integer_in(1, 2**64 - 1, "a chain id is 1 to 2^64-1")
_wei = integer_in(1, 2**256 - 1, "must be a positive number of wei")


def _address(text: str) -> bytes:
    value = text.removeprefix("0x")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    # An address is 20 bytes of hex.
    if len(raw) != 20:
        raise argparse.ArgumentTypeError(f"not a 0x-prefixed 20-byte address: {text!r}")
    return raw


def _add_chain_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chain-url",
        default=DEFAULT_CHAIN_URL,
        metavar="URL",
        help="Ethereum JSON-RPC node the settlement contract is on (anvil, geth, a provider); "
        "only its scheme, host and port are ever logged (default: %(default)s)",
    )
    p.add_argument(
        "--chain-id",
        type=_chain_id,
        metavar="ID",
        help="refuse to start if the node serves another chain (default: accept the node's)",
    )
    p.add_argument(
        "--contract",
        type=_address,
        required=True,
        metavar="ADDRESS",
        help="address of the deployed stamped-lottery settlement contract (required)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where the stamp store and the key live (default: %(default)s)",
    )
    p.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="the stamper's secp256k1 key, 64 hex digits, owner-only; `run` makes one if "
        "missing (default: DATA_DIR/stamper.key)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level; logs are JSON lines on stderr (default: %(default)s)",
    )


def add_stamper_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``rpcpay stamper`` and its commands."""
    p = sub.add_parser(
        "stamper",
        help="stamp payers' lottery cheques, never two overlapping (docs/lottery.md)",
        description="The stamper of the stamped-lottery rail: it certifies, with its deposit "
        "at stake, that no two cheques of a lottery share a ticket. See docs/lottery.md.",
    )
    commands = p.add_subparsers(
        dest="stamper_command", required=True, metavar="COMMAND", help="what to do (run serves)"
    )
    run = commands.add_parser(
        "run",
        help="serve stamp requests over HTTP",
        description="Serve POST /stamp, GET /info and GET /lottery/0x<id>. Every stamped range "
        "is committed to DATA_DIR/stamps.sqlite3 before its stamp is sent.",
    )
    _add_chain_flags(run)
    run.add_argument(
        "--bind-ip", default="127.0.0.1", help="listener address (default: %(default)s)"
    )
    run.add_argument(
        "--bind-port", type=_port, default=18100, help="listener port (default: %(default)s)"
    )
    run.add_argument(
        "--fee-bps",
        type=_bps,
        default=DEFAULT_FEE_BPS,
        metavar="BPS",
        help="fee per stamp, in basis points of the cheque's value, paid by a fee cheque "
        "for the tickets right after it (default: %(default)s = 1%%)",
    )
    run.add_argument(
        "--reveal-margin",
        type=_blocks,
        default=DEFAULT_STAMPER_REVEAL_MARGIN,
        metavar="BLOCKS",
        help="refuse lotteries that reveal within this many blocks of the newest head; above "
        "the payees' 20 so a stamped cheque still reaches them in time (default: %(default)s)",
    )
    run.add_argument(
        "--confirmations",
        type=_blocks,
        default=DEFAULT_STAMPER_CONFIRMATIONS,
        metavar="BLOCKS",
        help="stamp only for lotteries at least this deep, so a reorg cannot remove them "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--store-sync",
        choices=("full", "normal"),
        default="full",
        help="SQLite durability of the stamp store: full survives power loss; normal only a "
        "crash or kill -9 of the stamper, and a lost stamp can cost the whole deposit "
        "(default: %(default)s)",
    )
    status = commands.add_parser(
        "status",
        help="show the stamper's address, balance and registry entry",
        description="Print the key's address, its balance, and its deposit, exit block and "
        "slashed flag in the settlement contract.",
    )
    _add_chain_flags(status)
    deposit = commands.add_parser(
        "deposit",
        help="open or top up the stamper's deposit",
        description="Send WEI to the contract as this stamper's deposit (deposit_stamper).",
    )
    _add_chain_flags(deposit)
    deposit.add_argument(
        "--amount", type=_wei, required=True, metavar="WEI", help="wei to deposit (required)"
    )
    leave = commands.add_parser(
        "exit",
        help="start the delayed exit (no new lottery can name the stamper)",
        description="request_exit: the deposit can be withdrawn after the contract's exit "
        "delay, once every lottery that could name this stamper is over.",
    )
    _add_chain_flags(leave)
    withdraw = commands.add_parser(
        "withdraw",
        help="take the deposit back once the exit delay has passed",
        description="withdraw_stamper: return the deposit to the stamper's address.",
    )
    _add_chain_flags(withdraw)


def _connect(args: argparse.Namespace, *, create_key: bool) -> tuple[JsonRpcChain, EthKey]:
    from rpcpay.chain.jsonrpc import JsonRpcChain

    key_file = args.key_file or args.data_dir / "stamper.key"
    key, made = load_key(key_file, create=create_key)
    if made:
        print(f"rpcpay stamper: new key in {key_file}, address {checksum_address(key.address)}")
    chain = JsonRpcChain(args.chain_url, chain_id=args.chain_id)
    chain.attach(args.contract)
    return chain, key


def _report(what: str, receipt: Receipt) -> int:
    print(
        f"{what}: mined in block {receipt.block_number}, gas {receipt.gas_used}, "
        f"fee {receipt.fee} wei, tx 0x{receipt.tx_hash.hex()}"
    )
    return 0


def run_stamper(args: argparse.Namespace) -> int:
    """Run one ``rpcpay stamper`` command (errors are ``RpcPayError``s for cli.main)."""
    configure_logging(args.log_level)
    command = args.stamper_command
    chain, key = _connect(args, create_key=command == "run")
    try:
        if command == "run":
            from rpcpay.lottery.stamper_server import StamperConfig, serve_forever

            config = StamperConfig(
                bind_ip=args.bind_ip,
                bind_port=args.bind_port,
                data_dir=args.data_dir,
                fee_bps=args.fee_bps,
                reveal_margin=args.reveal_margin,
                confirmations=args.confirmations,
                store_sync=args.store_sync,
            )
            asyncio.run(serve_forever(config, chain, key))
            return 0
        if command == "status":
            state = chain.stamper(key.address)
            print(f"stamper  {checksum_address(key.address)}")
            print(f"chain    {chain.chain_id} at {chain.node}, contract "
                  f"{checksum_address(chain.contract)}")  # fmt: skip
            print(f"balance  {chain.balance(key.address)} wei")
            print(f"deposit  {state.deposit} wei")
            print(f"exit     {state.exit_block or 'not requested'}")
            print(f"slashed  {'yes' if state.slashed else 'no'}")
            print(f"active   {'yes' if state.active else 'no'}")
            return 0
        if command == "deposit":
            return _report("deposited", chain.deposit_stamper(key, args.amount))
        if command == "exit":
            receipt = chain.request_exit(key)
            exit_block = chain.stamper(key.address).exit_block
            _report("exit requested", receipt)
            print(f"withdraw from block {exit_block} on")
            return 0
        return _report("withdrawn", chain.withdraw_stamper(key))
    finally:
        chain.close()
