"""Good clients' latency under a junk flood and beside 2,000 idle connections (issue 10).

A real monerod (regtest) behind a real ``rpcpay serve``; good clients are wrk threads, one
connection each, sending paid ``get_block_header_by_height`` calls signed beforehand (each
with a fresh, increasing timestamp, so none is refused as a replay). Three conditions,
rounds alternating, each ``--seconds`` long:

* none: the good clients alone (the reference);
* flood: a second wrk sends junk as fast as it can on 32 connections, cycling through 36
  kinds prepared beforehand (bad JSON, 10,000-deep nesting, bad or replayed client ids,
  junk shares from fresh ids, out-of-range numbers, unknown methods and paths, junk epee,
  ...);
* idle: a helper process holds 2,000 idle connections from 40 loopback addresses (50 each,
  under the per-address cap), reopening any the gateway closes.

Prints p50 and p99 of the good clients per condition and the p99 ratios to "none" (goal:
flood <= 2x, idle <= 1.2x). wrk and the idle holder run beside the gateway on the same
cores; they use little CPU (bodies are made before each phase), but on a shared 2-core
machine the figures are noisy: compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

from _common import (
    TEST_ADDRESS,
    fund,
    print_table,
    start_gateway_process,
    start_monerod,
    work_dir,
)
from _wrk import parse_result, start_wrk

from rpcpay.wallet.keys import ClientKey

LUA = Path(__file__).with_name("flood_latency.lua")
GOOD_THREADS = 2
FLOOD_CONNECTIONS = 32
IDLE = 2000
IDLE_ADDRESSES = 40
BODIES_PER_GOOD_THREAD = 60_000


def rpc(method: str, params: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    return body


def line(path: str, body: Any) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    assert "\n" not in text and "\t" not in text
    return f"{path}\t{text}"


def good_files(base: Path, keys: list[ClientKey], count: int) -> None:
    """Per good thread: ``count`` paid calls, each signed with a newer timestamp."""
    for n, key in enumerate(keys):
        with open(f"{base}.{n}", "w") as out:
            out.write('"status": "OK"\n')
            for _ in range(count):
                params = {"client": key.client_id(), "height": 1}
                out.write(line("/json_rpc", rpc("get_block_header_by_height", params)) + "\n")


def junk_lines(victim: ClientKey) -> list[str]:
    """36 kinds of junk, with a few variants each."""
    captured = victim.client_id()  # used once by the victim below, then only replayed
    bad_sig = captured[:-4] + "0000"
    fresh = [ClientKey() for _ in range(200)]
    rng = random.Random(7)
    kinds: list[list[str]] = [
        [line("/json_rpc", "{")],
        [line("/json_rpc", "")],
        [line("/json_rpc", "[" * 10_000)],
        [line("/json_rpc", json.dumps([rpc("get_info"), rpc("get_info")]))],
        [line("/json_rpc", rpc("no_such_method"))],
        [line("/json_rpc", {"jsonrpc": "2.0", "id": 1, "method": 7})],
        [line("/json_rpc", rpc("get_block", [1, 2]))],
        [line("/json_rpc", rpc("rpc_access_info", {"client": "junk"}))],
        [line("/json_rpc", rpc("rpc_access_info", {"client": bad_sig}))],
        [line("/json_rpc", rpc("rpc_access_submit_nonce", {"client": "x", "nonce": 1}))],
        [
            line(
                "/json_rpc",
                rpc(
                    "rpc_access_submit_nonce",
                    {"client": captured, "nonce": rng.randrange(2**32), "cookie": 0},
                ),
            )
            for _ in range(20)
        ],
        [line("/json_rpc", rpc("rpc_access_submit_nonce", {"client": captured, "nonce": -1}))],
        [
            line(
                "/json_rpc",
                rpc("rpc_access_pay", {"client": captured, "paying_for": "x", "payment": 2**70}),
            )
        ],
        [line("/json_rpc", rpc("rpc_access_pay", {"client": captured, "paying_for": "x"}))],
        [
            line(
                "/json_rpc",
                rpc("get_block_headers_range", {"client": captured, "start_height": 2**80}),
            )
        ],
        [line("/json_rpc", rpc("get_block_headers_range", {"client": captured, "end_height": 5}))],
        [line("/json_rpc", rpc("get_info"))],
        [line("/json_rpc", rpc("get_info", {"client": captured}))],
        [line("/json_rpc", rpc("get_block_header_by_height", {"client": captured, "height": -1}))],
        [line("/json_rpc", rpc("get_block", {"client": captured, "height": "x"}))],
        [line("/json_rpc", rpc("get_output_histogram", {"client": captured, "amounts": [2**64]}))],
        [line("/json_rpc", rpc("relay_tx", {"client": captured, "txids": "x"}))],
        [line("/get_transactions", {"txs_hashes": ["00" * 32] * 50})],
        [line("/get_outs", {"outputs": [{"amount": -1, "index": 2**64}]})],
        [line("/send_raw_transaction", {"tx_as_hex": "00" * 100})],
        [line("/getblocks.bin", "junk-epee-" + "x" * 64)],
        [line("/get_hashes.bin", "\u0001\u0011\u0001\u0001")],
        [line("/no/such/path", {"a": 1})],
        [line("/json_rpc", rpc("rpc_access_account", {"client": "00" * 32, "delta_balance": 9}))],
        [line("/json_rpc", rpc("lottery_pay_cheque", {"client": captured, "cheque": "zz"}))],
        [line("/json_rpc", rpc("get_block", {"client": captured, "hash": "a" * 10_000}))],
        [line("/json_rpc", rpc("hard_fork_info", {"client": captured, "version": 300}))],
        [line("/json_rpc", rpc("get_coinbase_tx_sum", {"client": captured, "count": 2**64 - 1}))],
        [line("/json_rpc", {"jsonrpc": "2.0", "id": [[[[{"a": [1]}]]]], "method": "get_info"})],
        [line("/json_rpc", '{"jsonrpc": "2.0", "id": 1, "method": "\\ud800\\udfff"}')],
        # New ids, each also sending a junk share: both budgets must refuse them cheaply.
        [line("/json_rpc", rpc("rpc_access_info", {"client": k.client_id()})) for k in fresh]
        + [
            line(
                "/json_rpc",
                rpc(
                    "rpc_access_submit_nonce",
                    {"client": k.client_id(), "nonce": rng.randrange(2**32), "cookie": 1},
                ),
            )
            for k in fresh
        ],
    ]
    assert len(kinds) == 36
    mixed = []
    longest = max(len(k) for k in kinds)
    for i in range(longest):
        for kind in kinds:
            mixed.append(kind[i % len(kind)])
    return mixed


def wrk(url: str, base: Path, threads: int, connections: int, seconds: float) -> Any:
    return start_wrk(url, LUA, threads, connections, seconds, str(base))


def hold_idle(port: int, seconds: float) -> None:
    """The idle holder (run as a child process): 2,000 idle connections for ``seconds``."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 3 * IDLE), hard))

    async def one(source: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(source, 0)
                )
            except OSError:
                await asyncio.sleep(0.5)
                continue
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(reader.read(), deadline - time.monotonic())
            writer.close()

    connected = 0

    async def counted(source: str, deadline: float) -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        connected += 1
        if connected == IDLE:
            print("ready", flush=True)
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(reader.read(), deadline - time.monotonic())
        writer.close()
        await one(source, deadline)

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *[counted(f"127.0.{90 + i % IDLE_ADDRESSES}.1", deadline) for i in range(IDLE)]
        )

    asyncio.run(main())


