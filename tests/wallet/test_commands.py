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
from pathlib import Path
from typing import Any

import pytest

from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.commands import add_wallet_parser, keep_async, run_wallet
from rpcpay.wallet.keeper import read_status
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.settings import WalletSettings, load_wallet, save_wallet
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


async def test_call_with_array_params_and_a_non_object_result(
    paying_gateway: RunningGateway, toy_backend: ToyBackend, tmp_path: Path, capsys: Any
) -> None:
    toy_backend.results["eth_blockNumber"] = "0x2a"
    path = tmp_path / "w" / "wallet.json"
    code = await wallet(*base(paying_gateway, path), "call", "eth_blockNumber", "--threads", "1")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == "0x2a"
    code = await wallet(
        *base(paying_gateway, path), "call", "eth_getLogs", '[{"fromBlock": "0x0"}]'
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == {"echo": [{"fromBlock": "0x0"}], "method": "eth_getLogs"}
    # Each paid call reached the backend once, with its params as given.
    assert toy_backend.requests[-1] == {
        "jsonrpc": "2.0", "id": "0", "method": "eth_getLogs", "params": [{"fromBlock": "0x0"}]
    }  # fmt: skip
    assert [r["method"] for r in toy_backend.requests] == ["eth_blockNumber", "eth_getLogs"]


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
    [("{oops", "PARAMS_JSON is not valid JSON"), ("5", "must be a JSON array or object")],
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
