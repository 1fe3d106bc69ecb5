"""The balance keeper's logic, driven step by step with a fake miner and client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from rpcpay.wallet.client import AccessInfo, PayingClient, ShareRefused
from rpcpay.wallet.keeper import BalanceKeeper, read_status, status_path_for
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.settings import WalletSettings, load_wallet, save_wallet, update_wallet

# -- the keeper's logic, driven step by step with fakes -----------------------------------


@dataclass
class FakeShare:
    nonce: int
    cookie: int


@dataclass
class FakeMiner:
    """Finds a share on every next_share while running, after counting ``per_share`` hashes."""

    per_share: int = 10
    hashes: int = 0
    running: bool = False
    jobs: list[Any] = field(default_factory=list)
    nonce: int = 0
    closed: bool = False

    def hashrate(self) -> float:
        return 100.0 if self.running else 0.0

    def set_job(self, job: Any) -> None:
        self.jobs.append(job)

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        self.closed = True

    async def next_share(self, timeout: float | None) -> FakeShare | None:
        await asyncio.sleep(0)
        if not self.running or not self.jobs:
            return None
        self.hashes += self.per_share
        self.nonce += 1
        return FakeShare(self.nonce, self.jobs[-1].cookie)


class FakeClient:
    """Just enough of PayingClient: a node paying ``cphf`` per share at ``diff``."""

    def __init__(self, cphf: int = 50, diff: int = 2, refuse: set[int] | None = None) -> None:
        self.key = ClientKey()
        self.url = "http://fake"
        self.credits = 0
        self.top_hash = "aa" * 32
        self.cphf, self.diff = cphf, diff
        self.cookie = 1
        self.info_calls = 0
        self.refuse = refuse or set()
        self.submitted: list[tuple[int, int]] = []

    async def access_info(self) -> AccessInfo:
        self.info_calls += 1
        return AccessInfo(
            hashing_blob=bytes(76),
            seed_hash=bytes(32),
            next_seed_hash=None,
            seed_height=0,
            cookie=self.cookie,
            difficulty=self.diff,
            credits_per_hash_found=self.cphf,
            height=10,
            credits=self.credits,
            top_hash=self.top_hash,
        )

    async def submit_nonce(self, nonce: int, cookie: int) -> int:
        self.submitted.append((nonce, cookie))
        if nonce in self.refuse:
            raise ShareRefused(-18, "Stale payment")
        self.credits += self.cphf
        return self.credits


def keeper_for(
    client: FakeClient, miner: FakeMiner, settings: WalletSettings, **kw: Any
) -> BalanceKeeper:
    import io

    return BalanceKeeper(
        cast(PayingClient, client),
        miner,
        settings,
        out=kw.pop("out", io.StringIO()),
        job_factory=lambda info: info,
        **kw,
    )


async def test_keeper_mines_to_target_and_stops() -> None:
    client, miner = FakeClient(), FakeMiner()
    keeper = keeper_for(client, miner, WalletSettings(credits_target=200))
    for _ in range(10):
        await keeper.step(0.01)
    assert client.credits == 200
    assert not miner.running and not keeper.mining
    assert "at target" in keeper.reason
    # Spending below the target makes it mine again after the next refresh.
    client.credits = 120
    client.top_hash = "bb" * 32  # a new block: refresh now
    for _ in range(5):
        await keeper.step(0.01)
    assert client.credits == 220 - 20 or client.credits >= 200
    assert keeper.spent == 80


async def test_keeper_respects_threshold_and_explains() -> None:
    import io

    out = io.StringIO()
    client, miner = FakeClient(cphf=1, diff=1000), FakeMiner()
    keeper = keeper_for(client, miner, WalletSettings(auto_mine_threshold=0.5), out=out)
    for _ in range(3):
        await keeper.step(0.01)
    assert not miner.running and client.submitted == []
    text = out.getvalue()
    assert "diff 1000, 0.001 credits/hash - this is low" in text
    assert "start_mining_for_rpc" in text and "--auto-mine-threshold 0" in text
    assert text.count("below the auto-mine threshold") == 1  # said once, not every step
    # start_mining_for_rpc overrides the threshold.
    keeper.settings = WalletSettings(auto_mine_threshold=0.5, mining_requested=True)
    await keeper.step(0.01)
    assert miner.running and client.submitted


async def test_keeper_survives_refused_shares_and_takes_a_new_job() -> None:
    client, miner = FakeClient(refuse={2, 3}), FakeMiner()
    keeper = keeper_for(client, miner, WalletSettings(credits_target=150))
    for _ in range(8):
        client.cookie += 0  # same job unless refreshed
        await keeper.step(0.01)
        if len(client.submitted) == 2:
            client.cookie = 2  # the node moved on: the refresh after the refusal sees it
    assert keeper.shares_refused == 2
    assert client.credits == 150 and not miner.running
    assert [job.cookie for job in miner.jobs] == [1, 2]


async def test_keeper_refresh_policy() -> None:
    now = [0.0]
    client, miner = FakeClient(), FakeMiner()
    keeper = keeper_for(client, miner, WalletSettings(credits_target=10**9), clock=lambda: now[0])
    await keeper.step(0)
    assert client.info_calls == 1 and miner.running
    now[0] = 9.0
    await keeper.step(0)
    assert client.info_calls == 1  # mining: every 10 s
    now[0] = 10.5
    await keeper.step(0)
    assert client.info_calls == 2
    assert len(miner.jobs) == 1  # the same job again does not restart the nonces
    client.top_hash = "cc" * 32
    await keeper.step(0)
    assert client.info_calls == 3  # a new top hash: at once
    # Idle: every 5 minutes.
    keeper.settings = WalletSettings(auto_mine=False)
    now[0] = 20.0
    await keeper.step(0)
    assert not miner.running
    calls = client.info_calls
    now[0] = 10.5 + 299  # the last refresh was at 10.5
    await keeper.step(0)
    assert client.info_calls == calls
    now[0] = 10.5 + 301
    await keeper.step(0)
    assert client.info_calls == calls + 1


async def test_keeper_obeys_the_wallet_file(tmp_path: Path) -> None:
    path = tmp_path / "wallet.json"
    save_wallet(path, WalletSettings(credits_target=10**9))
    now = [0.0]
    client, miner = FakeClient(), FakeMiner()
    keeper = keeper_for(client, miner, load_wallet(path), wallet_path=path, clock=lambda: now[0])
    await keeper.step(0)
    assert miner.running
    assert read_status(path) is not None and status_path_for(path).stat().st_mode & 0o077 == 0
    update_wallet(path, mining_stopped=True)
    now[0] = 1.5
    await keeper.step(0)
    assert not miner.running
    hashes = miner.hashes
    for i in range(3):
        now[0] = 2.0 + i
        await keeper.step(0)
    assert miner.hashes == hashes
    update_wallet(path, mining_stopped=False, mining_requested=True)
    now[0] = 6.0
    await keeper.step(0)
    assert miner.running and miner.hashes > hashes
    keeper.finish()
    assert not miner.running and not status_path_for(path).exists()


async def test_mine_until_for_one_call() -> None:
    client, miner = FakeClient(), FakeMiner()
    keeper = keeper_for(client, miner, WalletSettings(credits_target=10))
    # The target is already met after one share, but a call needs more: mine_until wins.
    assert await keeper.mine_until(120, timeout=5)
    assert client.credits == 150 and not miner.running
    # Stopped by stop_mining_for_rpc: refuses to mine.
    keeper.settings = WalletSettings(mining_stopped=True)
    assert not await keeper.mine_until(1000, timeout=5)
    assert client.credits == 150


async def test_progress_once_a_second_on_a_tty_else_every_ten() -> None:
    import io

    now = [0.0]
    for tty, expected in ((True, 10), (False, 1)):
        now[0] = 0.0
        out = io.StringIO()
        client, miner = FakeClient(), FakeMiner()
        keeper = keeper_for(
            client,
            miner,
            WalletSettings(credits_target=10**9),
            clock=lambda: now[0],
            tty=tty,
            out=out,
        )
        for i in range(1, 101):
            now[0] = i * 0.1
            await keeper.step(0)
        lines = out.getvalue().count("H/s, credits ")
        assert abs(lines - expected) <= 1, (tty, out.getvalue())
        assert ("\r" in out.getvalue()) is tty


async def test_eta_shown_is_the_seed_formula() -> None:
    # (target - credits) / (H/s x credits per share / difficulty), with the keeper's figures.
    client, miner = FakeClient(cphf=250, diff=1000), FakeMiner()
    keeper = keeper_for(client, miner, WalletSettings(credits_target=50_000))
    await keeper.step(0.01)
    assert keeper.mining
    status = keeper.status()
    expected = (50_000 - client.credits) / (miner.hashrate() * 250 / 1000)
    assert status["eta_seconds"] == pytest.approx(expected)
    assert status["credits_per_hash"] == 0.25
