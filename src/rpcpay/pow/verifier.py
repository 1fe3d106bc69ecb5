"""A pool of RandomX worker threads that checks shares without blocking the event loop.

Why a pool of our own threads rather than ``asyncio.to_thread``: RandomX VMs are not
thread-safe and cost a 2 MiB scratchpad (plus JIT code) to create, so each worker keeps one
VM per seed it has seen, which an anonymous executor cannot do.  ctypes releases the GIL
during a hash, so ``threads`` workers use ``threads`` cores while the loop keeps serving.

Seeds: Monero changes the RandomX key (seed hash) every 2048 blocks and the gateway warms
the next one before the switch, so the pool keeps caches for at most two seeds (least
recently used goes first; ~256 MiB each).  Shares already queued for an evicted seed still
finish: every job holds a reference to its seed's cache.

Modes: light (256 MiB per seed, ~30 ms a hash per core, what monerod itself verifies
with) or fast (plus a 2 GiB dataset per seed, ~5.5 ms a hash).  In fast mode the dataset is
built in the background (~64 s of CPU, spread over ``threads`` threads) and the pool hashes
in light mode until it is ready.  "auto" picks fast only when /proc/meminfo's MemAvailable
leaves ~2.5 GiB per dataset.

Back-pressure: at most ``max_pending`` hashes may be queued or running; the next one raises
``VerifierBusy`` at once, without hashing, so a flood of shares costs the server nothing.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from rpcpay.errors import PowError, VerifierBusy
from rpcpay.pow.randomx import (
    RandomXCache,
    RandomXDataset,
    RandomXFlags,
    RandomXVM,
    recommended_flags,
)

__all__ = ["DATASET_MEMORY_BUDGET", "Mode", "ShareVerifier", "VerifierStats", "mem_available"]

logger = logging.getLogger("rpcpay.pow")

Mode = Literal["light", "fast", "auto"]

#: Memory "auto" wants free per dataset: 2080 MiB of dataset plus headroom for the rest.
DATASET_MEMORY_BUDGET = 5 * 1024**3 // 2
#: How often an idle worker wakes to drop VMs of evicted seeds (their caches free then).
_SWEEP_SECONDS = 1.0


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes, or None where /proc/meminfo does not say (not Linux)."""
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        # Format: "MemAvailable:   24390312 kB".
        if line.startswith("MemAvailable:"):
            parts = line.split()
            return int(parts[1]) * 1024
    return None


@dataclass(frozen=True, slots=True)
class VerifierStats:
    """A snapshot of the pool for logs and the admin listener."""

    mode: Literal["light", "fast"]
    threads: int
    pending: int
    max_pending: int
    seeds: tuple[bytes, ...]
    fast_seeds: tuple[bytes, ...]


class _Seed:
    """One seed's cache (and dataset), shared by the workers, freed after its last user.

    References: the verifier's table, each queued job, the thread building the cache or
    dataset.  When they reach zero the cache and dataset are closed; RandomX objects close
    lazily, so workers' VMs still holding them free the memory when swept.
    """

    __slots__ = ("cancel", "dataset", "fast_failed", "ready", "refs", "retired", "seed")

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.ready: concurrent.futures.Future[RandomXCache] = concurrent.futures.Future()
        # Running from the start, so a cancelled waiter can never cancel the shared build.
        self.ready.set_running_or_notify_cancel()
        self.dataset: RandomXDataset | None = None
        self.refs = 0
        self.retired = False
        self.fast_failed = False
        self.cancel = threading.Event()


@dataclass(frozen=True, slots=True)
class _Job:
    seed: _Seed
    blob: bytes
    future: concurrent.futures.Future[bytes]


