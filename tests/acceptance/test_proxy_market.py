"""Acceptance: unmodified clients (web3.py's stock ``HTTPProvider`` and curl) through
``rpcpay wallet proxy`` to two ``rpcpay serve`` gateways in front of anvil, at different
prices (50 and 10 credits a share at the same difficulty). The proxy pays the cheaper one;
when that one is stopped, the calls move to the other. Every part is a real process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from tests.support.anvil import AnvilPool, AnvilProcess, anvil_pool
from tests.support.monerod import free_port
from tests.support.processes import stop_process

__all__ = ["anvil_pool"]
pytestmark = pytest.mark.anvil

RPCPAY = [sys.executable, "-m", "rpcpay"]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def serve(node: AnvilProcess, data: Path, credits: int) -> tuple[subprocess.Popen[bytes], int, int]:
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [*RPCPAY, "serve", "--upstream", node.url, "--upstream-kind", "jsonrpc",
         "--rpc-bind-port", str(port), "--admin-bind-port", str(admin), "--data-dir", str(data),
         "--rpc-payment-difficulty", "2", "--rpc-payment-credits", str(credits),
         "--pow-mode", "light", "--verify-threads", "1", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_port(port, proc)
    return proc, port, admin


def tracking(admin: int) -> dict[str, int]:
    """Calls per method a gateway has been paid for (its admin listener)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "rpc_access_tracking"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin}/json_rpc", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        rows = json.loads(response.read())["result"]["data"]
    return {row["rpc"]: row["count"] for row in rows if row["rpc"].startswith("eth_")}


def curl(port: int, body: Any) -> Any:
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-H", "Content-Type: application/json",
         "--data", json.dumps(body), f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


@pytest.fixture
def market(anvil_pool: AnvilPool, tmp_path: Path) -> Iterator[dict[str, Any]]:
    node = anvil_pool.fresh(1337)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cheap, cheap_port, cheap_admin = serve(node, tmp_path / "cheap", 50)
        dear, dear_port, dear_admin = serve(node, tmp_path / "dear", 10)
        procs += [cheap, dear]
        proxy_port = free_port()
        proxy = subprocess.Popen(
            [*RPCPAY, "wallet", "--wallet-file", str(tmp_path / "wallet.json"), "proxy",
             "--listen", f"127.0.0.1:{proxy_port}",
             "--server", f"http://127.0.0.1:{dear_port}",
             "--server", f"http://127.0.0.1:{cheap_port}", "--probe-interval", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        procs.append(proxy)
        wait_port(proxy_port, proxy)
        yield {"node": node, "cheap": cheap, "proxy": proxy, "proxy_port": proxy_port,
               "cheap_admin": cheap_admin, "dear_admin": dear_admin}  # fmt: skip
    finally:
        for proc in reversed(procs):
            stop_process(proc, 10)
        for proc in procs:
            stderr = proc.communicate()[1].decode()
            assert "Traceback" not in stderr, stderr[-3000:]


def test_stock_clients_use_the_cheaper_gateway_and_move_when_it_stops(
    market: dict[str, Any],
) -> None:
    w3 = Web3(HTTPProvider(f"http://127.0.0.1:{market['proxy_port']}"))
    assert w3.eth.chain_id == 1337
    start = w3.eth.block_number
    market["node"].rpc("evm_mine")
    assert w3.eth.block_number == start + 1
    funded = Web3.to_checksum_address("0x" + "11" * 20)
    assert w3.eth.get_balance(funded) == 0
    answer = curl(market["proxy_port"], {"jsonrpc": "2.0", "id": "c", "method": "eth_chainId"})
    assert answer == {"jsonrpc": "2.0", "id": "c", "result": "0x539"}
    # Everything was paid at the cheaper gateway; the dearer one was only probed.
    assert tracking(market["cheap_admin"]) == {
        "eth_chainId": 2, "eth_blockNumber": 2, "eth_getBalance": 1
    }  # fmt: skip
    assert tracking(market["dear_admin"]) == {}
    # The cheaper gateway stops: the same clients carry on through the dearer one.
    stop_process(market["cheap"], 10)
    assert w3.eth.block_number == start + 1
    answer = curl(market["proxy_port"], [{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}])
    assert answer == [{"jsonrpc": "2.0", "id": 1, "result": "0x539"}]
    assert tracking(market["dear_admin"]) == {"eth_blockNumber": 1, "eth_chainId": 1}
