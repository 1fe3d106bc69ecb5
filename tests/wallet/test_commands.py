"""``rpcpay wallet``: commands against a real gateway (in-process, loopback), the balance
keeper with the real RandomX miner (light mode, difficulty 2), and the keeper's logic with fakes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.client import AccessInfo, PayingClient, ShareRefused
from rpcpay.wallet.commands import (
    BalanceKeeper,
    add_wallet_parser,
    keep_async,
    read_status,
    run_wallet,
    status_path_for,
)
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.settings import WalletSettings, load_wallet, save_wallet, update_wallet
from tests.gateway.conftest import ToyBackend, gateway_config, toy_backend
from tests.support.monerod import MonerodProcess

__all__ = ["toy_backend"]  # the fixture, shared with the gateway tests


def build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpcpay")
    sub = parser.add_subparsers(dest="command", required=True)
    add_wallet_parser(sub)
    return parser


def parse(*argv: str) -> argparse.Namespace:
    return build().parse_args(["wallet", *argv])


@pytest.fixture
async def paying_gateway(toy_backend: ToyBackend, tmp_path: Path) -> Any:
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw"))
    yield running
    await running.close()


def base(gw: RunningGateway | None, wallet: Path, port: int | None = None) -> list[str]:
    url = f"http://127.0.0.1:{gw.public_port if gw else port}"
    return ["--daemon", url, "--wallet-file", str(wallet), "--mining-mode", "light"]


async def wallet(*argv: str) -> int:
    """run_wallet on a worker thread (it runs its own event loop), as the CLI would."""
    return await asyncio.to_thread(run_wallet, parse(*argv))


# -- the command line --------------------------------------------------------------------


def test_every_flag_has_help() -> None:
    parser = build()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    wallet_parser = sub.choices["wallet"]
    parsers = [wallet_parser]
    for action in wallet_parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    for p in parsers:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and len(action.help) > 10, (p.prog, action.option_strings)
            if action.option_strings and action.option_strings[0] not in ("-h", "--help"):
                # Flags say their default (or what happens without them).
                assert "default" in action.help, (p.prog, action.option_strings)


async def test_call_mines_then_pays(
    paying_gateway: RunningGateway, toy_backend: ToyBackend, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "w" / "wallet.json"
    code = await wallet(
        *base(paying_gateway, path), "call", "toy_method", '{"x": 1}', "--threads", "1"
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["echo"] == {"x": 1} and result["method"] == "toy_method"
    assert "payment required" in err
    # Exactly one call reached the backend: the paid one.
    assert [r["method"] for r in toy_backend.requests] == ["toy_method"]
    assert "Traceback" not in err


async def test_keeper_with_real_miner_stops_on_stop_mining_and_resumes(
    paying_gateway: RunningGateway, tmp_path: Path
) -> None:
    path = tmp_path / "wallet.json"
    keep = asyncio.create_task(
        keep_async(parse(*base(paying_gateway, path), "keep", "--threads", "1"))
    )

    async def status_where(pred: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = read_status(path)
            if status is not None and pred(status):
                return status
            await asyncio.sleep(0.2)
        raise AssertionError(f"status never matched: {read_status(path)}")

    try:
        mining = await status_where(lambda s: s["mining"] and s["shares_ok"] >= 2)
        assert mining["credits"] >= 100  # two shares at 50 credits
        assert (await wallet("--wallet-file", str(path), "stop_mining_for_rpc")) == 0
        assert load_wallet(path).mining_stopped
        stopped = await status_where(lambda s: not s["mining"], timeout=5.0)
        await asyncio.sleep(2.5)
        later = await status_where(lambda s: True)
        # The miner really stopped: no more hashes (one in flight at most).
        assert later["hashes"] - stopped["hashes"] <= 1
        assert not later["mining"]
        assert (await wallet("--wallet-file", str(path), "start_mining_for_rpc", "1")) == 0
        resumed = await status_where(lambda s: s["mining"] and s["hashes"] > later["hashes"] + 3)
        assert resumed["pid"] == later["pid"]
    finally:
        await wallet("--wallet-file", str(path), "stop_mining_for_rpc")
        keep.cancel()
    with pytest.raises(asyncio.CancelledError):
        await keep
    assert read_status(path) is None  # the keeper withdrew its status file


async def test_rpc_payments_shows_the_fields(
    paying_gateway: RunningGateway, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "wallet.json"
    code = await wallet(*base(paying_gateway, path), "rpc_payments")
    out, err = capsys.readouterr()
    assert code == 0, err
    for words in (
        "client id: ",
        "new for this run",
        "credits: 0",
        "credits target: 50000 (0 means 50000)",
        "credits spent: ",
        "credits per hash: 25 (50 per share at diff 2)",
        "hash rate: 0 H/s",
        "ETA to target: unknown",
        "auto-mining: on",
    ):
        assert words in out, (words, out)
    assert "secret" not in out.lower() and "secret" not in err.lower()


async def test_rpc_payments_show_secret_warns(
    paying_gateway: RunningGateway, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "wallet.json"
    key = ClientKey()
    code = await wallet(
        *base(paying_gateway, path),
        "--rpc-client-secret-key",
        key.secret.hex(),
        "rpc_payments",
        "--show-secret",
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert f"client id: {key.public.hex()} (from --rpc-client-secret-key)" in out
    assert f"client secret key: {key.secret.hex()}" in out
    assert "anyone who knows this key can spend its credits" in err


async def test_persistent_id_keeps_credits_across_runs(
    paying_gateway: RunningGateway, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "wallet.json"
    args = base(paying_gateway, path)
    assert await wallet(*args, "call", "m1", "--persistent-rpc-client-id", "--threads", "1") == 0
    key = load_wallet(path).client_secret_key
    assert key is not None
    capsys.readouterr()
    assert await wallet(*args, "rpc_payments") == 0
    out, _ = capsys.readouterr()
    assert f"client id: {ClientKey(key).public.hex()} (persistent)" in out
    assert "credits: 0\n" not in out  # a share paid 50, the call cost 1


# -- bad input: clear one-line errors, exit 2, no traceback -------------------------------


@pytest.mark.parametrize(
    ("params", "words"),
    [("{oops", "PARAMS_JSON is not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
async def test_bad_params(tmp_path: Path, capsys: Any, params: str, words: str) -> None:
    code = await wallet(*base(None, tmp_path / "w.json", port=9), "call", "m", params)
    _, err = capsys.readouterr()
    assert code == 2
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


async def test_corrupt_or_open_wallet_file(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "w.json"
    path.write_text("{corrupt")
    path.chmod(0o600)
    assert await wallet("--wallet-file", str(path), "stop_mining_for_rpc") == 2
    assert "not valid JSON" in capsys.readouterr().err
    save_wallet(path, WalletSettings())
    path.chmod(0o644)
    assert await wallet("--wallet-file", str(path), "start_mining_for_rpc") == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {path}" in err and "Traceback" not in err


async def test_daemon_unreachable(tmp_path: Path, capsys: Any, unused_tcp_port: int) -> None:
    code = await wallet(*base(None, tmp_path / "w.json", port=unused_tcp_port), "rpc_payments")
    _, err = capsys.readouterr()
    assert code == 1
    assert "cannot reach the daemon at http://127.0.0.1:" in err and "Traceback" not in err


async def test_upstream_down(
    paying_gateway: RunningGateway, toy_backend: ToyBackend, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "wallet.json"
    toy_backend.failing = True
    code = await wallet(*base(paying_gateway, path), "call", "m", "--threads", "1")
    _, err = capsys.readouterr()
    assert code == 1
    assert "upstream is down" in err and "nothing was charged" in err
    assert "Traceback" not in err


def test_bad_flags_in_a_real_process(tmp_path: Path) -> None:
    """argparse errors and our own, in a real interpreter: exit 2, no traceback."""
    script = (
        "import argparse, sys\n"
        "from rpcpay.wallet.commands import add_wallet_parser, run_wallet\n"
        "p = argparse.ArgumentParser(prog='rpcpay')\n"
        "add_wallet_parser(p.add_subparsers(dest='command', required=True))\n"
        "sys.exit(run_wallet(p.parse_args(sys.argv[1:])))\n"
    )
    wallet_file = str(tmp_path / "w.json")
    cases = [
        (["--rpc-client-secret-key", "zz", "rpc_payments"], "64 hex characters"),
        (["start_mining_for_rpc", "-3"], "one per CPU"),
        (["keep", "--auto-mine-threshold", "cheap"], "not a number"),
        (["keep", "--duration", "0"], "positive number of seconds"),
        (["call", "m", "nope"], "PARAMS_JSON is not valid JSON"),
        (["frobnicate"], "invalid choice"),
    ]
    for argv, words in cases:
        done = subprocess.run(
            [sys.executable, "-c", script, "wallet", "--wallet-file", wallet_file, *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert words in done.stderr, (argv, done.stderr)
        assert "Traceback" not in done.stderr


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


async def test_keep_settings_flags_update_the_wallet_file(
    paying_gateway: RunningGateway, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "wallet.json"
    argv = [
        *base(paying_gateway, path),
        "keep",
        "--duration",
        "0.5",
        "--threads",
        "1",
        "--credits-target",
        "100",
        "--auto-mine-threshold",
        "30",
        "--persistent-rpc-client-id",
    ]
    assert await keep_async(parse(*argv)) == 0
    s = load_wallet(path)
    assert (s.credits_target, s.auto_mine_threshold, s.mining_threads) == (100, 30.0, 1)
    assert s.persistent_client_id and s.client_secret_key is not None
    err = capsys.readouterr().err
    # 25 credits per hash is below 30: the keeper says what the node offers and how to mine.
    assert "diff 2, 25 credits/hash" in err and "start_mining_for_rpc" in err
    assert s.client_secret_key.hex() not in err
    assert await keep_async(parse(*argv[:-1], "--no-persistent-rpc-client-id")) == 0
    assert load_wallet(path).client_secret_key is None


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


@pytest.mark.monerod
async def test_call_mines_then_pays_monerod(
    paying_monerod: MonerodProcess, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "w" / "wallet.json"
    code = await wallet(
        *base(None, path, paying_monerod.rpc_port),
        "call",
        "get_block_header_by_height",
        '{"height": 1}',
        "--threads",
        "1",
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["block_header"]["height"] == 1
    assert "Traceback" not in err


async def test_secret_key_flag_warns_without_showing_the_key(
    paying_gateway: RunningGateway, tmp_path: Path, capsys: Any
) -> None:
    key = ClientKey()
    code = await wallet(
        *base(paying_gateway, tmp_path / "wallet.json"),
        "--rpc-client-secret-key",
        key.secret.hex(),
        "rpc_payments",
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "warning: using a client secret key from the command line" in err
    assert key.secret.hex() not in out + err
