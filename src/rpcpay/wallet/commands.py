"""``rpcpay wallet``: monero-wallet-cli 0.18's pay-for-RPC commands, and a balance keeper.

Commands: ``start_mining_for_rpc [threads]``, ``stop_mining_for_rpc``, ``rpc_payments``,
``call METHOD [PARAMS_JSON]`` and ``keep`` (the long-running mode that mines to keep the balance
at the credits target); and the lottery rail's ``lottery-deposit``, ``lottery-pay``,
``lottery-status`` and ``lottery-refund`` (``lottery_payer_commands``).

The wallet file is the channel between commands: ``stop_mining_for_rpc`` sets ``mining_stopped``
there and a running keeper, which reads the file every second, really stops its miner
(monero-wallet-cli's stop_mining_for_rpc left auto-mining running: Monero issue #7280). The
keeper writes a small status file beside the wallet file (``<wallet>.status``, 0600) with its
hash rate, so ``rpc_payments`` can show H/s and an ETA.

Exit codes: 0 done, 1 the daemon or the mining failed, 2 bad input (flags, JSON, wallet file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rpcpay.argtypes import integer_in, number_in
from rpcpay.errors import ConfigError, RpcPayError
from rpcpay.wallet.client import (
    AccessInfo,
    ClientError,
    PayingClient,
    PaymentRequired,
)
from rpcpay.wallet.keeper import (
    DEFAULT_DAEMON,
    DEFAULT_WALLET_FILE,
    BalanceKeeper,
    MinerLike,
    credits_per_hash,
    describe_client_error,
    describe_offer,
    eta,
    format_duration,
    make_miner,
    read_status,
)
from rpcpay.wallet.lottery_payer_commands import (
    LOTTERY_COMMANDS,
    add_lottery_parsers,
    run_lottery,
)
from rpcpay.wallet.pay_when import add_bid_argument, add_pay_when_arguments, pay_policy
from rpcpay.wallet.proxy_commands import add_proxy_parser, run_proxy
from rpcpay.wallet.settings import (
    SECRET_WARNING,
    WalletSettings,
    client_key_for,
    load_wallet,
    parse_secret_key,
    update_wallet,
)

JSON = Any
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


_threads = integer_in(0, None, "must be 0 (one per CPU) or more")
_non_negative_int = integer_in(0, None, "must be 0 or more")
_threshold = number_in(0.0, include_low=True, rule="must be a number >= 0 (credits per hash)")
_seconds = number_in(0.0, include_low=False, rule="must be a positive number of seconds")


def _secret(text: str) -> bytes:
    try:
        return parse_secret_key(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--credits-target",
        type=_non_negative_int,
        metavar="N",
        help="save a new credits target: the balance mining stops at; 0 means 50000 "
        "(default: keep the wallet file's, initially 0)",
    )
    p.add_argument(
        "--auto-mine-threshold",
        type=_threshold,
        metavar="RATE",
        help="save a new auto-mine-for-rpc-payment-threshold: the lowest credits per hash "
        "worth mining for; 0 means any rate (default: keep the wallet file's, initially "
        "-1 = any rate, as monero-wallet-cli)",
    )
    p.add_argument(
        "--persistent-rpc-client-id",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="save whether to reuse one client id across runs (keeps the balance, but lets "
        "the node link your runs) (default: keep the wallet file's, initially off)",
    )
    p.add_argument(
        "--auto-mine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="save whether to mine automatically when the daemon asks for payment "
        "(default: keep the wallet file's, initially on)",
    )


def add_wallet_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``wallet`` and its commands to the ``rpcpay`` command line."""
    p = sub.add_parser(
        "wallet",
        help="pay for RPC calls with hashes: mine credits, check the balance, make calls",
        description="The paying side of monerod 0.18's RPC payment: monero-wallet-cli's "
        "start_mining_for_rpc, stop_mining_for_rpc and rpc_payments, one-off paid calls, and "
        "keep, a long-running mode that mines to keep the balance at the credits target.",
    )
    p.add_argument(
        "--daemon",
        default=DEFAULT_DAEMON,
        metavar="URL",
        help="the paying node: monerod with payment on, or rpcpay serve (default: %(default)s)",
    )
    p.add_argument(
        "--wallet-file",
        type=Path,
        default=Path(DEFAULT_WALLET_FILE),
        metavar="FILE",
        help="the wallet settings file, JSON, kept 0600 (default: %(default)s)",
    )
    p.add_argument(
        "--rpc-client-secret-key",
        type=_secret,
        metavar="HEX",
        help="use this client secret key (64 hex characters), e.g. to spend credits mined "
        "elsewhere; anyone who knows it can spend its credits (default: the persistent key "
        "if persistent-rpc-client-id is on, else a new key for this run)",
    )
    p.add_argument(
        "--mining-mode",
        choices=("light", "fast", "auto"),
        default="light",
        help="RandomX mode for mining: fast builds a 2 GiB dataset (about a minute) and then "
        "hashes several times faster; auto picks fast when memory allows "
        "(default: %(default)s)",
    )
    add_pay_when_arguments(p)
    add_bid_argument(p)
    commands = p.add_subparsers(
        dest="wallet_command",
        required=True,
        metavar="COMMAND",
        help="what to do (each has its own --help)",
    )

    start = commands.add_parser(
        "start_mining_for_rpc",
        help="mine for credits whatever the auto-mine settings",
        description="Clear stop_mining_for_rpc and ask for mining whatever the rate and "
        "target; a running keep resumes within a second.",
    )
    start.add_argument(
        "threads",
        nargs="?",
        type=_threads,
        help="mining threads, 0 for one per CPU (default: keep the wallet file's, initially 0)",
    )

    commands.add_parser(
        "stop_mining_for_rpc",
        help="stop mining for credits, including auto-mining",
        description="Set mining_stopped in the wallet file; a running keep stops its miner "
        "within a second (unlike monero-wallet-cli 0.18, this also stops auto-mining).",
    )

    payments = commands.add_parser(
        "rpc_payments",
        help="show the client id, credits, target, rate, hash rate and ETA",
        description="Ask the daemon for this client's balance and terms (rpc_access_info) and "
        "show them with the running keeper's hash rate and the time to the target.",
    )
    payments.add_argument(
        "--show-secret",
        action="store_true",
        help="also print the client secret key (anyone who knows it can spend the credits) "
        "(default: never printed)",
    )

    call = commands.add_parser(
        "call",
        help="make one paid JSON-RPC call (any method, array or object params), mining "
        "first if the balance is short",
        description="Make one paid JSON-RPC call and print its result as JSON. On PAYMENT "
        "REQUIRED, mine (if auto-mining allows) until the call can be paid, then retry.",
    )
    call.add_argument("method", help="the JSON-RPC method, e.g. get_info")
    call.add_argument(
        "params",
        nargs="?",
        default="{}",
        metavar="PARAMS_JSON",
        help="the params, a JSON array (Ethereum style, e.g. '[\"latest\", false]') or "
        "object (monerod style) (default: %(default)s)",
    )
    call.add_argument(
        "--max-mining-seconds",
        type=_seconds,
        default=600.0,
        metavar="S",
        help="give up if the call cannot be paid after mining this long (default: %(default)s)",
    )
    call.add_argument(
        "--threads",
        type=_threads,
        metavar="N",
        help="mining threads, 0 for one per CPU (default: the wallet file's, initially 0)",
    )
    _add_settings_flags(call)

    keep = commands.add_parser(
        "keep",
        help="keep mining to hold the balance at the credits target",
        description="Long-running: mine when the balance is below the credits target and the "
        "node's credits per hash reach the auto-mine threshold, stop at the target, and obey "
        "stop_mining_for_rpc/start_mining_for_rpc. Progress goes to stderr.",
    )
    keep.add_argument(
        "--threads",
        type=_threads,
        metavar="N",
        help="save the number of mining threads, 0 for one per CPU "
        "(default: the wallet file's, initially 0)",
    )
    keep.add_argument(
        "--duration",
        type=_seconds,
        metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )
    _add_settings_flags(keep)
    add_lottery_parsers(commands)
    add_proxy_parser(commands)
    return p


