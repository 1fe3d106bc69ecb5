"""The ctypes RandomX binding against RandomX's own test vectors and its documented API."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.errors import PowError
from rpcpay.pow import randomx
from rpcpay.pow.randomx import (
    HASH_SIZE,
    RandomXCache,
    RandomXDataset,
    RandomXFlags,
    RandomXVM,
    randomx_hash,
    recommended_flags,
)
from tests.pow.conftest import KEY_000, KEY_001
from tests.pow.vectors import VECTORS


def test_published_vector_a() -> None:
    key, blob, expected = VECTORS[0]
    assert randomx_hash(key, blob).hex() == expected


@pytest.mark.parametrize("key,blob,expected", VECTORS[1:], ids=["1b", "1c", "1d", "1e"])
def test_reference_vectors(key: bytes, blob: bytes, expected: str) -> None:
    with RandomXCache(key) as cache, RandomXVM(cache) as vm:
        assert vm.hash(blob).hex() == expected


def test_interpreter_and_jit_agree_with_the_vector(cache000: RandomXCache) -> None:
    # DEFAULT = portable interpreter, no JIT, software AES: a different code path in C.
    with RandomXVM(cache000, flags=RandomXFlags.DEFAULT) as vm:
        assert vm.flags == RandomXFlags.DEFAULT
        assert vm.hash(VECTORS[0][1]).hex() == VECTORS[0][2]


def test_flags_mirror_randomx_h() -> None:
    assert [(n, int(f)) for n, f in RandomXFlags.__members__.items()] == [
        ("DEFAULT", 0), ("LARGE_PAGES", 1), ("HARD_AES", 2), ("FULL_MEM", 4), ("JIT", 8),
        ("SECURE", 16), ("ARGON2_SSSE3", 32), ("ARGON2_AVX2", 64), ("ARGON2", 96),
    ]  # fmt: skip
    flags = recommended_flags()
    # randomx.h: never LARGE_PAGES, FULL_MEM or SECURE from randomx_get_flags.
    assert not flags & (RandomXFlags.LARGE_PAGES | RandomXFlags.FULL_MEM | RandomXFlags.SECURE)


def test_hash_many_matches_vectors(vm000: RandomXVM) -> None:
    blobs = [blob for key, blob, _ in VECTORS if key == KEY_000]
    want = [h for key, _, h in VECTORS if key == KEY_000]
    assert [h.hex() for h in vm000.hash_many(blobs)] == want
    assert list(vm000.hash_many([])) == []


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=4))
def test_pipelined_equals_single(vm000: RandomXVM, blobs: list[bytes]) -> None:
    singles = [vm000.hash(b) for b in blobs]
    vm000.hash_first(blobs[0])
    piped = [vm000.hash_next(b) for b in blobs[1:]]
    piped.append(vm000.hash_last())
    assert piped == singles
    assert all(len(h) == HASH_SIZE for h in piped)


def test_pipeline_misuse_is_refused(vm000: RandomXVM) -> None:
    with pytest.raises(PowError):
        vm000.hash_next(b"x")
    with pytest.raises(PowError):
        vm000.hash_last()
    vm000.hash_first(b"x")
    with pytest.raises(PowError):
        vm000.hash(b"y")
    assert vm000.hash_last() == vm000.hash(b"x")


def _python_floats_round_to_nearest() -> bool:
    """Python floats are SSE doubles: MXCSR's rounding mode decides 1 ± 2**-60."""
    tiny = 2.0**-60
    return (1.0 + tiny) == 1.0 and (1.0 - tiny) == 1.0


@pytest.mark.parametrize("flags", [None, RandomXFlags.DEFAULT], ids=["jit", "interpreter"])
def test_rounding_mode_is_restored(cache000: RandomXCache, flags: RandomXFlags | None) -> None:
    # RandomX programs set random rounding modes (CFROUND) and the pipelined calls leave
    # the last one in MXCSR; with 12 inputs the chance that an unrestored pipeline always
    # ends on round-to-nearest is about (1/4)**12.
    blobs = [bytes([i]) * 40 for i in range(12)]
    with RandomXVM(cache000, flags=flags) as vm:
        assert _python_floats_round_to_nearest()
        vm.hash_first(blobs[0])
        for b in blobs[1:]:
            vm.hash_next(b)
            assert _python_floats_round_to_nearest()
        vm.hash_last()
        assert _python_floats_round_to_nearest()
        vm.hash(b"abc")
        assert _python_floats_round_to_nearest()


