"""The wallet's RandomX miner: valid shares, no nonce twice, job and seed changes, stop.

Light mode and tiny difficulties keep these quick (~30 ms a light hash per core); at
difficulty 1 every hash is a share, which shows exactly which nonces were hashed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from rpcpay.errors import BlockFormatError, PowError
from rpcpay.pow.difficulty import check_hash
from rpcpay.pow.randomx import RandomXCache, RandomXDataset, RandomXVM
from rpcpay.wallet import miner as miner_module
from rpcpay.wallet.miner import LightMiner, Miner, MiningJob, Share, eta_seconds
from rpcpay.wire.block import nonce_offset, set_nonce

SEED_A = bytes(range(32))
SEED_B = bytes(range(1, 33))
TIMEOUT = 30.0


def make_blob(tag: int) -> bytes:
    """A 76-byte hashing blob shaped like Monero's: versions, 5-byte varint timestamp,
    prev id, then the nonce at offset 39."""
    blob = b"\x10\x10" + b"\x80\x80\x80\x80\x01" + bytes([tag]) * 32 + bytes(4) + bytes(33)
    assert len(blob) == 76 and nonce_offset(blob) == 39
    return blob


def collect(miner: Miner, n: int) -> list[Share]:
    shares = []
    for _ in range(n):
        share = miner.get_share(timeout=TIMEOUT)
        assert share is not None, "no share in time"
        shares.append(share)
    return shares


def collect_until_cookie(miner: Miner, cookie: int, more: int) -> list[Share]:
    """Shares until one with ``cookie`` shows (those queued before the job change come
    first), then ``more`` shares."""
    shares: list[Share] = []
    while not any(s.cookie == cookie for s in shares):
        shares += collect(miner, 1)
    return shares + collect(miner, more)


def wait_idle(miner: Miner) -> int:
    """After stop(): wait until the hash count stops moving (the in-flight hashes ended)."""
    last = -1
    while miner.hashes != last:
        last = miner.hashes
        time.sleep(0.3)
    return last


def drain(miner: Miner) -> list[Share]:
    out = []
    while (share := miner.get_share(timeout=0)) is not None:
        out.append(share)
    return out


@pytest.fixture
def miner() -> Iterator[Miner]:
    with Miner(threads=2, mode="light") as m:
        yield m


@pytest.fixture(scope="module")
def vm_a() -> Iterator[RandomXVM]:
    with RandomXCache(SEED_A) as cache, RandomXVM(cache) as vm:
        yield vm


@pytest.fixture(scope="module")
def vm_b() -> Iterator[RandomXVM]:
    with RandomXCache(SEED_B) as cache, RandomXVM(cache) as vm:
        yield vm


def test_shares_are_valid(miner: Miner, vm_a: RandomXVM) -> None:
    blob = make_blob(1)
    miner.set_job(MiningJob(blob, SEED_A, 4, cookie=7))
    miner.start()
    assert miner.running
    shares = collect(miner, 5)
    assert miner.mode == "light"
    assert miner.hashrate() > 0
    for share in shares:
        assert share.cookie == 7
        digest = vm_a.hash(set_nonce(blob, share.nonce))
        assert share.hash == digest
        assert check_hash(digest, 4)


def test_every_nonce_once_across_threads(miner: Miner) -> None:
    # Difficulty 1: every hash is a share, so the shares are exactly the hashed nonces.
    miner.set_job(MiningJob(make_blob(2), SEED_A, 1, cookie=1))
    miner.start()
    shares = collect(miner, 30)
    miner.stop()
    hashed = wait_idle(miner)
    shares += drain(miner)
    nonces = [s.nonce for s in shares]
    assert len(nonces) == len(set(nonces)) == hashed
    # Coverage: the threads split one counter, nothing skipped, nothing twice.
    assert sorted(nonces) == list(range(hashed))


def test_same_job_keeps_progress_new_job_new_cookie(miner: Miner, vm_a: RandomXVM) -> None:
    blob = make_blob(3)
    job = MiningJob(blob, SEED_A, 1, cookie=1)
    miner.set_job(job)
    miner.start()
    shares = collect(miner, 8)
    for _ in range(3):
        # An identical job (a fresh but equal object too) must not restart from nonce 0.
        miner.set_job(MiningJob(bytes(blob), bytes(SEED_A), 1, cookie=1))
        shares += collect(miner, 4)
    nonces = [s.nonce for s in shares]
    assert len(nonces) == len(set(nonces))
    miner.set_job(MiningJob(blob, SEED_A, 1, cookie=2))
    later = collect_until_cookie(miner, 2, more=8)
    # Once the new job shows, at most one in-flight hash per thread belongs to the old one.
    first_new = next(i for i, s in enumerate(later) if s.cookie == 2)
    assert sum(s.cookie == 1 for s in later[first_new:]) <= miner.threads
    assert later[-1].cookie == 2
    new = [s.nonce for s in later if s.cookie == 2]
    assert len(new) == len(set(new))
    # A different blob (same cookie) is a new job too: its shares hash the new blob.
    blob4 = make_blob(4)
    drain(miner)
    miner.set_job(MiningJob(blob4, SEED_A, 1, cookie=2))
    third = collect(miner, 12)
    last = third[-1]
    assert last.cookie == 2
    assert last.hash == vm_a.hash(set_nonce(blob4, last.nonce))


def test_going_back_to_a_recent_job_resumes_it(miner: Miner) -> None:
    job_a = MiningJob(make_blob(5), SEED_A, 1, cookie=1)
    job_b = MiningJob(make_blob(6), SEED_A, 1, cookie=2)
    miner.set_job(job_a)
    miner.start()
    first = collect(miner, 6)
    miner.set_job(job_b)
    collect(miner, 6)
    miner.set_job(job_a)
    later = collect(miner, 10)
    miner.stop()
    wait_idle(miner)
    later += drain(miner)
    a_nonces = [s.nonce for s in first + later if s.cookie == 1]
    assert len(a_nonces) == len(set(a_nonces))


def test_difficulty_change_keeps_progress(miner: Miner) -> None:
    blob = make_blob(7)
    miner.set_job(MiningJob(blob, SEED_A, 1, cookie=1))
    miner.start()
    shares = collect(miner, 6)
    miner.set_job(MiningJob(blob, SEED_A, 2, cookie=1))
    shares += collect(miner, 4)
    nonces = [s.nonce for s in shares]
    assert len(nonces) == len(set(nonces))


def test_stop_really_stops(miner: Miner) -> None:
    miner.set_job(MiningJob(make_blob(8), SEED_A, 1_000_000, cookie=1))
    miner.start()
    deadline = time.monotonic() + TIMEOUT
    while miner.hashes < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    at_stop = miner.hashes
    miner.stop()
    assert not miner.running
    # Each thread may finish what is in flight: the hash under way and the pipelined one
    # it started before (hash_last), i.e. at most two per thread.
    parked = wait_idle(miner)
    assert parked - at_stop <= 2 * miner.threads
    time.sleep(1.0)
    assert miner.hashes == parked
    rate = miner.hashrate()
    # And it resumes.
    miner.start()
    deadline = time.monotonic() + TIMEOUT
    while miner.hashes <= parked:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rate > 0  # the 10 s window still remembers the hashes before the stop


def test_seed_change(miner: Miner, vm_a: RandomXVM, vm_b: RandomXVM) -> None:
    blob = make_blob(9)
    miner.set_job(MiningJob(blob, SEED_A, 3, cookie=1))
    miner.start()
    (first,) = collect(miner, 1)
    assert first.hash == vm_a.hash(set_nonce(blob, first.nonce))
    miner.set_job(MiningJob(blob, SEED_B, 3, cookie=2))
    shares = [s for s in collect_until_cookie(miner, 2, more=3) if s.cookie == 2]
    assert shares
    for share in shares:
        digest = vm_b.hash(set_nonce(blob, share.nonce))
        assert share.hash == digest and check_hash(digest, 3)
    # A third seed: at most two are kept.
    miner.set_job(MiningJob(blob, bytes(32), 3, cookie=3))
    collect_until_cookie(miner, 3, more=0)
    assert len(miner._seeds) <= 2


def test_next_share_async(miner: Miner) -> None:
    async def main() -> tuple[Share | None, Share | None]:
        none = await miner.next_share(timeout=0.2)  # no job yet
        miner.set_job(MiningJob(make_blob(10), SEED_A, 2, cookie=5))
        miner.start()
        return none, await miner.next_share(timeout=TIMEOUT)

    none, share = asyncio.run(main())
    assert none is None
    assert share is not None and share.cookie == 5


def test_cancelled_next_share_loses_nothing(miner: Miner) -> None:
    async def main() -> list[Share]:
        miner.set_job(MiningJob(make_blob(11), SEED_A, 1, cookie=1))
        miner.start()
        got = []
        for _ in range(6):
            task = asyncio.ensure_future(miner.next_share(timeout=TIMEOUT))
            await asyncio.sleep(0.01)
            task.cancel()
            # Cancelled in time, or it already had a share: then that share is its result.
            try:
                early = await task
            except asyncio.CancelledError:
                pass
            else:
                assert early is not None
                got.append(early)
            share = await miner.next_share(timeout=TIMEOUT)
            assert share is not None
            got.append(share)
        return got

    got = asyncio.run(main())
    miner.stop()
    hashed = wait_idle(miner)
    nonces = sorted(s.nonce for s in got + drain(miner))
    assert nonces == list(range(hashed))


def test_close_wakes_waiters_and_forbids_reuse() -> None:
    m = Miner(threads=1, mode="light")
    m.set_job(MiningJob(make_blob(12), SEED_A, 10**9, cookie=1))
    m.start()
    m.close()
    assert not m.running
    assert m.get_share(timeout=None) is None
    with pytest.raises(PowError):
        m.start()
    m.close()  # twice is fine


def test_auto_mode_stays_light_without_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(miner_module, "mem_available", lambda: 1024**3)
    with Miner(threads=1, mode="auto") as m:
        assert not m._want_fast()
    monkeypatch.setattr(miner_module, "mem_available", lambda: 64 * 1024**3)
    with Miner(threads=1, mode="auto") as m:
        assert m._want_fast()
    with Miner(threads=1, mode="light") as m:
        assert not m._want_fast()


def test_failed_dataset_build_falls_back_to_light(monkeypatch: pytest.MonkeyPatch) -> None:
    progress: list[tuple[int, int]] = []

    def fake_build(*args: object, **kwargs: object) -> object:
        report = args[2]
        assert callable(report)
        report(1, 2)
        raise PowError("no memory")

    monkeypatch.setattr(RandomXDataset, "build", fake_build)
    with Miner(threads=1, mode="fast", progress=lambda d, t: progress.append((d, t))) as m:
        m.set_job(MiningJob(make_blob(13), SEED_A, 2, cookie=1))
        m.start()
        assert m.get_share(timeout=TIMEOUT) is not None
        assert m.mode == "light"
    assert progress == [(1, 2)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Miner(threads=0)
    with Miner(threads=1, mode="light") as m:
        with pytest.raises(BlockFormatError):
            m.set_job(MiningJob(b"\x01", SEED_A, 1, cookie=1))
        with pytest.raises(ValueError):
            m.set_job(MiningJob(make_blob(1), SEED_A, 0, cookie=1))


@pytest.mark.parametrize(
    "credits,target,rate,cphf,diff,expected",
    [
        (0, 1000, 100.0, 100, 1000, 100.0),  # 10 credits/s
        (500, 1000, 50.0, 10, 10, 10.0),  # 50 credits/s
        (1000, 1000, 0.0, 10, 10, 0.0),  # reached: 0 even without a rate
        (2000, 1000, 10.0, 10, 10, 0.0),
        (0, 10, 0.0, 10, 10, None),  # no hash rate
        (0, 10, 5.0, 0, 10, None),  # nothing paid per share
        (1, 4, 3.0, 2, 7, 3 / (3.0 * 2 / 7)),
    ],
)
def test_eta_seconds(
    credits: int, target: int, rate: float, cphf: int, diff: int, expected: float | None
) -> None:
    assert eta_seconds(credits, target, rate, cphf, diff) == expected


def test_eta_seconds_rejects_zero_difficulty() -> None:
    with pytest.raises(ValueError):
        eta_seconds(0, 10, 1.0, 1, 0)


def test_light_miner_still_works(vm_a: RandomXVM) -> None:
    blob = make_blob(14)
    lm = LightMiner()
    try:
        nonce, nxt = lm.search(SEED_A, blob, 3, 0, 200)
        assert nonce is not None and nxt == nonce + 1
        assert check_hash(vm_a.hash(set_nonce(blob, nonce)), 3)
        assert lm.hashes == nonce + 1
        again, _ = lm.search(SEED_A, blob, 3, nxt, 200)
        assert again is not None and again > nonce
        none, after = lm.search(SEED_A, blob, 2**256 - 1, 0, 3)
        assert none is None and after == 3
        found, _ = asyncio.run(lm.find_share(SEED_A, blob, 3, 0, 200))
        assert found == nonce
    finally:
        lm.close()