def phase(url: str, tmp: Path, keys: list[ClientKey], kind: str, seconds: float) -> dict[str, int]:
    base = tmp / "good"
    good_files(base, keys, BODIES_PER_GOOD_THREAD)
    helper = None
    if kind == "flood":
        helper = wrk(url, tmp / "junk", 1, FLOOD_CONNECTIONS, seconds + 4)
    elif kind == "idle":
        port = url.rsplit(":", 1)[1]
        helper = subprocess.Popen(
            [sys.executable, __file__, "--hold-idle", port, "--seconds", str(seconds + 20)],
            stdout=subprocess.PIPE,
            text=True,
        )
        # Measure the steady state: all 2,000 sockets open (the opening burst is over).
        assert helper.stdout is not None and helper.stdout.readline().strip() == "ready"
    if helper is not None:
        time.sleep(2)  # the flood or the idle sockets are in place before measuring
    good = wrk(url, base, GOOD_THREADS, GOOD_THREADS, seconds)
    out, _ = good.communicate(timeout=seconds + 60)
    result = parse_result(out)
    if helper is not None:
        helper_out, _ = helper.communicate(timeout=seconds + 60)
        if kind == "flood":
            result["junk_requests"] = parse_result(helper_out)["requests"]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=40.0, help="length of each phase (40)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of none/flood/idle (2)")
    p.add_argument(
        "--conditions",
        default="none,flood,idle",
        help="which conditions to run, in this order each round (none,flood,idle)",
    )
    p.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        help="extra flag for rpcpay serve (repeatable), e.g. --gateway-arg=--refusal-delay=0",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--hold-idle", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.hold_idle:
        hold_idle(int(args.hold_idle), args.seconds)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        return 2
    if not 5 <= args.seconds <= 50 or not 1 <= args.rounds <= 5:
        print("need 5 <= --seconds <= 50 (ids stay valid 60 s) and 1 <= --rounds <= 5")
        return 2
    conditions = args.conditions.split(",")
    if not conditions or not set(conditions) <= {"none", "flood", "idle"}:
        print("--conditions is a comma-separated subset of none,flood,idle", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, int]]] = {kind: [] for kind in conditions}
    with work_dir(False) as tmp, start_monerod(tmp / "monerod") as monerod:
        monerod.generate_blocks(20, TEST_ADDRESS)
        gateway = start_gateway_process(
            tmp,
            monerod.url,
            difficulty=5,
            credits=100,
            pow_mode="light",
            ledger_sync="normal",
            extra=args.gateway_arg,
        )
        try:
            keys = [ClientKey() for _ in range(GOOD_THREADS)]
            victim = ClientKey()
            for key in (*keys, victim):
                fund(gateway.admin_url, key.public.hex(), 10**12)
            junk = junk_lines(victim)
            for n in range(1):
                with open(f"{tmp / 'junk'}.{n}", "w") as out:
                    out.write("\n" + "\n".join(junk) + "\n")
            for r in range(args.rounds):
                for kind in conditions:
                    result = phase(gateway.public_url, tmp, keys, kind, args.seconds)
                    results[kind].append(result)
                    print(f"round {r + 1} {kind}: {result}", file=sys.stderr, flush=True)
        finally:
            gateway.stop()
    summary = {}
    for kind, runs in results.items():
        summary[kind] = {
            "p50_ms": median(r["p50_us"] for r in runs) / 1000,
            "p99_ms": median(r["p99_us"] for r in runs) / 1000,
            "requests": sum(r["requests"] for r in runs),
            "unexpected": sum(r["unexpected"] + r["errors"] for r in runs),
            "wrapped": sum(r["wrapped"] for r in runs),
            "junk_requests": sum(r.get("junk_requests", 0) for r in runs),
        }
    none_p99 = summary["none"]["p99_ms"] if "none" in summary else float("nan")
    if args.json:
        print(json.dumps({"benchmark": "flood_latency", "reference": "none", **summary}))
        return 0
    print_table(
        f"Good clients (wrk, {GOOD_THREADS} connections, paid get_block_header_by_height), "
        f"{args.rounds} rounds x {args.seconds:g} s, medians over rounds",
        ["condition", "p50 ms", "p99 ms", "p99 / none", "good calls", "not OK", "junk sent"],
        [
            [
                kind,
                s["p50_ms"],
                s["p99_ms"],
                f"{s['p99_ms'] / none_p99:.2f}x",
                s["requests"],
                s["unexpected"],
                s["junk_requests"],
            ]
            for kind, s in summary.items()
        ],
    )
    print("  goals: flood <= 2.00x, idle <= 1.20x of none")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