def test_vm_refuses_concurrent_use(cache000: RandomXCache) -> None:
    # Interpreter VM: ~150 ms a hash, so the other thread is surely inside C for a while.
    with RandomXVM(cache000, flags=RandomXFlags.DEFAULT) as vm:
        inside = threading.Event()

        def busy() -> None:
            inside.set()
            for i in range(3):
                vm.hash(bytes([i]))

        t = threading.Thread(target=busy)
        t.start()
        inside.wait()
        refused = False
        while t.is_alive() and not refused:
            try:
                vm.hash(b"z")
            except PowError:
                refused = True
        t.join()
        assert refused


def test_gil_is_released_during_hash(cache000: RandomXCache) -> None:
    """While a thread hashes, the main thread keeps running Python code.

    If the GIL were held for the whole foreign call, the main thread would stall for one
    full hash (~30 ms) per hash; we count such stalls.
    """
    with RandomXVM(cache000) as vm:
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            vm.hash(bytes([i]) * 43)
            times.append(time.perf_counter() - t0)
        hash_time = statistics.median(times)
        n_hashes = 12
        done = threading.Event()

        def worker() -> None:
            for i in range(n_hashes):
                vm.hash(bytes([i]) * 76)
            done.set()

        t = threading.Thread(target=worker)
        t.start()
        gaps: list[float] = []
        last = time.perf_counter()
        while not done.is_set():
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        t.join()
    stalls = sum(1 for g in gaps if g > hash_time / 2)
    assert stalls < n_hashes // 2, (stalls, hash_time, max(gaps))


def test_closed_objects_refuse_work(cache000: RandomXCache) -> None:
    vm = RandomXVM(cache000)
    vm.close()
    vm.close()  # twice is fine
    assert vm.closed
    with pytest.raises(PowError):
        vm.hash(b"x")
    cache = RandomXCache(KEY_001)
    cache.close()
    with pytest.raises(PowError):
        RandomXVM(cache)


def test_cache_closed_before_vm_is_freed_after_it() -> None:
    cache = RandomXCache(KEY_000)
    vm = RandomXVM(cache)
    cache.close()
    # The VM still works: the cache's memory waits for its last VM.
    assert vm.hash(VECTORS[0][1]).hex() == VECTORS[0][2]
    assert cache._ptr is not None
    vm.close()
    assert cache._ptr is None


def test_vm_needs_cache_or_dataset() -> None:
    with pytest.raises(ValueError):
        RandomXVM(None)


def test_key_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        RandomXCache("test key 000")  # type: ignore[arg-type]


def test_allocation_falls_back_then_fails() -> None:
    calls: list[RandomXFlags] = []

    def alloc_without_large_pages(flags: RandomXFlags) -> int | None:
        calls.append(flags)
        return None if flags & RandomXFlags.LARGE_PAGES else 1234

    wanted = RandomXFlags.LARGE_PAGES | RandomXFlags.JIT | RandomXFlags.HARD_AES
    ptr, used = randomx._allocate("VM", wanted, randomx._VM_FALLBACKS, alloc_without_large_pages)
    assert ptr == 1234
    assert used == RandomXFlags.JIT | RandomXFlags.HARD_AES
    assert calls == [wanted, used]
    with pytest.raises(PowError, match="out of memory"):
        randomx._allocate("VM", wanted, randomx._VM_FALLBACKS, lambda f: None)


def test_large_pages_request_still_hashes() -> None:
    # With no huge pages configured (the usual case) the cache falls back to normal pages.
    flags = recommended_flags() | RandomXFlags.LARGE_PAGES
    with RandomXCache(KEY_000, flags) as cache, RandomXVM(cache, flags=flags) as vm:
        assert vm.hash(VECTORS[0][1]).hex() == VECTORS[0][2]


def test_missing_library_is_a_clear_pow_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(randomx, "_lib_handle", None)
    monkeypatch.setattr(randomx, "_LIBRARY_NAMES", ("librandomx-does-not-exist.so.0",))
    with pytest.raises(PowError, match="librandomx0"):
        recommended_flags()


def test_dataset_build_cancel(cache000: RandomXCache) -> None:
    cancel = threading.Event()
    cancel.set()
    t0 = time.perf_counter()
    with pytest.raises(PowError, match="cancelled"):
        RandomXDataset.build(cache000, 2, cancel=cancel)
    # A cancelled build stops after at most the chunks under way, not after ~64 s.
    assert time.perf_counter() - t0 < 10
    with pytest.raises(ValueError):
        RandomXDataset.build(cache000, 0)
