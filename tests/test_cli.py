"""The ``rpcpay`` command line: help, clear errors, and a gateway that survives kill -9."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rpcpay.cli import build_parser
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, access_info, find_nonce, post, rpc, toy_backend
from tests.support.monerod import free_port

RPCPAY = [sys.executable, "-m", "rpcpay"]
__all__ = ["toy_backend"]  # the fixture, shared with the gateway tests


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RPCPAY, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["serve", "payments", "demo", "wallet"])
def test_help_explains_every_flag(command: str) -> None:
    done = run(command, "--help")
    assert done.returncode == 0
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    pending = [subparsers.choices[command]]
    while pending:
        current = pending.pop()
        for action in current._actions:
            # Every flag and argument has a help text of its own.
            assert action.help and len(action.help) > 10, (current.prog, action.dest)
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    if command == "serve":
        for flag in (
            "--rpc-payment-address",
            "--rpc-payment-difficulty",
            "--rpc-payment-credits",
            "--rpc-payment-allow-free-loopback",
            "--rpc-bind-ip",
            "--rpc-bind-port",
            "--data-dir",
            "--upstream",
            "--price-file",
            "--admin-token",
        ):
            assert flag in done.stdout
        assert "(default: 1000)" in done.stdout and "(default: 100)" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rpc-payment-difficulty", "0"], "must be at least 1"),
        (["--rpc-bind-port", "70000"], "0-65535"),
        (
            ["--rpc-payment-address", "not-an-address", "--upstream-kind", "monero"],
            "not a Monero address",
        ),
        (["--admin-bind-ip", "0.0.0.0"], "--admin-token is required"),
        (["--price-file", "/nonexistent/prices.json", "--upstream-kind", "jsonrpc"], "price file"),
    ],
)
def test_bad_flags_get_clear_errors(args: list[str], message: str, tmp_path: Path) -> None:
    done = run(
        "serve",
        "--data-dir",
        str(tmp_path),
        "--upstream",
        "http://127.0.0.1:9",
        "--rpc-bind-port",
        "0",
        "--admin-bind-port",
        "0",
        *args,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_payments_without_a_gateway_is_a_clear_error() -> None:
    done = run("payments", "--admin", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "cannot reach" in done.stderr
    assert "Traceback" not in done.stderr


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gateway exited early"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("gateway did not start")


def _serve(backend: ToyBackend, data_dir: Path, port: int, admin: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            *RPCPAY,
            "serve",
            "--upstream",
            backend.url,
            "--upstream-kind",
            "jsonrpc",
            "--rpc-bind-port",
            str(port),
            "--admin-bind-port",
            str(admin),
            "--data-dir",
            str(data_dir),
            "--rpc-payment-difficulty",
            "2",
            "--rpc-payment-credits",
            "50",
            "--pow-mode",
            "light",
            "--verify-threads",
            "1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_port(port, proc)
    return proc


async def test_no_told_credit_is_lost_to_kill_9(toy_backend: ToyBackend, tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    key = ClientKey()
    proc = await asyncio.to_thread(_serve, toy_backend, tmp_path, port, admin)
    try:
        told, start = 0, 0
        for _ in range(3):
            info = await access_info(port, key)
            nonce = find_nonce(info, start)
            start = nonce + 1
            _, answer = await post(
                port,
                "/json_rpc",
                rpc(
                    "rpc_access_submit_nonce",
                    {"client": key.client_id(), "nonce": nonce, "cookie": info["cookie"]},
                ),
            )
            told = answer["result"]["credits"]
        assert told == 150
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = await asyncio.to_thread(_serve, toy_backend, tmp_path, port, admin)
    try:
        assert (await access_info(port, key))["credits"] == told
        done = await asyncio.to_thread(run, "payments", "--admin", f"http://127.0.0.1:{admin}")
        assert done.returncode == 0
        assert key.public.hex() in done.stdout
        assert "1 clients with a total of 150 credits" in done.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0, stderr
