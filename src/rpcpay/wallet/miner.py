"""Finding shares for pay-for-RPC jobs with RandomX, off the event loop.

Two miners live here:

- ``Miner``: the wallet's background miner.  N threads (one RandomX VM each, since VMs are
  not thread-safe), light mode at once and fast mode (2 GiB dataset, built in the background)
  as soon as the dataset is ready, following job and seed changes.  Shares come out of a
  thread-safe queue (``get_share``) or, for asyncio code, ``next_share``.
- ``LightMiner``: a small synchronous single-threaded searcher ("find me one nonce in this
  range"), used by the demo and the gateway tests.

Why the care about nonces: monerod 0.18 charges ``20 * credits_per_hash_found`` for a nonce
it has already seen, so a miner must never submit one twice.  ``Miner`` hands each job's
nonces out from one counter per job (every nonce goes to exactly one thread, once), never
restarts a job from 0 when the same job is set again, and also remembers the nonces it found
per job and refuses to emit one twice.  And unlike monero-wallet-cli 0.18, whose threads all
wrote their nonces into one shared blob (a data race that can hash a blob with another
thread's nonce and submit a share that does not verify), each thread here builds a fresh
immutable ``bytes`` blob per hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from rpcpay.errors import PowError
from rpcpay.pow.difficulty import check_hash, max_valid_hash
from rpcpay.pow.randomx import RandomXCache, RandomXDataset, RandomXVM
from rpcpay.pow.verifier import DATASET_MEMORY_BUDGET, mem_available
from rpcpay.wire.block import nonce_offset, set_nonce

__all__ = [
    "LightMiner",
    "Miner",
    "MinerMode",
    "MiningJob",
    "Share",
    "eta_seconds",
]

logger = logging.getLogger("rpcpay.miner")

U32 = 2**32

#: What the caller asks for: "auto" = fast mode only when the machine has the memory.
MinerMode = Literal["auto", "light", "fast"]
#: Progress of a dataset build: (items done, items total).
ProgressCallback = Callable[[int, int], None]

#: Seeds (caches, datasets) kept at once: the current one and the previous one, so a job of
#: the previous seed (the chain switching back, or the previous job still accepted) does not
#: cost a new 0.5 s cache or a new minute of dataset.
MAX_SEEDS = 2
#: Job states remembered, so that going back to a recent job resumes its nonce counter.
_MAX_JOB_STATES = 8
#: Window of ``Miner.hashrate()``.
RATE_WINDOW_SECONDS = 10.0


def eta_seconds(
    credits: int,
    target: int,
    hashrate: float,
    credits_per_hash_found: int,
    difficulty: int,
) -> float | None:
    """Seconds of mining until ``credits`` reaches ``target``.

    A share is found every ``difficulty`` hashes on average and pays
    ``credits_per_hash_found``, so credits accrue at ``hashrate * cphf / difficulty`` per
    second.  0.0 once the target is reached; None when nothing accrues (no hash rate or no
    pay per share), because the wait is then unbounded.
    """
    # Already there: nothing to wait for, whatever the rate.
    if credits >= target:
        return 0.0
    # Nothing accrues: no finite answer.
    if hashrate <= 0 or credits_per_hash_found <= 0:
        return None
    # A difficulty below 1 is not a monerod difficulty (it would be a division by zero or a
    # negative rate): a caller bug.
    if difficulty < 1:
        raise ValueError(f"difficulty must be ≥ 1, got {difficulty!r}")
    return (target - credits) / (hashrate * credits_per_hash_found / difficulty)


@dataclass(frozen=True, slots=True)
class MiningJob:
    """What rpc_access_info hands a client: mine ``hashing_blob`` with RandomX keyed by
    ``seed_hash`` until a hash meets ``difficulty``; submit with ``cookie``."""

    hashing_blob: bytes
    seed_hash: bytes
    difficulty: int
    cookie: int


@dataclass(frozen=True, slots=True)
class Share:
    """A nonce whose hash meets its job's difficulty, for submit_nonce with ``cookie``."""

    nonce: int
    cookie: int
    hash: bytes