def _fail(args: argparse.Namespace, text: str, code: int) -> int:
    print(f"rpcpay wallet {args.wallet_command}: {text}", file=sys.stderr)
    return code


def _wallet_path(args: argparse.Namespace) -> Path:
    return Path(os.path.expanduser(str(args.wallet_file)))


def _apply_settings_flags(args: argparse.Namespace, path: Path) -> WalletSettings:
    changes: dict[str, Any] = {}
    if getattr(args, "credits_target", None) is not None:
        changes["credits_target"] = args.credits_target
    if getattr(args, "auto_mine_threshold", None) is not None:
        changes["auto_mine_threshold"] = args.auto_mine_threshold
    if getattr(args, "persistent_rpc_client_id", None) is not None:
        changes["persistent_client_id"] = args.persistent_rpc_client_id
    if getattr(args, "auto_mine", None) is not None:
        changes["auto_mine"] = args.auto_mine
    if args.wallet_command == "keep" and args.threads is not None:
        changes["mining_threads"] = args.threads
    return update_wallet(path, **changes) if changes else load_wallet(path)


def run_wallet(args: argparse.Namespace) -> int:
    """Run one ``rpcpay wallet`` command; the exit code. Never raises for expected errors."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "start_mining_for_rpc": _start_mining,
        "stop_mining_for_rpc": _stop_mining,
        "rpc_payments": _rpc_payments,
        "call": _call,
        "keep": _keep,
    }
    if args.rpc_client_secret_key is not None:
        print(
            "warning: using a client secret key from the command line; anyone who knows "
            "this key can spend its credits (and it may be in your shell history)",
            file=sys.stderr,
        )
    try:
        if args.wallet_command in LOTTERY_COMMANDS:
            return run_lottery(args, _wallet_path(args), args.rpc_client_secret_key)
        if args.wallet_command == "proxy":
            return run_proxy(args, _wallet_path(args), args.rpc_client_secret_key)
        return handlers[args.wallet_command](args)
    except (ConfigError, RpcPayError) as exc:
        return _fail(args, str(exc), EXIT_USAGE)
    except ClientError as exc:
        return _fail(args, describe_client_error(exc, args.daemon), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130


def _start_mining(args: argparse.Namespace) -> int:
    path = _wallet_path(args)
    changes: dict[str, Any] = {"mining_stopped": False, "mining_requested": True}
    if args.threads is not None:
        changes["mining_threads"] = args.threads
    settings = update_wallet(path, **changes)
    threads = settings.mining_threads or "one per CPU"
    status = read_status(path)
    if status is not None:
        print(
            f"mining requested ({threads} threads); the running keeper (pid {status['pid']}) "
            "resumes within a second"
        )
    else:
        print(f"mining requested ({threads} threads); run `rpcpay wallet keep` to mine")
    print("Run stop_mining_for_rpc to stop")
    return EXIT_OK


def _stop_mining(args: argparse.Namespace) -> int:
    path = _wallet_path(args)
    update_wallet(path, mining_stopped=True, mining_requested=False)
    status = read_status(path)
    if status is not None:
        print(f"mining stopped; the running keeper (pid {status['pid']}) stops within a second")
    else:
        print("mining stopped")
    return EXIT_OK


def key_is_thrown_away(args: argparse.Namespace, settings: WalletSettings) -> bool:
    """Is this run's client key a new one nobody keeps (credits lost at exit)?"""
    return args.rpc_client_secret_key is None and not settings.persistent_client_id


