"""Memory per tracked client in the gateway (target: <= 2 KiB per client).

In-process, without HTTP (50,000 HTTP round trips would only measure aiohttp): a
``PaymentService`` over a SQLite ledger in a temporary directory and a
``SyntheticJobSource`` (every client still gets its own 76-byte job, seed and top hash),
with the new-client limits raised out of the way. For each of N clients, in order:
  1. the operator credits it (``Ledger.adjust_balance``, what admin rpc_access_account does),
  2. it calls rpc_access_info (``PaymentService.access_info`` with a freshly signed id), has
     a nonce recorded, and gets a second job 16 s later with another nonce: the gateway then
     holds what a mining client costs at worst (a current and a previous job, two non-empty
     nonce sets) and an account with a balance.
Client keys and ids are made on the fly and dropped, so only the gateway's state remains.

Two measurements, each in its own child process (so neither disturbs the other):
  * tracemalloc: Python heap growth / N (plus a per-source-file breakdown),
  * RSS: growth of /proc/self/statm's resident pages / N, without tracemalloc running
    (includes SQLite's page cache and allocator slack; SQLite's own memory is bounded).
Reference: the 2048-byte target; the ratio printed is bytes/client / 2048 (<= 1.0 passes).

``--at-cap``: the new-id flood at its ceiling. Unfunded new ids (one rpc_access_info each,
what a flooder gets) until the session table is full and 10% past it, so the LRU bounds are
seen working: prints RSS growth at the cap (session table 200,000, blank-account map
100,000) and whether it grew past the cap. Reference: the same per-id cost times the cap.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _common import print_table, work_dir

from rpcpay.gateway.limits import AbuseGuard, AbuseLimits
from rpcpay.gateway.payment import PaymentService, PaymentSettings
from rpcpay.gateway.synthetic_jobs import SyntheticJobSource
from rpcpay.ledger.ledger import Ledger
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.wire.client_id import make_client_id
from rpcpay.wire.ed25519 import generate_keypair

TARGET_BYTES = 2048
PAGE = os.sysconf("SC_PAGE_SIZE")
HUGE = 1e12


class NeverHash:
    """No share is submitted in this benchmark."""

    async def hash(self, seed_hash: bytes, blob: bytes) -> bytes:
        raise AssertionError("no hashing expected")

    async def prepare(self, seed_hash: bytes) -> None:
        return None


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


async def populate(service: PaymentService, clients: int, deadline: float) -> int:
    made = 0
    for _ in range(clients):
        if time.monotonic() > deadline:
            break
        secret, public = generate_keypair()
        service.ledger.adjust_balance(public, 1_000_000)
        client_id = make_client_id(secret, int(time.time() * 1_000_000))
        info = await service.access_info(client_id, "127.0.0.1")
        assert info["status"] == "OK" and info["credits"] == 1_000_000
        # The worst steady state: a current and a previous job, each with a nonce paid.
        session = service.sessions.get_or_create(public, time.time())
        session.remember_nonce(1, current=True)
        session.job_time -= 16  # the job is due for renewal (monerod's 15 s rule)
        client_id = make_client_id(secret, int(time.time() * 1_000_000) + 1)
        info = await service.access_info(client_id, "127.0.0.1")
        assert info["cookie"] == 2
        session.remember_nonce(1, current=True)
        made += 1
    return made


async def flood(service: PaymentService, clients: int, deadline: float, step: int) -> list[int]:
    """``clients`` unfunded new ids, one job each; RSS sampled every ``step`` ids."""
    samples = []
    for i in range(clients):
        if time.monotonic() > deadline:
            break
        secret, _ = generate_keypair()
        info = await service.access_info(make_client_id(secret, int(time.time() * 1e6)), "::1")
        assert info["status"] == "OK"
        if (i + 1) % step == 0:
            samples.append(rss_bytes())
    return samples


def cap_worker(tmp: Path, time_limit: float) -> dict[str, Any]:
    store = SqliteLedgerStore(tmp / "ledger-cap.sqlite3", synchronous="normal")
    service = PaymentService(
        PaymentSettings(difficulty=1000, credits_per_hash_found=100),
        Ledger(store),
        SyntheticJobSource(secrets.token_bytes(32)),
        NeverHash(),
        AbuseGuard(AbuseLimits(HUGE, HUGE, HUGE, HUGE, HUGE, HUGE, HUGE, HUGE)),
    )
    cap = service.sessions.max_sessions
    asyncio.run(flood(service, 50, time.monotonic() + 60, 50))
    gc.collect()
    base = rss_bytes()
    started = time.monotonic()
    samples = asyncio.run(flood(service, cap + cap // 10, started + time_limit, cap // 10))
    gc.collect()
    grown = [s - base for s in samples]
    return {
        "kind": "at-cap",
        "session_cap": cap,
        "sessions": len(service.sessions),
        "blank_accounts": len(service.ledger.accounts()),
        "rss_growth_by_tenth": grown,
        "rss_at_cap": grown[9] if len(grown) > 9 else None,
        "rss_past_cap": grown[10] if len(grown) > 10 else None,
        "bytes_per_id_at_cap": grown[9] / cap if len(grown) > 9 else None,
        "seconds": time.monotonic() - started,
    }


def worker(kind: str, clients: int, tmp: Path, time_limit: float) -> dict[str, Any]:
    store = SqliteLedgerStore(tmp / f"ledger-{kind}.sqlite3", synchronous="normal")
    ledger = Ledger(store)
    jobs = SyntheticJobSource(secrets.token_bytes(32))
    service = PaymentService(
        PaymentSettings(difficulty=1000, credits_per_hash_found=100),
        ledger,
        jobs,
        NeverHash(),
        AbuseGuard(AbuseLimits(HUGE, HUGE, HUGE, HUGE)),
    )
    # Warm the code paths (imports, SQLite statements, first allocations) before measuring.
    asyncio.run(populate(service, 50, time.monotonic() + 60))
    gc.collect()
    started = time.monotonic()
    breakdown: list[dict[str, Any]] = []
    if kind == "tracemalloc":
        tracemalloc.start(1)
        base_snap = tracemalloc.take_snapshot()
        base = tracemalloc.get_traced_memory()[0]
        made = asyncio.run(populate(service, clients, started + time_limit))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        for stat in snap.compare_to(base_snap, "filename")[:8]:
            frame = stat.traceback[0]
            name = frame.filename
            short = name.split("/src/", 1)[-1] if "/src/" in name else name.rsplit("/", 2)[-1]
            breakdown.append({"file": short, "bytes_per_client": stat.size_diff / max(made, 1)})
        tracemalloc.stop()
    else:
        base = rss_bytes()
        made = asyncio.run(populate(service, clients, started + time_limit))
        gc.collect()
        grown = rss_bytes() - base
    seconds = time.monotonic() - started
    assert len(service.sessions) >= made
    ledger.close()
    return {
        "kind": kind,
        "clients": made,
        "bytes_total": grown,
        "bytes_per_client": grown / made if made else 0.0,
        "seconds": seconds,
        "breakdown": breakdown,
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Gateway memory per tracked client (session with a job + funded account), "
        "by tracemalloc and by RSS growth, for N clients created in-process through "
        "PaymentService.access_info. Prints bytes/client and the ratio to the 2048-byte "
        "target (<= 1.0 passes).",
    )
    p.add_argument("--clients", type=int, default=50_000, help="clients to create (default 50000)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=100.0,
        help="stop creating clients after this many seconds per measurement "
        "(default 100); figures are per client actually created",
    )
    p.add_argument(
        "--sequential",
        action="store_true",
        help="run the two measurements one after the other instead of in parallel",
    )
    p.add_argument(
        "--at-cap",
        action="store_true",
        help="instead: unfunded new ids until the session table is full and 10%% past it; "
        "RSS growth at the cap (set --time-limit to 600 or so)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--worker", choices=("tracemalloc", "rss"), help=argparse.SUPPRESS)
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if not 1 <= args.clients <= 5_000_000 or not 0 < args.time_limit <= 3600:
        print("need 1 <= --clients <= 5000000 and 0 < --time-limit <= 3600", file=sys.stderr)
        return 2
    if args.worker:
        print(json.dumps(worker(args.worker, args.clients, args.tmp, args.time_limit)))
        return 0
    if args.at_cap:
        with work_dir(False) as tmp:
            print(json.dumps(cap_worker(tmp, args.time_limit), indent=2))
        return 0
    wall = time.monotonic()
    results: list[dict[str, Any]] = []
    with work_dir(False) as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--clients",
            str(args.clients),
            "--time-limit",
            str(args.time_limit),
            "--tmp",
            str(tmp),
            "--worker",
        ]
        kinds = ("tracemalloc", "rss")
        if args.sequential:
            outs = [
                subprocess.run(
                    [*cmd, k],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=args.time_limit + 300,
                )
                for k in kinds
            ]
        else:
            procs = [
                subprocess.Popen(
                    [*cmd, k], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                for k in kinds
            ]
            outs = []
            for proc in procs:
                stdout, stderr = proc.communicate(timeout=args.time_limit + 300)
                outs.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
        for out in outs:
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    elapsed = time.monotonic() - wall
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "client_memory",
                    "reference": "target 2048 bytes per tracked client",
                    "target_bytes": TARGET_BYTES,
                    "results": [
                        {**r, "ratio_to_target": r["bytes_per_client"] / TARGET_BYTES}
                        for r in results
                    ],
                    "wall_seconds": round(elapsed, 1),
                },
                indent=2,
            )
        )
        return 0
    print_table(
        "Gateway memory per tracked client (session + job + funded account), "
        "created via PaymentService.access_info",
        ["measure", "clients", "bytes total", "bytes/client", "ratio to 2048 B", "seconds"],
        [
            [
                r["kind"],
                r["clients"],
                r["bytes_total"],
                r["bytes_per_client"],
                f"{r['bytes_per_client'] / TARGET_BYTES:.2f}x",
                r["seconds"],
            ]
            for r in results
        ],
    )
    for r in results:
        if r["breakdown"]:
            print_table(
                "tracemalloc growth by source file (top 8)",
                ["file", "bytes/client"],
                [[b["file"], b["bytes_per_client"]] for b in r["breakdown"]],
            )
    print("  target: <= 2048 bytes per client (ratio <= 1.00x)")
    print(f"\nwall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