class ShareVerifier:
    """Hash shares with RandomX on worker threads; ``await verifier.hash(seed, blob)``.

    Use from one event loop.  ``close()`` (or ``async with``) joins every thread and frees
    every cache and dataset.
    """

    def __init__(
        self,
        threads: int | None = None,
        mode: Mode = "auto",
        max_pending: int = 256,
        *,
        flags: RandomXFlags | None = None,
        max_seeds: int = 2,
    ) -> None:
        threads = threads if threads is not None else os.cpu_count() or 1
        # No worker would mean no share is ever checked.
        if threads < 1:
            raise ValueError("threads must be ≥ 1")
        # A zero queue would refuse every share.
        if max_pending < 1:
            raise ValueError("max_pending must be ≥ 1")
        # Fewer than one seed cannot hash anything.
        if max_seeds < 1:
            raise ValueError("max_seeds must be ≥ 1")
        # A typo in the mode must not silently fall back to light.
        if mode not in ("light", "fast", "auto"):
            raise ValueError(f"mode must be light, fast or auto, not {mode!r}")
        # Load the library now: a missing librandomx must fail at startup, not at the
        # first share.
        self._flags = recommended_flags() if flags is None else flags
        self._threads = threads
        self._max_pending = max_pending
        self._max_seeds = max_seeds
        self._auto = mode == "auto"
        self._mode: Literal["light", "fast"] = (
            self._choose_auto(max_seeds) if mode == "auto" else mode
        )
        self._lock = threading.Lock()
        self._seeds: collections.OrderedDict[bytes, _Seed] = collections.OrderedDict()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending = 0
        self._closed = False
        self._helpers: set[threading.Thread] = set()
        self._workers = [
            threading.Thread(target=self._work, name=f"rpcpay-pow-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._workers:
            t.start()
        logger.info(
            "share verifier started: mode=%s threads=%d max_pending=%d",
            self._mode,
            threads,
            max_pending,
            extra={"mode": self._mode, "threads": threads, "max_pending": max_pending},
        )

    @staticmethod
    def _choose_auto(max_seeds: int) -> Literal["light", "fast"]:
        avail = mem_available()
        # Fast mode only when every seed's dataset fits with room to spare.
        if avail is not None and avail >= max_seeds * DATASET_MEMORY_BUDGET:
            return "fast"
        logger.info(
            "auto mode picks light: MemAvailable=%s bytes < %d per dataset x %d seeds",
            avail,
            DATASET_MEMORY_BUDGET,
            max_seeds,
            extra={"mem_available": avail},
        )
        return "light"

    # -- public API ----------------------------------------------------------------------

    @property
    def mode(self) -> Literal["light", "fast"]:
        """The mode in use ("auto" resolved)."""
        return self._mode

    @property
    def threads(self) -> int:
        """Number of worker threads."""
        return self._threads

    def stats(self) -> VerifierStats:
        """Pending count and loaded seeds, for logs and admin pages."""
        with self._lock:
            seeds = tuple(self._seeds)
            fast = tuple(s for s, st in self._seeds.items() if st.dataset is not None)
            return VerifierStats(
                self._mode, self._threads, self._pending, self._max_pending, seeds, fast
            )

    async def hash(self, seed_hash: bytes, blob: bytes) -> bytes:
        """RandomX hash of ``blob`` keyed by ``seed_hash``, computed on a worker thread.

        Raises VerifierBusy at once when ``max_pending`` hashes are already queued or
        running, PowError when the verifier is closed or RandomX fails.  The first share of
        a new seed waits for its cache (~0.5-1 s); call ``prepare`` to avoid that.
        """
        seed, data = bytes(seed_hash), bytes(blob)
        with self._lock:
            # Closed: the workers are gone, nothing would ever answer.
            if self._closed:
                raise PowError("ShareVerifier is closed")
            # Queue full: refuse before spending anything on this share.
            if self._pending >= self._max_pending:
                raise VerifierBusy(f"{self._pending} shares pending (max {self._max_pending})")
            self._pending += 1
            state, new = self._ref_seed(seed)
        handed_off = False
        try:
            # A new seed's cache is built on a helper thread, never on the loop.
            if new:
                self._start_init(state)
            await asyncio.wrap_future(state.ready)
            job = _Job(state, data, concurrent.futures.Future())
            with self._lock:
                # Closed while we waited for the cache: no worker will take the job.
                if self._closed:
                    raise PowError("ShareVerifier is closed")
                self._jobs.put(job)
                handed_off = True
            return await asyncio.wrap_future(job.future)
        finally:
            # The job never reached a worker, so nobody else will release it.
            if not handed_off:
                self._finish(state)

    async def prepare(self, seed_hash: bytes) -> None:
        """Build ``seed_hash``'s cache now (and, in fast mode, start its dataset), so the
        first share of the next seed does not wait.  Counts as a use for eviction."""
        seed = bytes(seed_hash)
        with self._lock:
            # Closed: nothing to warm.
            if self._closed:
                raise PowError("ShareVerifier is closed")
            state, new = self._ref_seed(seed)
        try:
            # Only the first user of a seed starts its build.
            if new:
                self._start_init(state)
            await asyncio.wrap_future(state.ready)
        finally:
            self._unref(state)

    def close(self) -> None:
        """Fail queued shares with PowError, stop and join every thread, free all memory.

        Blocks for up to one hash plus any cache build under way (~1 s); from a coroutine
        use ``await aclose()`` or ``async with``.
        """
        with self._lock:
            already = self._closed
            self._closed = True
            states = list(self._seeds.values())
            self._seeds.clear()
            for st in states:
                st.retired = True
                st.cancel.set()
        # Fail what is still queued: nobody will hash it now.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            # A stop marker from an earlier close() call.
            if job is None:
                continue
            # The waiter may have been cancelled already; then there is nothing to tell.
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(PowError("ShareVerifier closed"))
            self._finish(job.seed)
        # A second close() only waits for the first to finish.
        if not already:
            for _ in self._workers:
                self._jobs.put(None)
        for t in self._workers:
            t.join()
        while True:
            with self._lock:
                # Helpers start helpers (cache build, then dataset build): join until none.
                if not self._helpers:
                    break
                helper = next(iter(self._helpers))
            helper.join()
            with self._lock:
                self._helpers.discard(helper)
        for st in states:
            self._unref(st)
        # Log once, on the call that did the work.
        if not already:
            logger.info("share verifier closed")

    async def aclose(self) -> None:
        """close() on a thread, so the event loop keeps running while threads join."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- seeds ---------------------------------------------------------------------------

    def _ref_seed(self, seed: bytes) -> tuple[_Seed, bool]:
        """The seed's state with one more reference; called with the lock held.

        Returns (state, True) when the state is new and its cache must be built.
        """
        state = self._seeds.get(seed)
        # Known seed: mark it most recently used.
        if state is not None:
            self._seeds.move_to_end(seed)
            state.refs += 1
            return state, False
        state = _Seed(seed)
        state.refs = 2  # the table's reference and the caller's
        self._seeds[seed] = state
        evicted: list[_Seed] = []
        # Over the limit: retire the least recently used seeds.
        while len(self._seeds) > self._max_seeds:
            _, old = self._seeds.popitem(last=False)
            old.retired = True
            old.cancel.set()
            evicted.append(old)
        for old in evicted:
            logger.info("randomx seed evicted: %s", old.seed.hex(), extra={"seed": old.seed.hex()})
            self._unref_locked(old)
        return state, True

    def _unref_locked(self, state: _Seed) -> None:
        state.refs -= 1
        # Last reference gone: free the memory (lazily, after the workers' VMs).
        if state.refs == 0:
            self._free(state)

    def _unref(self, state: _Seed) -> None:
        with self._lock:
            self._unref_locked(state)

    def _finish(self, state: _Seed) -> None:
        """A share left the queue: one pending slot and one seed reference free."""
        with self._lock:
            self._pending -= 1
            self._unref_locked(state)

    @staticmethod
    def _free(state: _Seed) -> None:
        state.retired = True
        state.cancel.set()
        # The dataset may still be building; its builder closes it then.
        if state.dataset is not None:
            state.dataset.close()
            state.dataset = None
        # The cache build may have failed; then there is nothing to free.
        if state.ready.done() and state.ready.exception() is None:
            state.ready.result().close()

    def _spawn(self, name: str, target: Callable[[_Seed], None], state: _Seed) -> None:
        """Start a helper thread holding one reference on ``state``; lock not held."""

        def run() -> None:
            try:
                target(state)
            finally:
                with self._lock:
                    self._helpers.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            state.refs += 1
            self._helpers.add(thread)
        thread.start()

    def _start_init(self, state: _Seed) -> None:
        self._spawn("rpcpay-pow-cache", self._init_cache, state)

    def _init_cache(self, state: _Seed) -> None:
        started = time.monotonic()
        try:
            cache = RandomXCache(state.seed, self._flags)
        except BaseException as exc:
            logger.error(
                "randomx cache failed for seed %s: %s",
                state.seed.hex(),
                exc,
                extra={"seed": state.seed.hex()},
            )
            with self._lock:
                # Forget the failed seed so the next share retries instead of failing forever.
                if self._seeds.get(state.seed) is state:
                    del self._seeds[state.seed]
                    state.retired = True
                    self._unref_locked(state)
            state.ready.set_exception(exc)
            self._unref(state)
            return
        state.ready.set_result(cache)
        logger.info(
            "randomx cache ready for seed %s in %.2f s",
            state.seed.hex(),
            time.monotonic() - started,
            extra={"seed": state.seed.hex(), "seconds": time.monotonic() - started},
        )
        with self._lock:
            start_build = self._mode == "fast" and not state.retired and not self._closed
        # Fast mode: expand the dataset in the background; light mode serves meanwhile.
        if start_build:
            self._spawn("rpcpay-pow-dataset", self._build_dataset, state)
        self._unref(state)

    def _build_dataset(self, state: _Seed) -> None:
        try:
            avail = mem_available()
            # auto re-checks memory per dataset: the machine may have filled up since start.
            if self._auto and avail is not None and avail < DATASET_MEMORY_BUDGET:
                logger.warning(
                    "not building randomx dataset for seed %s: MemAvailable=%d bytes",
                    state.seed.hex(),
                    avail,
                    extra={"seed": state.seed.hex()},
                )
                return
            self._build_dataset_now(state)
        finally:
            self._unref(state)

    def _build_dataset_now(self, state: _Seed) -> None:
        seed_hex = state.seed.hex()
        started = time.monotonic()
        last_tenth = 0

        def progress(done: int, total: int) -> None:
            nonlocal last_tenth
            tenth = done * 10 // total
            # Log each tenth once: 256 chunk reports would flood the log.
            if tenth > last_tenth:
                last_tenth = tenth
                logger.info(
                    "randomx dataset for seed %s: %d%%",
                    seed_hex,
                    tenth * 10,
                    extra={"seed": seed_hex, "done": done, "total": total},
                )

        logger.info(
            "building randomx dataset for seed %s on %d threads",
            seed_hex,
            self._threads,
            extra={"seed": seed_hex, "threads": self._threads},
        )
        try:
            dataset = RandomXDataset.build(
                state.ready.result(),
                self._threads,
                progress,
                flags=self._flags,
                cancel=state.cancel,
            )
        except PowError as exc:
            # Cancelled because the seed was evicted or the pool closed: expected.
            if state.cancel.is_set():
                logger.info("randomx dataset build for seed %s cancelled", seed_hex)
            else:
                logger.error("randomx dataset for seed %s failed: %s", seed_hex, exc)
            return
        with self._lock:
            keep = not state.retired
            # Still wanted: workers switch to fast VMs on their next share of this seed.
            if keep:
                state.dataset = dataset
        # Evicted meanwhile: nobody will use it.
        if not keep:
            dataset.close()
            return
        logger.info(
            "randomx dataset ready for seed %s in %.1f s",
            seed_hex,
            time.monotonic() - started,
            extra={"seed": seed_hex, "seconds": time.monotonic() - started},
        )

    # -- workers -------------------------------------------------------------------------

    def _work(self) -> None:
        """Worker loop: one VM per seed, hashes jobs until the stop marker."""
        vms: dict[_Seed, RandomXVM] = {}
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=_SWEEP_SECONDS)
                except queue.Empty:
                    self._sweep(vms)
                    continue
                self._sweep(vms)
                # Stop marker from close().
                if job is None:
                    return
                self._run(job, vms)
        finally:
            for vm in vms.values():
                vm.close()

    @staticmethod
    def _sweep(vms: dict[_Seed, RandomXVM]) -> None:
        """Close VMs of evicted seeds so their caches and datasets can be freed."""
        for st in [s for s in vms if s.retired and s.refs == 0]:
            vms.pop(st).close()

    def _run(self, job: _Job, vms: dict[_Seed, RandomXVM]) -> None:
        try:
            # The waiter was cancelled while the job was queued: skip the work.
            if not job.future.set_running_or_notify_cancel():
                return
            try:
                result = self._vm_for(job.seed, vms).hash(job.blob)
            except BaseException as exc:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
        finally:
            self._finish(job.seed)

    def _vm_for(self, state: _Seed, vms: dict[_Seed, RandomXVM]) -> RandomXVM:
        """This worker's VM for ``state``: fast once the dataset exists, else light."""
        vm = vms.get(state)
        dataset = state.dataset
        # Have a VM and no faster one is possible (or it is already fast).
        if vm is not None and (vm.fast or dataset is None or state.fast_failed):
            return vm
        # A dataset is ready: move to a fast VM (and drop the light one).
        if dataset is not None and not state.fast_failed:
            try:
                fast = RandomXVM(None, dataset, self._flags)
            except PowError as exc:
                state.fast_failed = True
                logger.warning("fast randomx VM failed, staying light: %s", exc)
            else:
                # Replacing the light VM: close it now rather than waiting for the sweep.
                if vm is not None:
                    vm.close()
                vms[state] = fast
                return fast
        # Already have a light VM (fast one failed).
        if vm is not None:
            return vm
        vm = RandomXVM(state.ready.result(), None, self._flags)
        vms[state] = vm
        return vm