@dataclass(eq=False)
class _JobState:
    """One job's progress: the next nonce to hand out and the nonces found.

    Shared by all threads; ``claim`` is the only way to get a nonce, so each nonce of a job
    is hashed by one thread once, and the counter survives ``set_job`` of the same job.
    """

    job: MiningJob
    offset: int
    bound: int
    next_nonce: int = 0
    found: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> int | None:
        """The next untried nonce, or None when all 2**32 are used up."""
        with self.lock:
            nonce = self.next_nonce
            # The nonce is a u32: past the end there is nothing left to try in this job.
            if nonce >= U32:
                return None
            self.next_nonce = nonce + 1
            return nonce

    @property
    def exhausted(self) -> bool:
        return self.next_nonce >= U32

    def blob(self, nonce: int) -> bytes:
        """A new immutable blob with ``nonce`` (what ``set_nonce`` returns, without parsing
        the header again for every hash)."""
        b = self.job.hashing_blob
        return b[: self.offset] + nonce.to_bytes(4, "little") + b[self.offset + 4 :]


@dataclass(eq=False)
class _Seed:
    """A seed's cache and, in fast mode, its dataset (None until built)."""

    key: bytes
    cache: RandomXCache
    dataset: RandomXDataset | None = None
    builder: threading.Thread | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    evicted: bool = False


