"""RandomX through ctypes on Debian's ``librandomx.so.0`` (RandomX 1.1.10).

Why our own binding: it is about 300 lines, adds no dependency, and ctypes releases the GIL
for the whole foreign call, so N Python threads hash on N cores (see bench/randomx_binding.py).

The objects mirror randomx.h:

- ``RandomXCache(key)``: 256 MiB, keyed by the seed hash; ~0.5 s of Argon2 to build.  Light
  mode (what monerod uses to verify) hashes from it directly, ~30 ms a hash on one core.
- ``RandomXDataset.build(cache, threads)``: the 2 GiB fast-mode dataset expanded from a
  cache (~64 s on one thread), ~5.5 ms a hash.
- ``RandomXVM(cache, dataset=None)``: a machine with its own 2 MiB scratchpad.  **A VM is not
  thread-safe**: give each thread its own VM (they may share one cache or dataset, which are
  read-only once built).  Using one VM from two threads at once raises PowError instead of
  corrupting hashes.

Every native object is released deterministically by ``close()`` or a ``with`` block;
``__del__`` is only a safety net.  A cache or dataset closed while VMs still use it is freed
when the last of those VMs closes, so closing in any order is safe.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import enum
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Self

from rpcpay.errors import PowError

__all__ = [
    "HASH_SIZE",
    "RandomXCache",
    "RandomXDataset",
    "RandomXFlags",
    "RandomXVM",
    "dataset_item_count",
    "randomx_hash",
    "recommended_flags",
]

logger = logging.getLogger("rpcpay.pow")

#: Bytes in a RandomX hash (RANDOMX_HASH_SIZE).
HASH_SIZE = 32

_LIBRARY_NAMES = ("librandomx.so.0", "librandomx.so")
#: Chunks per dataset build: small enough for progress reports and prompt cancellation
#: (~0.25 s of work each), large enough that the Python overhead is nil.
_DATASET_CHUNKS = 256


class RandomXFlags(enum.IntFlag):
    """randomx_flags from randomx.h, same names and values."""

    DEFAULT = 0
    LARGE_PAGES = 1
    HARD_AES = 2
    FULL_MEM = 4
    JIT = 8
    SECURE = 16
    ARGON2_SSSE3 = 32
    ARGON2_AVX2 = 64
    ARGON2 = 96


# Flags each allocation may drop, in order, when the library returns NULL: large pages are
# often not configured (vm.nr_hugepages = 0) and JIT pages may be forbidden (W^X policies).
_CACHE_FALLBACKS = (RandomXFlags.LARGE_PAGES, RandomXFlags.JIT, RandomXFlags.ARGON2)
_VM_FALLBACKS = (RandomXFlags.LARGE_PAGES, RandomXFlags.JIT, RandomXFlags.HARD_AES)
_DATASET_FALLBACKS = (RandomXFlags.LARGE_PAGES,)

_lib_lock = threading.Lock()
_lib_handle: ctypes.CDLL | None = None
_fenv: tuple[Callable[..., Any], Callable[..., Any]] | None = None


def _declare(lib: ctypes.CDLL) -> None:
    """Give every function its C signature: without argtypes ctypes would pass pointers and
    sizes as 32-bit ints and truncate them on x86_64."""
    vp, sz, ul, fl = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_ulong, ctypes.c_int
    sigs: dict[str, tuple[list[Any], Any]] = {
        "randomx_get_flags": ([], fl),
        "randomx_alloc_cache": ([fl], vp),
        "randomx_init_cache": ([vp, ctypes.c_char_p, sz], None),
        "randomx_release_cache": ([vp], None),
        "randomx_alloc_dataset": ([fl], vp),
        "randomx_dataset_item_count": ([], ul),
        "randomx_init_dataset": ([vp, vp, ul, ul], None),
        "randomx_release_dataset": ([vp], None),
        "randomx_create_vm": ([fl, vp, vp], vp),
        "randomx_destroy_vm": ([vp], None),
        "randomx_calculate_hash": ([vp, ctypes.c_char_p, sz, ctypes.c_char_p], None),
        "randomx_calculate_hash_first": ([vp, ctypes.c_char_p, sz], None),
        "randomx_calculate_hash_next": ([vp, ctypes.c_char_p, sz, ctypes.c_char_p], None),
        "randomx_calculate_hash_last": ([vp, ctypes.c_char_p], None),
    }
    for name, (argtypes, restype) in sigs.items():
        func = getattr(lib, name)
        func.argtypes = argtypes
        func.restype = restype


def _load_fenv() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """libm's fegetenv/fesetenv, to undo the rounding-mode change the pipelined hash
    functions leave behind (randomx.h warns about it); None where libm has no such names."""
    for name in ("libm.so.6", ctypes.util.find_library("m")):
        if not name:
            continue
        try:
            libm = ctypes.CDLL(name)
            get, put = libm.fegetenv, libm.fesetenv
        except (OSError, AttributeError):
            continue
        get.argtypes = put.argtypes = [ctypes.c_char_p]
        get.restype = put.restype = ctypes.c_int
        return get, put
    return None


def _lib() -> ctypes.CDLL:
    """The loaded library, loaded once on first use so importing rpcpay never fails."""
    global _lib_handle, _fenv
    with _lib_lock:
        # Already loaded: the common path.
        if _lib_handle is not None:
            return _lib_handle
        errors: list[str] = []
        for name in _LIBRARY_NAMES:
            try:
                lib = ctypes.CDLL(name)
            except OSError as exc:
                errors.append(str(exc))
                continue
            try:
                _declare(lib)
            except AttributeError as exc:
                raise PowError(f"{name} lacks a RandomX function: {exc}") from exc
            _fenv = _load_fenv()
            _lib_handle = lib
            return lib
        raise PowError(
            "RandomX library not found (librandomx.so.0): install Debian's librandomx0 "
            "(apt-get install librandomx0). " + "; ".join(errors)
        )


def recommended_flags() -> RandomXFlags:
    """randomx_get_flags(): HARD_AES, JIT and the best Argon2 this CPU supports (never
    LARGE_PAGES, FULL_MEM or SECURE, which callers add on purpose)."""
    return RandomXFlags(int(_lib().randomx_get_flags()))


def dataset_item_count() -> int:
    """Items in a full dataset (each 64 bytes): 34,078,719 for RandomX as Monero uses it."""
    return int(_lib().randomx_dataset_item_count())


def _allocate(
    what: str,
    flags: RandomXFlags,
    fallbacks: tuple[RandomXFlags, ...],
    alloc: Callable[[RandomXFlags], int | None],
) -> tuple[int, RandomXFlags]:
    """Call ``alloc`` with ``flags``; on NULL drop the optional flags one at a time and retry.

    Returns the pointer and the flags that worked.  Only when even the plainest flags fail
    (out of memory) is it an error, because every optional flag changes speed, not results.
    """
    tried = flags
    ptr = alloc(tried)
    for optional in fallbacks:
        # Got memory: no need to give anything up.
        if ptr:
            break
        # This flag is not set: dropping it changes nothing.
        if not tried & optional:
            continue
        tried &= ~optional
        logger.warning(
            "randomx %s allocation failed; retrying without %s",
            what,
            optional.name,
            extra={"randomx_object": what, "flags": int(tried)},
        )
        ptr = alloc(tried)
    # Still NULL with the plainest flags: the machine is out of memory (or address space).
    if not ptr:
        raise PowError(f"RandomX could not allocate its {what} (flags {flags!r}): out of memory?")
    return ptr, tried


class _Native:
    """A native RandomX object: one pointer, released once, after its last user."""

    _kind = "object"

    def __init__(self) -> None:
        self._ptr: int | None = None
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False

    @property
    def closed(self) -> bool:
        """True once close() was called (the memory may wait for its last VM)."""
        return self._closing

    def _pointer(self) -> int:
        # A closed object must never reach C: its memory is (or will soon be) freed.
        if self._ptr is None or self._closing:
            raise PowError(f"RandomX {self._kind} is closed")
        return self._ptr

    def _acquire(self) -> int:
        """Register a user (a VM or a dataset build) and return the pointer it may use."""
        with self._lock:
            ptr = self._pointer()
            self._users += 1
            return ptr

    def _release_user(self) -> None:
        with self._lock:
            self._users -= 1
            free = self._closing and self._users == 0
        # The last user of a closed object frees it.
        if free:
            self._free()

    def close(self) -> None:
        """Release the native memory now, or when the last VM using it closes."""
        with self._lock:
            # Closing twice is harmless.
            if self._closing:
                return
            self._closing = True
            free = self._users == 0
        if free:
            self._free()

    def _free(self) -> None:
        ptr, self._ptr = self._ptr, None
        # Nothing was allocated (constructor failed) or it is already freed.
        if ptr:
            self._release(ptr)

    def _release(self, ptr: int) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Safety net only; an interpreter shutting down may have torn down the library.
        with contextlib.suppress(Exception):
            self.close()


class RandomXCache(_Native):
    """randomx_cache: 256 MiB derived from ``key`` (Monero: the 32-byte seed hash).

    Building it costs ~0.5 s of Argon2, so keep one per seed and share it between threads:
    it is read-only once initialised.  Light-mode VMs hash from it directly.
    """

    _kind = "cache"

    def __init__(self, key: bytes, flags: RandomXFlags | None = None) -> None:
        super().__init__()
        lib = _lib()
        # A str key would hash its encoding by accident; RandomX keys are bytes.
        if not isinstance(key, bytes | bytearray):
            raise TypeError("RandomX key must be bytes")
        self.key = bytes(key)
        wanted = recommended_flags() if flags is None else RandomXFlags(flags)
        ptr, self.flags = _allocate(
            "cache", wanted, _CACHE_FALLBACKS, lambda f: lib.randomx_alloc_cache(int(f))
        )
        self._ptr = ptr
        lib.randomx_init_cache(ptr, self.key, len(self.key))

    def _release(self, ptr: int) -> None:
        _lib().randomx_release_cache(ptr)


class RandomXDataset(_Native):
    """randomx_dataset: the 2 GiB (2080 MiB) fast-mode dataset, expanded from a cache.

    Build it with ``RandomXDataset.build``; it is read-only afterwards and shared by all
    fast-mode VMs of that seed.  The cache is not needed by fast VMs once it is built.
    """

    _kind = "dataset"

    def __init__(self, flags: RandomXFlags = RandomXFlags.DEFAULT) -> None:
        """Allocate an *uninitialised* dataset; use ``build`` unless filling it yourself."""
        super().__init__()
        lib = _lib()
        ptr, self.flags = _allocate(
            "dataset",
            RandomXFlags(flags) & RandomXFlags.LARGE_PAGES,
            _DATASET_FALLBACKS,
            lambda f: lib.randomx_alloc_dataset(int(f)),
        )
        self._ptr = ptr
        self.key: bytes | None = None

    @classmethod
    def build(
        cls,
        cache: RandomXCache,
        threads: int,
        progress: Callable[[int, int], None] | None = None,
        *,
        flags: RandomXFlags = RandomXFlags.DEFAULT,
        cancel: threading.Event | None = None,
    ) -> RandomXDataset:
        """Allocate a dataset and fill it from ``cache`` on ``threads`` Python threads.

        The items are cut into chunks that the threads take in turn (randomx_init_dataset
        on non-overlapping ranges, GIL released).  ``progress(done_items, total_items)`` is
        called on the *calling* thread after each chunk.  Setting ``cancel`` stops the build
        after the chunks under way and raises PowError.  ~64 s on one core.
        """
        # Zero threads would never finish; a negative count is a caller bug.
        if threads < 1:
            raise ValueError("threads must be ≥ 1")
        lib = _lib()
        dataset = cls(flags)
        try:
            dataset.key = cache.key
            cache_ptr = cache._acquire()
            try:
                dataset._fill(lib, cache_ptr, threads, progress, cancel)
            finally:
                cache._release_user()
        except BaseException:
            dataset.close()
            raise
        return dataset

    def _fill(
        self,
        lib: ctypes.CDLL,
        cache_ptr: int,
        threads: int,
        progress: Callable[[int, int], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        total = dataset_item_count()
        step = -(-total // _DATASET_CHUNKS)
        chunks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        for start in range(0, total, step):
            chunks.put((start, min(step, total - start)))
        done: queue.SimpleQueue[int | BaseException] = queue.SimpleQueue()
        stop = threading.Event()
        ptr = self._pointer()

        def work() -> None:
            try:
                while not stop.is_set() and not (cancel is not None and cancel.is_set()):
                    try:
                        start, count = chunks.get_nowait()
                    except queue.Empty:
                        return
                    lib.randomx_init_dataset(ptr, cache_ptr, start, count)
                    done.put(count)
            except BaseException as exc:  # reported to the calling thread below
                done.put(exc)

        workers = [
            threading.Thread(target=work, name=f"randomx-dataset-{i}", daemon=True)
            for i in range(min(threads, _DATASET_CHUNKS))
        ]
        for t in workers:
            t.start()
        filled = 0
        try:
            while filled < total:
                # Poll so that a cancel is noticed even while every thread is mid-chunk.
                try:
                    item = done.get(timeout=0.2)
                except queue.Empty:
                    item = 0
                # A worker failed: the dataset is incomplete and unusable.
                if isinstance(item, BaseException):
                    raise PowError("RandomX dataset build failed") from item
                filled += item
                # Cancelled: give up now rather than spend a minute of CPU for nothing.
                if cancel is not None and cancel.is_set():
                    raise PowError("RandomX dataset build cancelled")
                # Every thread exited without filling everything: cannot happen unless a
                # worker died silently; fail rather than hand out a partial dataset.
                if item == 0 and not any(t.is_alive() for t in workers) and done.empty():
                    raise PowError("RandomX dataset build stopped early")
                if progress is not None and item:
                    progress(filled, total)
        finally:
            stop.set()
            for t in workers:
                t.join()

    def _release(self, ptr: int) -> None:
        _lib().randomx_release_dataset(ptr)


class RandomXVM(_Native):
    """randomx_vm: hashes blobs, light mode from a cache or fast mode from a dataset.

    Not thread-safe: one VM per thread.  Concurrent use of one VM raises PowError.
    ``hash()`` restores the thread's floating-point environment itself (RandomX does);
    the pipelined ``hash_first/next/last`` calls are wrapped to restore it too.
    """

    _kind = "VM"

    def __init__(
        self,
        cache: RandomXCache | None,
        dataset: RandomXDataset | None = None,
        flags: RandomXFlags | None = None,
    ) -> None:
        super().__init__()
        lib = _lib()
        # A light VM computes dataset items from the cache; without either it has no data.
        if cache is None and dataset is None:
            raise ValueError("RandomXVM needs a cache (light mode) or a dataset (fast mode)")
        wanted = recommended_flags() if flags is None else RandomXFlags(flags)
        wanted &= ~RandomXFlags.ARGON2
        # FULL_MEM must match whether a dataset is given, or randomx_create_vm returns NULL.
        if dataset is not None:
            wanted |= RandomXFlags.FULL_MEM
        else:
            wanted &= ~RandomXFlags.FULL_MEM
        self._cache = cache if dataset is None else None
        self._dataset = dataset
        self._busy = threading.Lock()
        self._pipelined = False
        self._out = ctypes.create_string_buffer(HASH_SIZE)
        self._fenv_buf = ctypes.create_string_buffer(64)  # fenv_t is 32 bytes on x86_64
        cache_ptr = self._cache._acquire() if self._cache is not None else None
        try:
            dataset_ptr = dataset._acquire() if dataset is not None else None
        except BaseException:
            self._drop_users()
            raise
        try:
            ptr, self.flags = _allocate(
                "VM",
                wanted,
                _VM_FALLBACKS,
                lambda f: lib.randomx_create_vm(int(f), cache_ptr, dataset_ptr),
            )
        except BaseException:
            self._drop_users()
            raise
        self._ptr = ptr
        self._lib = lib
        self.key = dataset.key if dataset is not None else cache.key if cache else None

    @property
    def fast(self) -> bool:
        """True for a fast-mode (dataset) VM."""
        return self._dataset is not None

    def _drop_users(self) -> None:
        for owner in (self._cache, self._dataset):
            # Only what this VM registered with gets released.
            if owner is not None:
                owner._release_user()
        self._cache = self._dataset = None

    def _enter(self) -> int:
        # A second thread on the same VM would trash its scratchpad: refuse loudly.
        if not self._busy.acquire(blocking=False):
            raise PowError("RandomXVM used by two threads at once; give each thread its own VM")
        try:
            return self._pointer()
        except BaseException:
            self._busy.release()
            raise

    def hash(self, blob: bytes) -> bytes:
        """RandomX hash (32 bytes) of ``blob``.  ~30 ms light, ~5.5 ms fast, GIL released."""
        ptr = self._enter()
        try:
            # hash() would overwrite the state a pipelined hash_next is waiting to finish.
            if self._pipelined:
                raise PowError("hash() called between hash_first() and hash_last()")
            data = bytes(blob)
            self._lib.randomx_calculate_hash(ptr, data, len(data), self._out)
            return self._out.raw
        finally:
            self._busy.release()

    def hash_first(self, blob: bytes) -> None:
        """Start hashing ``blob``; its hash comes from the next hash_next/hash_last.

        For miners: hash_next(b) finishes the previous hash while starting b's, which
        overlaps the two and is a few percent faster than hash() in a loop.
        """
        ptr = self._enter()
        try:
            data = bytes(blob)
            self._with_fenv(self._lib.randomx_calculate_hash_first, ptr, data, len(data))
            self._pipelined = True
        finally:
            self._busy.release()

    def hash_next(self, blob: bytes) -> bytes:
        """Return the hash of the previous blob and start hashing ``blob``."""
        ptr = self._enter()
        try:
            # Nothing started: there is no previous hash to return.
            if not self._pipelined:
                raise PowError("hash_next() without hash_first()")
            data = bytes(blob)
            self._with_fenv(self._lib.randomx_calculate_hash_next, ptr, data, len(data), self._out)
            return self._out.raw
        finally:
            self._busy.release()

    def hash_last(self) -> bytes:
        """Return the hash of the previous blob and end the pipeline."""
        ptr = self._enter()
        try:
            # Nothing started: there is no previous hash to return.
            if not self._pipelined:
                raise PowError("hash_last() without hash_first()")
            self._with_fenv(self._lib.randomx_calculate_hash_last, ptr, self._out)
            self._pipelined = False
            return self._out.raw
        finally:
            self._busy.release()

    def hash_many(self, blobs: Iterable[bytes]) -> Iterator[bytes]:
        """Hashes of ``blobs`` in order, through the pipelined API."""
        it = iter(blobs)
        first = next(it, None)
        # No input, no hashes (and no pipeline left open).
        if first is None:
            return
        self.hash_first(first)
        try:
            for blob in it:
                yield self.hash_next(blob)
            yield self.hash_last()
        finally:
            # Abandoned mid-way (generator closed): end the pipeline so hash() works again.
            if self._pipelined and not self._closing:
                self.hash_last()

    def _with_fenv(self, func: Callable[..., Any], *args: Any) -> None:
        """Call ``func`` and put the thread's floating-point environment back afterwards:
        RandomX programs change the rounding mode and the pipelined calls leave it so."""
        fenv = _fenv
        # No libm fenv functions: call plainly (documented risk on such platforms).
        if fenv is None:
            func(*args)
            return
        fenv[0](self._fenv_buf)
        try:
            func(*args)
        finally:
            fenv[1](self._fenv_buf)

    def close(self) -> None:
        """Destroy the VM now (waiting for a hash under way on another thread)."""
        with self._busy:
            super().close()

    def _release(self, ptr: int) -> None:
        _lib().randomx_destroy_vm(ptr)
        self._drop_users()


def randomx_hash(key: bytes, blob: bytes) -> bytes:
    """One light-mode hash with a fresh cache: ~0.5 s (cache) + ~30 ms.  For tests and
    one-off checks; anything repeated should keep a RandomXCache and a RandomXVM."""
    with RandomXCache(key) as cache, RandomXVM(cache) as vm:
        return vm.hash(blob)