def leftover_warning(credits: int) -> str:
    """What the user loses at exit with a throw-away key, and how to keep it."""
    return (
        f"note: {credits} credits stay with this run's throw-away client id and are lost at "
        "exit; to keep credits across runs, add --persistent-rpc-client-id once (the wallet "
        "file remembers it) and the same client id is used every run"
    )


def _key_origin(args: argparse.Namespace, settings: WalletSettings) -> str:
    if args.rpc_client_secret_key is not None:
        return "from --rpc-client-secret-key"
    if settings.persistent_client_id:
        return "persistent"
    return "new for this run"


def _rpc_payments(args: argparse.Namespace) -> int:
    path = _wallet_path(args)
    settings = load_wallet(path)
    key = client_key_for(settings, args.rpc_client_secret_key, path=path)

    async def ask() -> AccessInfo:
        async with PayingClient(args.daemon, key) as client:
            return await client.access_info()

    info = asyncio.run(ask())
    status = read_status(path)
    rate = credits_per_hash(info)
    target = settings.effective_credits_target
    lines = [
        f"client id: {key.public.hex()} ({_key_origin(args, settings)})",
        f"daemon: {args.daemon} (height {info.height})",
        f"credits: {info.credits}",
        f"credits target: {target}" + (" (0 means 50000)" if settings.credits_target == 0 else ""),
    ]
    same_client = status is not None and status.get("client_id") == key.public.hex()
    if same_client and status is not None:
        lines.append(f"credits spent: {status['spent']} (by the running keeper, this run)")
    else:
        lines.append("credits spent: unknown (tracked by a running keeper for its own id)")
    lines.append(
        f"credits per hash: {rate:g} ({info.credits_per_hash_found} per share at diff "
        f"{info.difficulty}{'; this is low' if describe_offer(info).endswith('low') else ''})"
    )
    hashrate = 0.0
    if status is not None and status.get("mining"):
        hashrate = float(status.get("hashrate") or 0.0)
        lines.append(f"hash rate: {hashrate:.1f} H/s (keeper pid {status['pid']})")
    else:
        lines.append("hash rate: 0 H/s (not mining)")
    if status is not None and not same_client:
        lines.append(
            f"keeper (pid {status['pid']}): client id {status['client_id']}, credits "
            f"{status['credits']}, spent {status['spent']}"
        )
    if status is not None and status.get("mining"):
        # The keeper is the one mining: its balance decides the time to the target.
        left = eta(int(status["credits"]), int(status["target"]), hashrate, rate)
        lines.append(f"ETA to target: {format_duration(left)} (keeper pid {status['pid']})")
    else:
        left = eta(info.credits, target, hashrate, rate)
        lines.append(f"ETA to target: {format_duration(left)}")
    state = "stopped" if settings.mining_stopped else "on" if settings.auto_mine else "off"
    lines.append(
        f"auto-mining: {state}, threshold {settings.auto_mine_threshold:g} credits/hash"
        + (" (any rate)" if settings.auto_mine_threshold <= 0 else "")
    )
    print("\n".join(lines))
    if args.show_secret:
        print(f"client secret key: {key.secret.hex()}")
        print(f"WARNING: {SECRET_WARNING}", file=sys.stderr)
    return EXIT_OK


