"""Paid priority under a free-client flood (issue 14): paying clients' latency with and
without 200 free clients hammering the same gateway.

Set-up, all on loopback, measured in one run with rounds alternating:

* a regtest monerod (the upstream), behind ``rpcpay serve`` with the free tier on
  (``--free-credits-per-second 10 --free-burst 100`` per host), ``--upstream-concurrency 8``,
  ``--free-share 0.25`` (2 of the 8 upstream slots for free calls) and
  ``--free-total-credits-per-second 600`` (``--free-total``: free work bounded in the
  gateway's own CPU too). Both the info cache
  and the chain cache are off (``--info-cache-ms 0 --cache-mb 0``) so that every call,
  paid or free, really reaches the upstream and has to wait for a slot;
* 4 paying clients (Python, in this process, one keep-alive connection each) alternating
  signed ``get_info`` (JSON-RPC) and ``/get_blocks.bin`` (epee, the last 20 blocks) calls,
  each client one call every 20 ms (200 calls/s in all), bodies signed before each phase
  so the measuring loop does no signing;
* the flood: wrk, 2 threads, 200 connections, unsigned ``/get_info`` calls as fast as the
  gateway answers. wrk cannot bind source addresses, so each request carries an
  X-Forwarded-For address out of 4,096 (the gateway trusts ``127.0.0.1`` as a proxy):
  the per-host allowance never binds, the global free share does;
* the reference for "the share": a second gateway with the same flags but
  ``--free-share 1``, flooded alone the same way; its served calls/s is what free calls get
  with every slot theirs. ``share achieved`` = free served/s under the flood, beside the
  paying clients, divided by that.

Conditions per round: ``none`` (paying clients alone), ``flood`` (paying clients during the
flood), ``capacity`` (the reference gateway flooded alone). Prints the paying clients' p50
and p99 per condition, the p99 ratio flood/none (goal <= 1.5), free calls served, refused
and shed per second, and the CPU used by the gateway, by wrk and by this script (a load
generator must not steal the server's CPU: compare them). On a shared 2-core machine the
figures are noisy: compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import quantiles
from typing import Any

import aiohttp
from _common import (
    TEST_ADDRESS,
    fund,
    json_rpc,
    print_table,
    start_gateway_process,
    start_monerod,
    work_dir,
)
from _wrk import parse_result, process_cpu_s, start_wrk

from rpcpay.wallet.keys import ClientKey
from rpcpay.wire import epee
from rpcpay.wire.epee import Int, Type

LUA = Path(__file__).with_name("priority.lua")
PAYING_CLIENTS = 4
PERIOD_S = 0.02
FLOOD_THREADS = 2
BLOCKS = 120
RECENT = 20


def gateway_flags(args: argparse.Namespace, share: float, total: float) -> list[str]:
    return [
        "--trusted-proxy", "127.0.0.1",
        "--info-cache-ms", "0",
        "--cache-mb", "0",
        "--free-credits-per-second", "10",
        "--free-burst", "100",
        "--free-share", str(share),
        "--free-total-credits-per-second", str(total),
        "--upstream-concurrency", str(args.concurrency),
        # Every flood connection comes from 127.0.0.1 (the trusted proxy).
        "--max-connections-per-address", "4096",
    ]  # fmt: skip


def signed_bodies(
    keys: list[ClientKey], count: int, top: int, genesis: bytes
) -> list[list[tuple[str, bytes, str]]]:
    """Per paying client: ``count`` calls, get_info and /get_blocks.bin in turn, each signed
    with a newer timestamp."""
    out = []
    for key in keys:
        calls = []
        for n in range(count):
            client = key.client_id()
            if n % 2 == 0:
                body = {"jsonrpc": "2.0", "id": n, "method": "get_info",
                        "params": {"client": client}}  # fmt: skip
                calls.append(("/json_rpc", json.dumps(body).encode(), "application/json"))
            else:
                section: epee.Section = {
                    "client": client.encode(),
                    "block_ids": genesis,
                    "prune": True,
                    "start_height": Int(Type.UINT64, max(0, top - RECENT)),
                }
                calls.append(("/get_blocks.bin", epee.encode(section), "application/octet-stream"))
        out.append(calls)
    return out


async def paying_client(
    url: str, calls: list[tuple[str, bytes, str]], seconds: float
) -> tuple[list[float], int]:
    """One paying client: a call every PERIOD_S for ``seconds``; (latencies, bad answers)."""
    latencies: list[float] = []
    bad = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = loop.time()
        for n, (path, body, ctype) in enumerate(calls):
            if loop.time() - start >= seconds:
                break
            began = time.perf_counter()
            async with session.post(url + path, data=body, headers={"Content-Type": ctype}) as r:
                raw = await r.read()
            latencies.append(time.perf_counter() - began)
            # A paid call must be served: 200, and neither refused nor shed.
            if r.status != 200 or b"PAYMENT REQUIRED" in raw or b"BUSY" in raw:
                bad += 1
            delay = start + (n + 1) * PERIOD_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
    return latencies, bad


def start_flood(url: str, args: argparse.Namespace, seconds: float) -> subprocess.Popen[str]:
    return start_wrk(
        url, LUA, FLOOD_THREADS, args.flood_connections, seconds, "/get_info", "{}", str(args.hosts)
    )


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phase(
    kind: str, gw: Any, ref: Any, keys: list[ClientKey], chain: tuple[int, bytes],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """One measured phase; latencies, flood counts and CPU seconds."""
    seconds = args.seconds
    target = ref if kind == "capacity" else gw
    bodies = signed_bodies(keys, int(seconds / PERIOD_S) + 10, *chain) if kind != "capacity" else []
    flood = None
    if kind != "none":
        flood = start_flood(target.public_url, args, seconds + 3)
        time.sleep(1.5)  # the flood is in full swing before measuring
    gw_cpu, wrk_cpu, own_cpu = process_cpu_s(target.process.pid), children_cpu(), self_cpu()
    began = time.monotonic()
    result: dict[str, Any] = {"latencies": [], "bad": 0}
    if bodies:

        async def run() -> list[tuple[list[float], int]]:
            return await asyncio.gather(
                *(paying_client(gw.public_url, calls, seconds) for calls in bodies)
            )

        for latencies, bad in asyncio.run(run()):
            result["latencies"] += latencies
            result["bad"] += bad
    else:
        time.sleep(seconds)
    wall = time.monotonic() - began
    result["gateway_cores"] = (process_cpu_s(target.process.pid) - gw_cpu) / wall
    result["self_cores"] = (self_cpu() - own_cpu) / wall
    if flood is not None:
        out, _ = flood.communicate(timeout=seconds + 60)
        counts = parse_result(out)
        flood_s = counts["duration_us"] / 1e6
        result["flood"] = {k: v / flood_s for k, v in counts.items() if k != "duration_us"}
        result["wrk_cores"] = (children_cpu() - wrk_cpu) / flood_s
    return result


def percentile(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of none/flood/capacity")
    parser.add_argument("--flood-connections", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=4096, help="flood client addresses")
    parser.add_argument("--concurrency", type=int, default=8, help="--upstream-concurrency")
    parser.add_argument("--share", type=float, default=0.25, help="--free-share")
    parser.add_argument(
        "--free-total",
        type=float,
        default=600.0,
        help="--free-total-credits-per-second of the measured gateway (0: none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep logs and data")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        return 1
    with work_dir(args.keep) as tmp, start_monerod(tmp / "monerod") as mon:
        mon.generate_blocks(BLOCKS, TEST_ADDRESS)
        common = {"difficulty": 1000, "credits": 100, "pow_mode": "light", "ledger_sync": "normal"}
        gw = start_gateway_process(
            tmp, mon.url, extra=gateway_flags(args, args.share, args.free_total), **common
        )
        ref = start_gateway_process(
            tmp, mon.url, extra=gateway_flags(args, 1.0, 0.0), name="reference", **common
        )
        try:
            keys = [ClientKey() for _ in range(PAYING_CLIENTS)]
            for key in keys:
                fund(gw.admin_url, key.public.hex(), 10**12)
            genesis = bytes.fromhex(json_rpc(mon.url, "on_get_block_hash", [0])["result"])
            chain = (mon.height(), genesis)
            results: dict[str, list[dict[str, Any]]] = {"none": [], "flood": [], "capacity": []}
            for _ in range(args.rounds):
                for kind in ("none", "flood", "capacity"):
                    results[kind].append(phase(kind, gw, ref, keys, chain, args))
            summary = json_rpc(gw.admin_url, "rpc_access_data")["result"].get("capacity", {})
        finally:
            gw.stop()
            ref.stop()
    report(results, summary, args)
    return 0


def report(
    results: dict[str, list[dict[str, Any]]], summary: dict[str, Any], args: argparse.Namespace
) -> None:
    rows = []
    p99: dict[str, float] = {}
    for kind in ("none", "flood"):
        latencies = [x for r in results[kind] for x in r["latencies"]]
        bad = sum(r["bad"] for r in results[kind])
        p99[kind] = percentile(latencies, 99)
        rows.append([kind, len(latencies), bad, f"{percentile(latencies, 50) * 1000:.2f}",
                     f"{p99[kind] * 1000:.2f}"])  # fmt: skip
    print_table(
        f"paying clients ({PAYING_CLIENTS}, get_info + /get_blocks.bin, a call per "
        f"{PERIOD_S * 1000:.0f} ms each), {args.rounds} rounds x {args.seconds:g} s",
        ["condition", "calls", "not served", "p50 ms", "p99 ms"],
        rows,
    )
    print(f"p99 flood / none: {p99['flood'] / p99['none']:.2f} (goal <= 1.5)")

    def mean(kind: str, key: str) -> float:
        values = [r["flood"][key] for r in results[kind] if "flood" in r]
        return sum(values) / len(values) if values else 0.0

    served, capacity = mean("flood", "served"), mean("capacity", "served")
    print_table(
        f"free flood ({args.flood_connections} connections, {args.hosts} addresses), per second",
        ["gateway", "requests", "served", "refused (pay)", "shed (busy)", "other/errors"],
        [
            [f"--free-share {args.share}", f"{mean('flood', 'requests'):.0f}", f"{served:.0f}",
             f"{mean('flood', 'refused'):.0f}", f"{mean('flood', 'shed'):.0f}",
             f"{mean('flood', 'other') + mean('flood', 'errors'):.0f}"],
            ["--free-share 1 (reference)", f"{mean('capacity', 'requests'):.0f}",
             f"{capacity:.0f}", f"{mean('capacity', 'refused'):.0f}",
             f"{mean('capacity', 'shed'):.0f}",
             f"{mean('capacity', 'other') + mean('capacity', 'errors'):.0f}"],
        ],
    )  # fmt: skip
    share = served / capacity if capacity else 0.0
    print(f"share achieved: {share:.2f} of the reference's served/s (configured {args.share})")

    def cores(kind: str, key: str) -> str:
        values = [r[key] for r in results[kind] if key in r]
        return f"{sum(values) / len(values):.2f}" if values else "-"

    print_table(
        "CPU (cores: CPU seconds per second)",
        ["condition", "gateway", "wrk (flood)", "this script (paying clients)"],
        [[k, cores(k, "gateway_cores"), cores(k, "wrk_cores"), cores(k, "self_cores")]
         for k in ("none", "flood", "capacity")],
    )  # fmt: skip
    print("gateway capacity counters at the end:", json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