class _RateWindow:
    """Hash timestamps over the last ``window`` seconds, for a hash rate that follows
    changes (mode switch, stop) instead of a lifetime average."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self._since: float | None = None

    def add(self, now: float) -> None:
        with self._lock:
            self._times.append(now)
            if self._since is None:
                self._since = now

    def reset_start(self, now: float) -> None:
        """Hashing (re)starts now: measure over the time since then until a full window."""
        with self._lock:
            self._since = now

    def rate(self, now: float) -> float:
        with self._lock:
            cutoff = now - self.window
            while self._times and self._times[0] < cutoff:
                self._times.popleft()
            # Never hashed: no rate to speak of.
            if self._since is None or not self._times:
                return 0.0
            span = min(self.window, now - self._since)
            # Just started: a few ms of data would give absurd figures; wait for one hash time.
            if span <= 0:
                return 0.0
            return len(self._times) / span


class Miner:
    """Multi-threaded RandomX miner for pay-for-RPC jobs.

    Usage::

        with Miner(threads=4) as miner:
            miner.set_job(MiningJob(blob, seed, diff, cookie))
            miner.start()
            share = miner.get_share(timeout=30)

    ``mode``: "light" hashes from the 256 MiB cache only (~30 ms a hash); "fast" also builds
    the 2 GiB dataset in the background (~64 s of CPU, divided by ``threads``) and moves the
    threads to it when ready (~5.5 ms a hash); "auto" does fast only when MemAvailable
    exceeds ~2.5 GiB.  Threads mine in light mode while a dataset builds.

    Threads check the job before every hash, so a ``set_job`` takes effect within one hash.
    A share whose hash was in flight when the job changed is still emitted, with its own
    job's cookie (monerod accepts the previous job; let the caller decide).
    """

    def __init__(
        self,
        threads: int | None = None,
        mode: MinerMode = "auto",
        progress: ProgressCallback | None = None,
        *,
        rate_window: float = RATE_WINDOW_SECONDS,
    ) -> None:
        count = (os.cpu_count() or 1) if threads is None else threads
        # No threads would never mine; a negative count is a caller bug.
        if count < 1:
            raise ValueError(f"threads must be ≥ 1, got {count}")
        if mode not in ("auto", "light", "fast"):
            raise ValueError(f"mode must be auto, light or fast, got {mode!r}")
        self.threads = count
        self.requested_mode: MinerMode = mode
        self._progress = progress
        self._cond = threading.Condition()
        self._running = False
        self._closing = False
        self._state: _JobState | None = None
        self._states: OrderedDict[tuple[bytes, bytes, int], _JobState] = OrderedDict()
        self._seeds: OrderedDict[bytes, _Seed] = OrderedDict()
        self._seed_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._counts = [0] * count
        self._fast_vms = [False] * count
        self._rate = _RateWindow(rate_window)
        self._shares: deque[Share] = deque()
        self._share_cond = threading.Condition()
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- control ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between start() and stop()/close()."""
        return self._running

    def start(self) -> None:
        """Start (or resume) hashing; threads are created on the first call."""
        with self._cond:
            # A closed miner has freed its VMs; restarting it would be a use-after-close.
            if self._closing:
                raise PowError("miner is closed")
            if not self._workers:
                self._workers = [
                    threading.Thread(
                        target=self._work, args=(i,), name=f"rpcpay-miner-{i}", daemon=True
                    )
                    for i in range(self.threads)
                ]
                for t in self._workers:
                    t.start()
            # Only a real restart resets the rate window's start (time parked is not mining).
            if not self._running:
                self._rate.reset_start(time.monotonic())
            self._running = True
            self._cond.notify_all()
        logger.info("miner started", extra={"threads": self.threads})

    def stop(self) -> None:
        """Stop hashing: threads finish the hash in flight and park (VMs and datasets stay,
        so ``start`` resumes at once).  A dataset build under way continues."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        logger.info("miner stopped")

    def close(self) -> None:
        """Stop for good: join the threads, cancel dataset builds, free caches and datasets."""
        with self._cond:
            # Closing twice is harmless.
            if self._closing:
                return
            self._closing = True
            self._running = False
            self._cond.notify_all()
        for t in self._workers:
            t.join()
        with self._seed_lock:
            seeds = list(self._seeds.values())
            self._seeds.clear()
            # Under the lock: a builder finishing now then sees ``evicted`` and frees its
            # dataset itself.
            for seed in seeds:
                self._drop_seed(seed)
        for seed in seeds:
            # A builder must not outlive close(): it holds the cache and 2 GiB.
            if seed.builder is not None:
                seed.builder.join()
        self._wake_async()
        logger.info("miner closed", extra={"hashes": self.hashes})

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- jobs ------------------------------------------------------------------------------

    def set_job(self, job: MiningJob) -> None:
        """Mine ``job`` from now on.

        The same job again (same blob, seed and cookie) keeps its progress: its nonce counter
        is not reset, so no nonce is ever hashed (or submitted) twice.  A recent job set again
        also resumes where it stopped.  Only the difficulty may change in place.
        """
        # Parse once here: a blob without a nonce field fails now, not in every thread.
        offset = nonce_offset(job.hashing_blob)
        bound = max_valid_hash(job.difficulty)
        key = (job.hashing_blob, job.seed_hash, job.cookie)
        with self._cond:
            if self._closing:
                raise PowError("miner is closed")
            state = self._states.get(key)
            if state is None:
                state = _JobState(job, offset, bound)
                self._states[key] = state
                # Forget the oldest jobs: their nonces can no longer be submitted anyway.
                while len(self._states) > _MAX_JOB_STATES:
                    self._states.popitem(last=False)
            else:
                self._states.move_to_end(key)
                # Same job with another difficulty: follow it, keep the nonce counter.
                if state.job.difficulty != job.difficulty:
                    state.job, state.bound = job, bound
            changed = state is not self._state
            self._state = state
            self._cond.notify_all()
        if changed:
            logger.debug(
                "new mining job",
                extra={
                    "cookie": job.cookie,
                    "difficulty": job.difficulty,
                    "resume": state.next_nonce,
                },
            )

    @property
    def job(self) -> MiningJob | None:
        """The job being mined (None before the first set_job)."""
        state = self._state
        return state.job if state is not None else None

    # -- shares ----------------------------------------------------------------------------

    def get_share(self, timeout: float | None = None) -> Share | None:
        """The next share found, waiting up to ``timeout`` seconds (None: forever, unless the
        miner closes); None when none came."""
        with self._share_cond:
            self._share_cond.wait_for(lambda: self._shares or self._closing, timeout)
            return self._shares.popleft() if self._shares else None

    async def next_share(self, timeout: float | None = None) -> Share | None:
        """``get_share`` for asyncio code.

        Not ``asyncio.to_thread(get_share)``: a cancelled await would leave that thread
        blocked and the share it later takes would be lost.  Here the workers wake the loop
        (call_soon_threadsafe) and the share is taken on the loop itself, so cancelling never
        drops a share.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            event = asyncio.Event()
            waiter = (loop, event)
            with self._share_cond:
                if self._shares:
                    return self._shares.popleft()
                if self._closing:
                    return None
                self._async_waiters.add(waiter)
            try:
                remaining = None if deadline is None else deadline - loop.time()
                # Out of time: report no share.
                if remaining is not None and remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    with self._share_cond:
                        return self._shares.popleft() if self._shares else None
            finally:
                with self._share_cond:
                    self._async_waiters.discard(waiter)

    def _deliver(self, share: Share) -> None:
        with self._share_cond:
            self._shares.append(share)
            self._share_cond.notify()
            waiters = list(self._async_waiters)
        for loop, event in waiters:
            # The loop may be closed (its coroutine abandoned): nothing to wake then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def _wake_async(self) -> None:
        with self._share_cond:
            self._share_cond.notify_all()
            waiters = list(self._async_waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # -- stats -----------------------------------------------------------------------------

    @property
    def hashes(self) -> int:
        """Hashes computed since creation (all threads)."""
        return sum(self._counts)

    def hashrate(self) -> float:
        """Hashes per second over the last ``rate_window`` seconds (10 s by default)."""
        return self._rate.rate(time.monotonic())

    @property
    def mode(self) -> Literal["light", "fast"]:
        """Mode in use: "fast" once every thread hashes from a dataset, else "light"
        (threads move over one by one, at their next hash, when the dataset is ready)."""
        return "fast" if all(self._fast_vms) else "light"

    def _want_fast(self) -> bool:
        """Whether to build a dataset now (auto: only with enough memory for it)."""
        if self.requested_mode == "light":
            return False
        if self.requested_mode == "fast":
            return True
        avail = mem_available()
        # Unknown memory (not Linux) or not enough: a 2 GiB allocation could swap or OOM.
        return avail is not None and avail > DATASET_MEMORY_BUDGET

    # -- seeds -----------------------------------------------------------------------------

    def _seed_for(self, key: bytes) -> _Seed:
        """The cache (and dataset) for ``key``, created on first use.

        Called by the worker threads, so the ~0.5 s of Argon2 never runs on the caller's
        (possibly event-loop) thread; the other workers wait for it on the lock.
        """
        with self._seed_lock:
            seed = self._seeds.get(key)
            if seed is not None:
                self._seeds.move_to_end(key)
                return seed
            if self._closing:
                raise PowError("miner is closed")
            logger.info("building RandomX cache", extra={"seed_hash": key.hex()})
            seed = _Seed(key, RandomXCache(key))
            self._seeds[key] = seed
            # Keep at most two seeds; the old one stayed until this one was ready.
            while len(self._seeds) > MAX_SEEDS:
                _, old = self._seeds.popitem(last=False)
                self._drop_seed(old)
            if self._want_fast():
                seed.builder = threading.Thread(
                    target=self._build_dataset,
                    args=(seed,),
                    name="rpcpay-miner-dataset",
                    daemon=True,
                )
                seed.builder.start()
            return seed

    def _drop_seed(self, seed: _Seed) -> None:
        """Forget a seed (call with ``_seed_lock`` held).

        VMs still using its memory keep it alive until they close (the binding counts
        users), so this is safe while threads are mid-hash."""
        seed.evicted = True
        seed.cancel.set()
        if seed.dataset is not None:
            seed.dataset.close()
        seed.cache.close()
        logger.info("dropped RandomX seed", extra={"seed_hash": seed.key.hex()})

    def _build_dataset(self, seed: _Seed) -> None:
        """Background thread: build the dataset, then let the workers switch to it."""
        started = time.monotonic()

        def report(done: int, total: int) -> None:
            # A failing user callback must not throw away a minute of dataset work.
            if self._progress is not None:
                try:
                    self._progress(done, total)
                except Exception:
                    logger.exception("dataset progress callback failed")

        try:
            dataset = RandomXDataset.build(seed.cache, self.threads, report, cancel=seed.cancel)
        except PowError as exc:
            # Cancelled (seed dropped or miner closed) or out of memory: stay in light mode.
            if not seed.cancel.is_set():
                logger.warning("RandomX dataset build failed, staying in light mode: %s", exc)
            return
        with self._seed_lock:
            # Dropped while building: nobody will use it.
            if seed.evicted:
                dataset.close()
                return
            seed.dataset = dataset
        logger.info(
            "RandomX dataset ready, switching to fast mode",
            extra={"seed_hash": seed.key.hex(), "seconds": round(time.monotonic() - started, 1)},
        )

    # -- workers ---------------------------------------------------------------------------

    def _active_state(self) -> _JobState | None:
        """The job to hash now, or None when a thread should park."""
        state = self._state
        if not self._running or self._closing or state is None or state.exhausted:
            return None
        return state

    def _work(self, index: int) -> None:
        """One worker: its own VM, pipelined hashing (hash_first/hash_next overlap the end of
        one hash with the start of the next, a few percent faster than hash())."""
        vm: RandomXVM | None = None
        seed: _Seed | None = None
        pending: tuple[_JobState, int] | None = None
        try:
            while True:
                state = self._active_state()
                if state is None:
                    # Finish the hash in flight before parking: it may be a share.
                    if pending is not None and vm is not None:
                        self._record(index, pending, vm.hash_last())
                        pending = None
                    with self._cond:
                        if self._closing:
                            return
                        self._cond.wait_for(
                            lambda: self._closing or self._active_state() is not None
                        )
                    continue
                key = state.job.seed_hash
                # New seed, evicted seed, or its dataset just became ready: new VM.
                if (
                    vm is None
                    or seed is None
                    or seed.key != key
                    or seed.evicted
                    or (seed.dataset is not None and not vm.fast)
                ):
                    if pending is not None and vm is not None:
                        self._record(index, pending, vm.hash_last())
                        pending = None
                    if vm is not None:
                        vm.close()
                        vm = None
                        self._fast_vms[index] = False
                    seed = self._seed_for(key)
                    try:
                        vm = RandomXVM(None if seed.dataset else seed.cache, seed.dataset)
                    except PowError:
                        # The seed was dropped between lookup and VM creation: look again.
                        if seed.evicted:
                            continue
                        raise
                    self._fast_vms[index] = vm.fast
                    logger.debug(
                        "worker VM ready",
                        extra={"worker": index, "fast": vm.fast, "seed_hash": key.hex()},
                    )
                nonce = state.claim()
                # Used up meanwhile by the other threads: park until a new job.
                if nonce is None:
                    continue
                blob = state.blob(nonce)
                if pending is None:
                    vm.hash_first(blob)
                else:
                    self._record(index, pending, vm.hash_next(blob))
                pending = (state, nonce)
        except Exception:
            logger.exception("miner worker %d failed", index)
        finally:
            self._fast_vms[index] = False
            if vm is not None:
                vm.close()

    def _record(self, index: int, pending: tuple[_JobState, int], digest: bytes) -> None:
        """Count a finished hash and emit it when it meets its job's difficulty."""
        state, nonce = pending
        # Each thread writes only its own slot: no lost updates without a lock.
        self._counts[index] += 1
        self._rate.add(time.monotonic())
        # Compare against the precomputed bound: same rule as check_hash, no big multiply.
        if int.from_bytes(digest, "little") > state.bound:
            return
        with state.lock:
            # Cannot happen with the per-job counter; a resubmission costs a penalty, so the
            # check stays as a second line of defence.
            if nonce in state.found:
                logger.error("nonce found twice, not emitted", extra={"nonce": nonce})
                return
            state.found.add(nonce)
        self._deliver(Share(nonce, state.job.cookie, digest))


@dataclass
class LightMiner:
    """A single-threaded light-mode miner that keeps one cache per seed.

    For one-off searches ("the first nonce in this range"); ``Miner`` is the background
    miner.  Each search starts where the caller says, so a caller that passes the returned
    next nonce back never tries a nonce twice.
    """

    _cache: RandomXCache | None = None
    _vm: RandomXVM | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    hashes: int = 0

    def _vm_for(self, seed: bytes) -> RandomXVM:
        if self._cache is None or self._cache.key != seed:
            self.close()
            self._cache = RandomXCache(seed)
            self._vm = RandomXVM(self._cache)
        assert self._vm is not None
        return self._vm

    def search(
        self, seed: bytes, blob: bytes, difficulty: int, start: int, count: int
    ) -> tuple[int | None, int]:
        """Try nonces ``start .. start+count``; (winning nonce or None, next nonce to try)."""
        with self._lock:
            vm = self._vm_for(seed)
            nonce = start
            for nonce in range(start, min(start + count, U32)):
                self.hashes += 1
                if check_hash(vm.hash(set_nonce(blob, nonce)), difficulty):
                    return nonce, nonce + 1
            return None, min(start + count, U32)

    async def find_share(
        self, seed: bytes, blob: bytes, difficulty: int, start: int, count: int
    ) -> tuple[int | None, int]:
        """``search`` on a worker thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.search, seed, blob, difficulty, start, count)

    def close(self) -> None:
        if self._vm is not None:
            self._vm.close()
            self._vm = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