def _parse_params(text: str) -> JSON:
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"PARAMS_JSON is not valid JSON: {exc}") from None
    # JSON-RPC params are structured: an array or an object.
    if not isinstance(params, (dict, list)):
        raise ConfigError(
            "PARAMS_JSON must be a JSON array or object, e.g. '[\"latest\", false]' or "
            "'{\"height\": 1}'"
        )
    return params


def _call(args: argparse.Namespace) -> int:
    params = _parse_params(args.params)
    path = _wallet_path(args)
    settings = _apply_settings_flags(args, path)
    if args.threads is not None:
        settings = replace(settings, mining_threads=args.threads)
    key = client_key_for(settings, args.rpc_client_secret_key, path=path)
    result = asyncio.run(_call_async(args, settings, key, params, path))
    if isinstance(result, int):
        return result
    answer, credits, charged = result
    print(json.dumps(answer, indent=2, sort_keys=True))
    if charged:
        print(f"paid; credits left: {credits}", file=sys.stderr)
    else:
        print("free call: nothing was charged", file=sys.stderr)
    if charged and credits > 0 and key_is_thrown_away(args, settings):
        print(leftover_warning(credits), file=sys.stderr)
    return EXIT_OK


async def _call_async(
    args: argparse.Namespace,
    settings: WalletSettings,
    key: Any,
    params: JSON,
    path: Path,
) -> tuple[JSON, int, bool] | int:
    miner: MinerLike | None = None
    deadline = time.monotonic() + args.max_mining_seconds
    async with PayingClient(args.daemon, key, policy=pay_policy(args), bid=args.bid) as client:
        try:
            while True:
                try:
                    answer = await client.call(args.method, params)
                    return answer, client.credits, client.charged
                except PaymentRequired as exc:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return _fail(
                            args,
                            f"still PAYMENT REQUIRED after mining {args.max_mining_seconds:g}s "
                            f"(credits {exc.credits})",
                            EXIT_FAILED,
                        )
                    if miner is None:
                        miner = make_miner(settings.mining_threads, args.mining_mode)
                    keeper = BalanceKeeper(
                        client, miner, settings, wallet_path=path, write_status=False
                    )
                    print(f"payment required (credits {exc.credits}); mining", file=sys.stderr)
                    price = (exc.terms or {}).get("price", 1)
                    need = max(exc.credits + 1, price if isinstance(price, int) else 1)
                    if not await keeper.mine_until(need, timeout=left):
                        if keeper.info is None and keeper.last_error:
                            return _fail(args, keeper.last_error, EXIT_FAILED)
                        want, reason = keeper.should_mine()
                        if not want:
                            return _fail(
                                args, f"payment required, not mining: {reason}", EXIT_FAILED
                            )
        finally:
            if miner is not None:
                miner.stop()
                miner.close()


def _keep(args: argparse.Namespace) -> int:
    return asyncio.run(keep_async(args))


async def keep_async(args: argparse.Namespace) -> int:
    """The ``keep`` command inside a running event loop (cancel it to stop)."""
    path = _wallet_path(args)
    settings = _apply_settings_flags(args, path)
    key = client_key_for(settings, args.rpc_client_secret_key, path=path)
    mode = args.mining_mode
    miner = make_miner(settings.mining_threads, mode)
    try:
        async with PayingClient(args.daemon, key) as client:
            keeper = BalanceKeeper(
                client,
                miner,
                settings,
                wallet_path=path,
                miner_factory=lambda threads: make_miner(threads, mode),
            )
            print(
                f"keeping credits at {settings.effective_credits_target} for client id "
                f"{key.public.hex()} ({_key_origin(args, settings)}) at {args.daemon}",
                file=sys.stderr,
            )
            try:
                await keeper.run(args.duration)
            finally:
                keeper.miner.close()
                if client.credits > 0 and key_is_thrown_away(args, settings):
                    print(leftover_warning(client.credits), file=sys.stderr)
            print(keeper.progress_line(), file=sys.stderr)
    finally:
        miner.close()  # closing twice is harmless
    return EXIT_OK
