"""The ``rpcpay`` command line: help, clear errors, and a gateway that survives kill -9."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rpcpay.cli import build_parser
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, access_info, find_nonce, post, rpc, toy_backend
from tests.support.anvil import AnvilPool, anvil_pool
from tests.support.monerod import free_port

RPCPAY = [sys.executable, "-m", "rpcpay"]
__all__ = ["toy_backend"]  # the fixture, shared with the gateway tests
__all__ += ["anvil_pool"]  # and the chain tests' anvils (the stamper tests below)


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


# --- rpcpay stamper ---------------------------------------------------------------------


def test_stamper_help_explains_every_flag() -> None:
    done = run("stamper", "run", "--help")
    assert done.returncode == 0
    for flag in ("--chain-url", "--contract", "--fee-bps", "--reveal-margin", "--confirmations",
                 "--store-sync", "--key-file", "--data-dir", "--bind-port"):  # fmt: skip
        assert flag in done.stdout
    assert "(default: 100 = 1%)" in done.stdout and "(default: 25)" in done.stdout
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    pending = [subparsers.choices["stamper"]]
    while pending:
        current = pending.pop()
        for action in current._actions:
            # Every flag and argument has a help text of its own.
            assert action.help and len(action.help) > 10, (current.prog, action.dest)
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())


def test_stamper_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    contract = "0x" + "11" * 20
    dead = f"http://127.0.0.1:{free_port()}"
    key_file = tmp_path / "k.key"
    key_file.write_text("ab" * 32)
    key_file.chmod(0o644)
    cases = [
        (["run", "--contract", "0x1234"], "not a 0x-prefixed 20-byte address"),
        (["run", "--contract", contract, "--fee-bps", "10000"], "0-9999 basis points"),
        (["deposit", "--contract", contract, "--amount", "0"], "positive number of wei"),
        (["status", "--contract", contract, "--data-dir", str(tmp_path)], "no key file"),
        (["status", "--contract", contract, "--key-file", str(key_file)], "chmod 600"),
    ]
    key_file_ok = tmp_path / "ok.key"
    key_file_ok.write_text("ab" * 32)
    key_file_ok.chmod(0o600)
    cases.append(
        (
            ["status", "--contract", contract, "--key-file", str(key_file_ok), "--chain-url", dead],
            "cannot reach the chain at http://127.0.0.1:",
        )
    )
    for args, message in cases:
        done = run("stamper", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def _stamp_http(port: int, body: dict[str, object]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/stamp",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _stamper(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*RPCPAY, "stamper", "run", *args, "--bind-port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_port(port, proc)
    return proc


@pytest.mark.anvil
def test_stamper_never_stamps_an_overlap_after_kill_9(
    anvil_pool: AnvilPool, tmp_path: Path
) -> None:
    from rpcpay.chain import ContractParams, dev_keys
    from rpcpay.chain.jsonrpc import JsonRpcChain
    from rpcpay.lottery.cheque import Cheque
    from rpcpay.lottery.eip712 import recover_stamper, sign_cheque
    from rpcpay.lottery.stamper import StamperPolicy, StampRequest, fee_cheque
    from rpcpay.lottery.stamper_wire import request_to_json, result_from_json

    node = anvil_pool.fresh(1337)
    deployer, stamper, payer, alice, bob = dev_keys(5, b"stamper cli")
    for key in (deployer, stamper, payer):
        node.set_balance(key.address, 10**21)
    chain = JsonRpcChain(node.url, chain_id=1337)
    contract = chain.deploy(deployer, ContractParams(1_000, 100, 10, 1_000, 5_000))
    key_file = tmp_path / "stamper.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, stamper.secret.hex().encode())
    os.close(fd)
    flags = ["--chain-url", node.url, "--chain-id", "1337", "--contract", "0x" + contract.hex(),
             "--key-file", str(key_file), "--data-dir", str(tmp_path / "data")]  # fmt: skip
    done = run("stamper", "deposit", *flags, "--amount", str(10**18))
    assert done.returncode == 0, done.stderr
    assert "deposited: mined in block" in done.stdout
    terms, _ = chain.create_lottery(
        payer, stamper.address, 10**9, chain.block_number() + 500, b"\x01" * 32
    )
    chain.mine(2)
    policy = StamperPolicy(stamper.address, chain.domain)

    def request(start: int, value: int, recipient: bytes) -> dict[str, object]:
        c = Cheque(terms.id, recipient, start, value)
        fee = fee_cheque(policy, c)
        assert fee is not None
        req = StampRequest(
            c, sign_cheque(payer, chain.domain, c), sign_cheque(payer, chain.domain, fee)
        )
        return request_to_json(req)

    port = free_port()
    run_flags = [*flags, "--confirmations", "2", "--reveal-margin", "5"]
    proc = _stamper(run_flags, port)
    sent, answers, cursor = [], [], 0
    try:
        for value in (1000, 200, 31):
            body = request(cursor, value, alice.address)
            status, answer = _stamp_http(port, body)
            assert status == 200, answer
            sent.append(body)
            answers.append(answer)
            cursor = result_from_json(answer)[2]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = _stamper(run_flags, port)
    try:
        # Every stamp it told before the kill is remembered: retries get the same stamps...
        for body, answer in zip(sent, answers, strict=True):
            status, again = _stamp_http(port, body)
            assert status == 200 and again["repeat"] is True and again["stamp"] == answer["stamp"]
        # ... and no other cheque gets any of those tickets, the fee tickets included.
        for start in (0, 999, 1010, cursor - 1):
            status, refused = _stamp_http(port, request(start, 5, bob.address))
            assert status == 409 and refused["error"]["code"] == "overlap", refused
        status, answer = _stamp_http(port, request(cursor, 5, bob.address))
        assert status == 200
        _, sc, _ = result_from_json(answer)
        assert recover_stamper(chain.domain, sc.cheque, sc.stamp_sig) == stamper.address
        done = run("stamper", "status", *flags)
        assert done.returncode == 0 and "deposit  1000000000000000000 wei" in done.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0, stderr


def test_chain_serves_the_embedded_evm_and_the_wallet_reads_it(tmp_path: Path) -> None:
    """`rpcpay chain` on a free port: info file (0600) with the contract and keys, the chain
    client attaches to it, unknown methods get -32601, `wallet lottery-status` reads it."""
    import json as _json
    import signal as _signal
    import subprocess as _subprocess

    from rpcpay.chain.jsonrpc import JsonRpcChain
    from rpcpay.errors import ChainRpcError

    info_file = tmp_path / "chain.json"
    proc = _subprocess.Popen(
        [sys.executable, "-m", "rpcpay", "chain", "--port", "0", "--keys", "2",
         "--info-file", str(info_file)],
        stdout=_subprocess.PIPE, stderr=_subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("rpcpay chain: chain id 1337 at http://127.0.0.1:"), first
        assert info_file.stat().st_mode & 0o777 == 0o600
        info = _json.loads(info_file.read_text())
        assert len(info["keys"]) == 2 and info["url"] in first
        chain = JsonRpcChain(info["url"], chain_id=1337)
        chain.attach(bytes.fromhex(info["contract"][2:]))
        assert chain.params().max_reveal_delay == 216_000
        with pytest.raises(ChainRpcError, match="not served by rpcpay chain") as err:
            chain.rpc("eth_getLogs", [])
        assert err.value.code == -32601
        chain.close()
        key_file = tmp_path / "payer.key"
        key_file.write_text(info["keys"][1]["secret"][2:] + "\n")
        key_file.chmod(0o600)
        out = _subprocess.run(
            [sys.executable, "-m", "rpcpay", "wallet", "--wallet-file", str(tmp_path / "w.json"),
             "lottery-status", "--chain-url", info["url"], "--contract", info["contract"],
             "--payer-key-file", str(key_file), "--lottery-file", str(tmp_path / "l.json")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert f"payer    {info['keys'][1]['address']}" in out.stdout
        assert "no lotteries yet" in out.stdout
        # Bad input is a clear error, not a traceback.
        bad = _subprocess.run(
            [sys.executable, "-m", "rpcpay", "wallet", "lottery-status", "--chain-url",
             "http://127.0.0.1:1", "--contract", info["contract"], "--payer-key-file",
             str(key_file)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert "cannot reach the chain" in bad.stderr
    finally:
        proc.send_signal(_signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
