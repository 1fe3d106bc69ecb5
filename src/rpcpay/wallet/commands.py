"""``rpcpay wallet``: monero-wallet-cli 0.18's pay-for-RPC commands, and a balance keeper.

Commands: ``start_mining_for_rpc [threads]``, ``stop_mining_for_rpc``, ``rpc_payments``,
``call METHOD [PARAMS_JSON]`` and ``keep`` (the long-running mode that mines to keep the balance
at the credits target).

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
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO, cast

from rpcpay.argtypes import integer_in, number_in
from rpcpay.errors import ConfigError, RpcPayError
from rpcpay.wallet.client import (
    AccessInfo,
    ClientError,
    NodeError,
    PayingClient,
    PaymentRequired,
    ShareRefused,
    UpstreamDown,
)
from rpcpay.wallet.miner import eta_seconds
from rpcpay.wallet.settings import (
    MAX_PAYMENT_DIFF,
    MIN_PAYMENT_RATE,
    SECRET_WARNING,
    WalletSettings,
    client_key_for,
    load_wallet,
    parse_secret_key,
    update_wallet,
    write_private_json,
)

JSON = Any
DEFAULT_DAEMON = "http://127.0.0.1:18089"
DEFAULT_WALLET_FILE = "~/.rpcpay/wallet.json"
#: monero-wallet-cli refreshes rpc_access_info every 5 minutes, every 10 s while mining.
REFRESH_IDLE_S = 300.0
REFRESH_MINING_S = 10.0
#: How often a keeper re-reads the wallet file (for stop_mining_for_rpc).
POLL_FILE_S = 1.0
#: A status file older than this belongs to no running keeper.
STATUS_FRESH_S = 5.0
#: monerod's error code when payment is not enabled.
PAYMENTS_DISABLED_CODE = -21

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ShareLike(Protocol):
    @property
    def nonce(self) -> int: ...
    @property
    def cookie(self) -> int: ...


class MinerLike(Protocol):
    """What the keeper needs of ``rpcpay.wallet.miner.Miner`` (tests pass fakes)."""

    @property
    def hashes(self) -> int: ...
    @property
    def running(self) -> bool: ...
    def hashrate(self) -> float: ...
    def set_job(self, job: Any) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    async def next_share(self, timeout: float | None) -> ShareLike | None: ...


def make_job(info: AccessInfo) -> Any:
    """The miner's MiningJob for an rpc_access_info answer."""
    from rpcpay.wallet.miner import MiningJob

    return MiningJob(
        hashing_blob=info.hashing_blob,
        seed_hash=info.seed_hash,
        difficulty=info.difficulty,
        cookie=info.cookie,
    )


def make_miner(threads: int, mode: str) -> MinerLike:
    """The real RandomX miner; ``threads`` 0 means one per CPU."""
    from rpcpay.wallet.miner import Miner

    if mode not in ("light", "fast", "auto"):
        raise ConfigError(f"mining mode must be light, fast or auto, not {mode!r}")
    return Miner(threads=threads or None, mode=cast(Literal["light", "fast", "auto"], mode))


def credits_per_hash(info: AccessInfo) -> float:
    """The node's rate: credits_per_hash_found / difficulty."""
    return info.credits_per_hash_found / info.difficulty if info.difficulty > 0 else 0.0


def eta(credits: int, target: int, hashrate: float, rate: float) -> float | None:
    """Seconds to reach ``target`` at ``hashrate`` H/s and ``rate`` credits per hash.

    The node's rate is credits_per_hash_found / difficulty, so this is ``eta_seconds`` with
    the rate folded into one share of difficulty 1 (one formula, in ``rpcpay.wallet.miner``).
    """
    return (
        eta_seconds(credits, target, hashrate * rate, 1, 1)
        if rate > 0
        else (0.0 if credits >= target else None)
    )


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_offer(info: AccessInfo) -> str:
    """monero-wallet-cli's words for what a node asks: diff and credits per hash."""
    rate = credits_per_hash(info)
    low = info.difficulty > MAX_PAYMENT_DIFF or rate < MIN_PAYMENT_RATE
    return f"diff {info.difficulty}, {rate:g} credits/hash{' - this is low' if low else ''}"


def status_path_for(wallet_path: Path) -> Path:
    """Where a keeper publishes its status: beside the wallet file."""
    return wallet_path.with_name(wallet_path.name + ".status")


def read_status(wallet_path: Path, now: float | None = None) -> dict[str, JSON] | None:
    """A running keeper's status, or None when there is none (or it is stale)."""
    path = status_path_for(wallet_path)
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict) or not isinstance(status.get("updated"), int | float):
        return None
    if (time.time() if now is None else now) - status["updated"] > STATUS_FRESH_S:
        return None
    return status


