"""The balance keeper: mines to keep a client's credits at its target (``rpcpay wallet keep``).

It refreshes the job on a new top and every 10 s while mining (5 min idle, as monero-wallet-cli
does), keeps mining through stale and duplicate refusals, obeys the wallet file (so
``stop_mining_for_rpc`` from another process really stops it), and shows hash rate, credits
and ETA. Tests drive it step by step with a fake miner; the CLI runs it with the real one.
"""

from __future__ import annotations

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

from rpcpay.errors import ConfigError
from rpcpay.wallet.client import (
    AccessInfo,
    ClientError,
    NodeError,
    PayingClient,
    ShareRefused,
    UpstreamDown,
)
from rpcpay.wallet.miner import eta_seconds
from rpcpay.wallet.settings import (
    MAX_PAYMENT_DIFF,
    MIN_PAYMENT_RATE,
    WalletSettings,
    load_wallet,
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
                    self._report_error(describe_client_error(exc, self.client.url))
                    await asyncio.sleep(max_wait)
                    return
            except UpstreamDown as exc:
                self._need_refresh = True
                self._report_error(describe_client_error(exc, self.client.url))
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
            self._report_error(describe_client_error(exc, self.client.url))
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


def describe_client_error(exc: ClientError, url: str) -> str:
    if isinstance(exc, NodeError) and exc.code == 0 and "unreachable" in str(exc):
        return f"cannot reach the daemon at {url} ({str(exc).rsplit(': ', 1)[-1]})"
    if isinstance(exc, UpstreamDown):
        return f"the daemon's upstream is down ({exc}); nothing was charged"
    if isinstance(exc, NodeError) and exc.code == PAYMENTS_DISABLED_CODE:
        return f"the daemon at {url} does not take payment ({exc})"
    return str(exc)
