"""What an operator and a user see: ``rpcpay payments`` (--json, the wrong port), the hash
rate right after shares, and the wallet's words for free calls and thrown-away credits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rpcpay.gateway.server import start_gateway
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, earn_share, gateway_config, toy_backend
from tests.wallet.test_commands import base, wallet

__all__ = ["toy_backend"]
RPCPAY = [sys.executable, "-m", "rpcpay"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RPCPAY, *args], capture_output=True, text=True, timeout=60)


async def test_payments_table_json_and_wrong_port(toy_backend: ToyBackend, tmp_path: Path) -> None:
    running = await start_gateway(gateway_config(toy_backend.url, tmp_path / "gw"))
    try:
        key = ClientKey()
        await earn_share(running.public_port, key)
        admin = f"http://127.0.0.1:{running.admin_port}"
        table = await asyncio.to_thread(run, "payments", "--admin", admin)
        assert table.returncode == 0, table.stderr
        # One good share at difficulty 2 just now: not "0 H/s".
        assert "Aggregated client hash rate: 0 H/s" not in table.stdout
        assert "Aggregated client hash rate:" in table.stdout
        as_json = await asyncio.to_thread(run, "payments", "--admin", admin, "--json")
        data = json.loads(as_json.stdout)
        assert data["hashrate"] >= 1
        assert data["entries"][0]["client"] == key.public.hex()
        assert data["entries"][0]["balance"] == 50
        public = f"http://127.0.0.1:{running.public_port}"
        wrong = await asyncio.to_thread(run, "payments", "--admin", public)
        assert wrong.returncode == 1
        assert "public port" in wrong.stderr and "--admin" in wrong.stderr
        assert "-32601" not in wrong.stderr and len(wrong.stderr.splitlines()) == 1
    finally:
        await running.close()


async def test_free_call_is_not_called_paid_and_leftover_credits_are_named(
    toy_backend: ToyBackend, tmp_path: Path, capsys: Any
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 1, "methods": {"web3_clientVersion": 0}}))
    running = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", price_file=prices)
    )
    try:
        args = base(running, tmp_path / "wallet.json")
        assert await wallet(*args, "call", "web3_clientVersion") == 0
        err = capsys.readouterr().err
        assert "free call: nothing was charged" in err and "paid;" not in err
        assert await wallet(*args, "call", "eth_call", "--threads", "1") == 0
        err = capsys.readouterr().err
        assert "paid; credits left: 49" in err
        assert "49 credits stay with this run's throw-away client id" in err
        assert "--persistent-rpc-client-id" in err
        # With a kept id nothing is lost, and nothing is said.
        assert await wallet(*args, "call", "eth_call", "--persistent-rpc-client-id") == 0
        assert "throw-away" not in capsys.readouterr().err
    finally:
        await running.close()


def test_help_names_no_issue_numbers() -> None:
    done = run("--help")
    assert done.returncode == 0 and "(issue" not in done.stdout