class BalanceKeeper:
    """Keeps a client's balance at the credits target by mining shares.

    ``step()`` does one round: re-read the wallet file (every second), refresh rpc_access_info
    when due (new top hash; 10 s while mining, 5 min idle), start or stop the miner, then wait
    up to ``max_wait`` for a share and submit it. ``run(duration)`` loops ``step()``;
    ``mine_until(credits)`` mines to a balance whatever the target (for paying one call).
    """

    def __init__(
        self,
        client: PayingClient,
        miner: MinerLike,
        settings: WalletSettings,
        *,
        wallet_path: Path | None = None,
        out: TextIO | None = None,
        tty: bool | None = None,
        job_factory: Callable[[AccessInfo], Any] = make_job,
        miner_factory: Callable[[int], MinerLike] | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_idle: float = REFRESH_IDLE_S,
        refresh_mining: float = REFRESH_MINING_S,
        poll_interval: float = POLL_FILE_S,
        write_status: bool = True,
    ) -> None:
        self.client = client
        self.miner = miner
        self.settings = settings
        self.wallet_path = wallet_path
        self.out = out if out is not None else sys.stderr
        self.tty = tty if tty is not None else bool(getattr(self.out, "isatty", lambda: False)())
        self.job_factory = job_factory
        self.miner_factory = miner_factory
        self.clock = clock
        self.refresh_idle = refresh_idle
        self.refresh_mining = refresh_mining
        self.poll_interval = poll_interval
        self.write_status = write_status and wallet_path is not None
        self.info: AccessInfo | None = None
        self.mining = False
        self.spent = 0
        self.earned = 0
        self.shares_ok = 0
        self.shares_refused = 0
        self.last_error = ""
        self.reason = "starting"
        self.payments_disabled = False
        self._goal: int | None = None
        self._info_at = -math.inf
        self._polled_at = clock()
        self._job_key: tuple[bytes, bytes, int, int] | None = None
        self._need_refresh = True
        self._last_credits: int | None = None
        self._offer_shown = False
        self._progress_at = clock()
        self._status_at = -math.inf
        self._error_at = -math.inf
        self._started = clock()
        self._hashes0 = miner.hashes

    # -- decisions ----------------------------------------------------------------------

    @property
    def target(self) -> int:
        return self._goal if self._goal is not None else self.settings.effective_credits_target

    def should_mine(self) -> tuple[bool, str]:
        """Whether to mine now, and why (or why not)."""
        s, info = self.settings, self.info
        if s.mining_stopped:
            return False, "stopped (stop_mining_for_rpc); run start_mining_for_rpc to resume"
        if self.payments_disabled:
            return False, "the daemon does not require payment"
        if info is None:
            return False, "no job from the daemon yet"
        if info.credits_per_hash_found <= 0 or info.difficulty <= 0:
            return False, "the daemon pays no credits for hashes"
        if s.mining_requested and self._goal is None:
            return True, "mining requested (start_mining_for_rpc)"
        if self.client.credits >= self.target:
            return False, f"at target ({self.client.credits} >= {self.target} credits)"
        if s.mining_requested:
            return True, "mining requested (start_mining_for_rpc)"
        if not s.auto_mine:
            return False, "auto-mining is off; run start_mining_for_rpc to mine"
        if credits_per_hash(info) < s.auto_mine_threshold:
            return False, (
                f"the daemon requests payment at {describe_offer(info)}, below the "
                f"auto-mine threshold {s.auto_mine_threshold:g}; run start_mining_for_rpc "
                "or use --auto-mine-threshold 0 to mine anyway, or use another daemon"
            )
        return True, f"below target ({self.client.credits} < {self.target} credits)"

    # -- one round ----------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[K")
        self.out.write(text + "\n")
        self.out.flush()

    def _observe(self, credits: int, earned: int = 0) -> None:
        """Count credits that went away between two answers as spent (or lost to penalties)."""
        if self._last_credits is not None:
            self.spent += max(0, self._last_credits + earned - credits)
        self._last_credits = credits

    def _poll_file(self, now: float) -> None:
        if self.wallet_path is None or now - self._polled_at < self.poll_interval:
            return
        self._polled_at = now
        try:
            fresh = load_wallet(self.wallet_path)
        except ConfigError as exc:
            self._report_error(f"cannot re-read the wallet file, keeping the last settings: {exc}")
            return
        old = self.settings
        # The key in use stays the key of this run.
        self.settings = replace(fresh, client_secret_key=old.client_secret_key)
        if fresh.mining_stopped and not old.mining_stopped:
            self._say("stop_mining_for_rpc: stopping the miner")
        elif old.mining_stopped and not fresh.mining_stopped:
            self._say("start_mining_for_rpc: resuming")
        if fresh.mining_threads != old.mining_threads and self.miner_factory is not None:
            was_running = self.miner.running
            self.miner.stop()
            self.miner.close()
            self.miner = self.miner_factory(fresh.mining_threads)
            self._hashes0, self._started = self.miner.hashes, now
            self._job_key = None
            if was_running:
                self.mining = False

    def _report_error(self, text: str) -> None:
        now = self.clock()
        if text != self.last_error or now - self._error_at >= 30:
            self._say(f"error: {text}")
            self._error_at = now
        self.last_error = text

    def _refresh_due(self, now: float) -> bool:
        if self._need_refresh or self.info is None:
            return True
        if self.client.top_hash and self.client.top_hash != self.info.top_hash:
            return True
        age = now - self._info_at
        return age >= (self.refresh_mining if self.mining else self.refresh_idle)

    async def refresh(self) -> AccessInfo:
        """Ask rpc_access_info; give the miner the job when it is a new one."""
        info = await self.client.access_info()
        self.info, self._info_at, self._need_refresh = info, self.clock(), False
        self.payments_disabled = False
        self._observe(info.credits)
        key = (info.hashing_blob, info.seed_hash, info.difficulty, info.cookie)
        if key != self._job_key:
            # The same job again must not restart the nonces: they would be duplicates.
            self.miner.set_job(self.job_factory(info))
            self._job_key = key
        return info

    async def step(self, max_wait: float = 1.0) -> None:
        """One round of the keeper."""
        now = self.clock()
        self._poll_file(now)
        if self._refresh_due(now):
            try:
                await self.refresh()
                self.last_error = ""
            except NodeError as exc:
                if exc.code == PAYMENTS_DISABLED_CODE:
                    self.payments_disabled, self._need_refresh = True, False
                    self._info_at = now
                else:
                    self._need_refresh = True
                    self._stop_miner()
                    self._report_error(_describe_client_error(exc, self.client.url))
                    await asyncio.sleep(max_wait)
                    return
            except UpstreamDown as exc:
                self._need_refresh = True
                self._report_error(_describe_client_error(exc, self.client.url))
                await asyncio.sleep(max_wait)
                return
        want, self.reason = self.should_mine()
        if want and not self.miner.running:
            self.miner.start()
            self.mining = True
            self._say(f"mining: {self.reason}; {describe_offer(self.info)}" if self.info else "")
        elif not want and self.miner.running:
            self._stop_miner()
            self._say(f"not mining: {self.reason}")
        elif (
            not want
            and not self._offer_shown
            and self.info is not None
            and ("threshold" in self.reason or "auto-mining is off" in self.reason)
        ):
            self._say(self.reason)
            self._offer_shown = True
        self.mining = self.miner.running
        if self.mining:
            share = await self.miner.next_share(max_wait)
            if share is not None:
                await self._submit(share)
        else:
            await asyncio.sleep(max_wait)
        self._progress()

    def _stop_miner(self) -> None:
        if self.miner.running:
            self.miner.stop()
        self.mining = False

    async def _submit(self, share: ShareLike) -> None:
        before = self.client.credits
        try:
            credits = await self.client.submit_nonce(share.nonce, share.cookie)
        except ShareRefused as exc:
            # Stale or duplicate: not fatal; take a fresh job and carry on.
            self.shares_refused += 1
            self._need_refresh = True
            self._say(f"share refused ({exc.code}): {exc}; taking a new job")
            return
        except (NodeError, UpstreamDown) as exc:
            self._need_refresh = True
            self._report_error(_describe_client_error(exc, self.client.url))
            return
        found = self.info.credits_per_hash_found if self.info is not None else 0
        self.shares_ok += 1
        self.earned += max(0, credits - before)
        self._observe(credits, found)

    def hashrate(self) -> float:
        rate = self.miner.hashrate()
        if rate > 0:
            return rate
        elapsed = self.clock() - self._started
        return (self.miner.hashes - self._hashes0) / elapsed if elapsed > 0 else 0.0

    def status(self) -> dict[str, JSON]:
        """What ``rpc_payments`` shows about this keeper (never the secret key)."""
        info = self.info
        rate = credits_per_hash(info) if info is not None else 0.0
        hashrate = self.hashrate() if self.mining else 0.0
        return {
            "pid": os.getpid(),
            "updated": time.time(),
            "client_id": self.client.key.public.hex(),
            "daemon": self.client.url,
            "mining": self.mining,
            "reason": self.reason,
            "hashes": self.miner.hashes,
            "hashrate": hashrate,
            "credits": self.client.credits,
            "target": self.target,
            "spent": self.spent,
            "earned": self.earned,
            "shares_ok": self.shares_ok,
            "shares_refused": self.shares_refused,
            "credits_per_hash": rate,
            "eta_seconds": eta(self.client.credits, self.target, hashrate, rate),
        }

    def progress_line(self) -> str:
        status = self.status()
        state = "mining" if self.mining else "idle"
        return (
            f"{state}: {status['hashrate']:.1f} H/s, credits {status['credits']}/"
            f"{status['target']}, spent {status['spent']}, shares {status['shares_ok']} "
            f"(refused {status['shares_refused']}), ETA {format_duration(status['eta_seconds'])}"
        )

    def _progress(self) -> None:
        now = self.clock()
        if self.write_status and now - self._status_at >= 1.0:
            self._status_at = now
            assert self.wallet_path is not None
            with contextlib.suppress(ConfigError):
                write_private_json(status_path_for(self.wallet_path), self.status())
        interval = 1.0 if self.tty else 10.0
        if now - self._progress_at < interval:
            return
        self._progress_at = now
        if self.tty:
            self.out.write("\r\x1b[K" + self.progress_line())
            self.out.flush()
        elif self.mining:
            self._say(self.progress_line())

    # -- loops --------------------------------------------------------------------------

    async def run(self, duration: float | None = None) -> None:
        """Keep the balance at the target, for ``duration`` seconds or until cancelled."""
        deadline = None if duration is None else self.clock() + duration
        try:
            while True:
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    break
                await self.step(1.0 if left is None else max(0.01, min(1.0, left)))
        finally:
            self.finish()

    def finish(self) -> None:
        """Stop the miner and withdraw the status file."""
        self._stop_miner()
        if self.tty:
            self.out.write("\n")
            self.out.flush()
        if self.write_status and self.wallet_path is not None:
            with contextlib.suppress(OSError):
                status_path_for(self.wallet_path).unlink()

    async def mine_until(self, credits: int, timeout: float | None = None) -> bool:
        """Mine until the balance reaches ``credits`` (whatever the target); False if mining
        is not allowed, stopped, or ``timeout`` passes first."""
        self._goal = credits
        self._need_refresh = True
        deadline = None if timeout is None else self.clock() + timeout
        try:
            while self.client.credits < credits:
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    return False
                await self.step(1.0 if left is None else max(0.01, min(1.0, left)))
                if self.info is None and self.last_error:
                    return False
                if (
                    not self.mining
                    and self.client.credits < credits
                    and self.info is not None
                    and not self.should_mine()[0]
                ):
                    return False
            return True
        finally:
            self._goal = None
            self._stop_miner()


