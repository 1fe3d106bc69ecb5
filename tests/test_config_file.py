"""``rpcpay serve --config FILE``: keys are flags, the command line wins, bad files are one
clear line, secrets stay off argv, and SIGHUP reloads prices (a bad reload keeps the old)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rpcpay.cli import parse_args
from rpcpay.config_file import read_secret_file
from rpcpay.errors import ConfigError
from rpcpay.paths import default_data_dir
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, earn_share, post, rpc, toy_backend
from tests.support.monerod import free_port
from tests.test_startup_errors import assert_one_clear_line, serve

__all__ = ["toy_backend"]
RPCPAY = [sys.executable, "-m", "rpcpay"]


def test_keys_are_flags_and_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "rpcpay.toml"
    config.write_text(
        'rpc-bind-port = 18999\nupstream = "http://127.0.0.1:1234"\n'
        "rpc-payment-allow-free-loopback = true\n"
        'trusted-proxy = ["10.0.0.0/8", "127.0.0.1"]\nbad-shares-burst = 5\n'
    )
    args = parse_args(["serve", "--config", str(config)])
    assert args.rpc_bind_port == 18999 and args.upstream == "http://127.0.0.1:1234"
    assert args.rpc_payment_allow_free_loopback is True
    assert args.trusted_proxy == ["10.0.0.0/8", "127.0.0.1"] and args.bad_shares_burst == 5
    args = parse_args(
        ["serve", "--config", str(config), "--rpc-bind-port", "1", "--trusted-proxy", "::1"]
    )
    assert args.rpc_bind_port == 1 and args.trusted_proxy == ["::1"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("rpc-bind-port = [", "not valid TOML"),
        ("rpc_bind_port = 1", "unknown key 'rpc_bind_port'"),
        ("rpc-bind-port = 70000", "rpc-bind-port = '70000': a port is 0-65535"),
        ('upstream-kind = "mongo"', "upstream-kind must be one of auto, monero, jsonrpc"),
        ('rpc-payment-allow-free-loopback = "yes"', "must be true or false"),
        ("rpc-bind-port = [1, 2]", "takes one value"),
        ("[serve]\nx = 1", "unknown key 'serve'"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str, fragment: str) -> None:
    config = tmp_path / "rpcpay.toml"
    config.write_text(content)
    done = serve(tmp_path, "--config", str(config))
    assert_one_clear_line(done, f"config {config}", fragment)


def test_missing_config_file(tmp_path: Path) -> None:
    done = serve(tmp_path, "--config", str(tmp_path / "nope.toml"))
    assert_one_clear_line(done, "cannot read it")


def test_admin_token_from_file_or_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert read_secret_file("--admin-token-file", token) == "s3cret"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret_file("--admin-token-file", tmp_path / "empty")
    # Off loopback the admin listener needs a token: the environment's is enough.
    base = ["--admin-bind-ip", "0.0.0.0", "--upstream", "ftp://refused-later"]
    done = serve(tmp_path, *base)
    assert_one_clear_line(done, "--admin-token is required")
    env = {**os.environ, "RPCPAY_ADMIN_TOKEN": "from-env"}
    done = subprocess.run(
        [*RPCPAY, "serve", "--data-dir", str(tmp_path / "d"), *base],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert_one_clear_line(done, "--upstream 'ftp://refused-later'")


def test_default_data_dir_is_absolute_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/xdg")
    assert default_data_dir("gateway") == Path("/srv/xdg/rpcpay/gateway")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir("gateway") == Path.home() / ".local/share/rpcpay/gateway"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/rpcpay")
    assert default_data_dir("gateway") == Path("/var/lib/rpcpay")
    assert parse_args(["serve"]).data_dir.is_absolute()


def _wait_for(predicate: object, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gateway exited"
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


async def test_sighup_reloads_prices_and_keeps_old_ones_on_error(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    port, admin = free_port(), free_port()
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 1, "methods": {"eth_call": 2}}))
    config = tmp_path / "rpcpay.toml"
    config.write_text(
        f'upstream = "{toy_backend.url}"\nupstream-kind = "jsonrpc"\nrpc-bind-port = {port}\n'
        f'admin-bind-port = {admin}\ndata-dir = "{tmp_path / "data"}"\n'
        f'price-file = "{prices}"\nrpc-payment-difficulty = 2\nrpc-payment-credits = 50\n'
        'pow-mode = "light"\nverify-threads = 1\n'
    )
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*RPCPAY, "serve", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        await asyncio.to_thread(_wait_for, lambda: "gateway listening" in log.read_text(), proc)
        key = ClientKey()
        await earn_share(port, key)

        async def cost() -> int:
            _, before = await post(port, "/", rpc("rpc_access_info", {"client": key.client_id()}))
            _, answer = await post(port, "/", rpc("eth_call", [], client=key.client_id()))
            return int(before["result"]["credits"]) - int(answer["credits"])

        assert await cost() == 2
        prices.write_text(json.dumps({"default": 1, "methods": {"eth_call": 5}}))
        proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(_wait_for, lambda: '"msg": "reloaded"' in log.read_text(), proc)
        assert await cost() == 5
        prices.write_text("{broken")
        proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(
            _wait_for, lambda: "reload refused; keeping the old settings" in log.read_text(), proc
        )
        assert await cost() == 5
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