# -- the command line -----------------------------------------------------------------


def _describe_client_error(exc: ClientError, url: str) -> str:
    if isinstance(exc, NodeError) and exc.code == 0 and "unreachable" in str(exc):
        return f"cannot reach the daemon at {url} ({str(exc).rsplit(': ', 1)[-1]})"
    if isinstance(exc, UpstreamDown):
        return f"the daemon's upstream is down ({exc}); nothing was charged"
    if isinstance(exc, NodeError) and exc.code == PAYMENTS_DISABLED_CODE:
        return f"the daemon at {url} does not take payment ({exc})"
    return str(exc)


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
        help="make one paid JSON-RPC call, mining first if the balance is short",
        description="Make one paid JSON-RPC call and print its result as JSON. On PAYMENT "
        "REQUIRED, mine (if auto-mining allows) until the call can be paid, then retry.",
    )
    call.add_argument("method", help="the JSON-RPC method, e.g. get_info")
    call.add_argument(
        "params",
        nargs="?",
        default="{}",
        metavar="PARAMS_JSON",
        help="the params, a JSON object (default: %(default)s)",
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
        return handlers[args.wallet_command](args)
    except (ConfigError, RpcPayError) as exc:
        return _fail(args, str(exc), EXIT_USAGE)
    except ClientError as exc:
        return _fail(args, _describe_client_error(exc, args.daemon), EXIT_FAILED)
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


def _parse_params(text: str) -> dict[str, JSON]:
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"PARAMS_JSON is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ConfigError("PARAMS_JSON must be a JSON object, e.g. '{\"height\": 1}'")
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
    answer, credits = result
    print(json.dumps(answer, indent=2, sort_keys=True))
    print(f"paid; credits left: {credits}", file=sys.stderr)
    return EXIT_OK


async def _call_async(
    args: argparse.Namespace,
    settings: WalletSettings,
    key: Any,
    params: dict[str, JSON],
    path: Path,
) -> tuple[dict[str, JSON], int] | int:
    miner: MinerLike | None = None
    deadline = time.monotonic() + args.max_mining_seconds
    async with PayingClient(args.daemon, key) as client:
        try:
            while True:
                try:
                    return await client.call(args.method, params), client.credits
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
                    if not await keeper.mine_until(exc.credits + 1, timeout=left):
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
            print(keeper.progress_line(), file=sys.stderr)
    finally:
        miner.close()  # closing twice is harmless
    return EXIT_OK
