"""Paid get_info through this checkout's gateway against the same gateway at another git
revision (default ``main``): did a change make a paid call dearer?

Starts on loopback, in one run: one plain regtest monerod, and two gateway processes in
front of it, one running ``src/`` of this checkout ("after"), one running ``src/`` of the
reference revision ("before", from ``git archive``; compiled extensions are copied from this
checkout, so the reference must not change them). Both get the same funded keys; rounds
alternate (and alternate who goes first) so machine noise hits both alike.

Two figures per concurrency: calls/s, and the gateway process's CPU time per call (user +
system, from /proc, over each measured round with no warm-up inside it). On a shared,
loaded machine calls/s swings with the neighbours; CPU per call is what the code costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import _common
from _common import (
    GatewayProcess,
    LoadResult,
    combine,
    fund,
    print_table,
    run_load,
    start_gateway_process,
    start_monerod,
    work_dir,
)
from _wrk import process_cpu_s
from paid_calls import CREDITS_PER_HASH, DIFFICULTY, FUNDING, paid_get_info

from rpcpay.wallet.keys import ClientKey


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Paid get_info calls/s and gateway CPU per call: this checkout vs a git "
        "revision (both on loopback in front of one monerod, rounds alternating).",
    )
    p.add_argument("--before", default="main", help="reference git revision (default: main)")
    p.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4], help="connections (default: 1 4)"
    )
    p.add_argument("--rounds", type=int, default=6, help="rounds per side (default 6)")
    p.add_argument("--round-seconds", type=float, default=4.0, help="seconds a round (default 4)")
    p.add_argument(
        "--max-requests", type=int, default=200_000, help="hard cap per round (default 200000)"
    )
    return p.parse_args()


def export_src(revision: str, into: Path) -> Path:
    """``src/`` of ``revision`` under ``into``, with this checkout's compiled extensions."""
    archive = subprocess.run(
        ["git", "-C", str(_common.REPO), "archive", revision, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for built in (_common.REPO / "src").rglob("*.so"):
        target = into / built.relative_to(_common.REPO)
        if target.parent.is_dir():
            shutil.copy2(built, target)
    return into


@contextlib.contextmanager
def running_from(repo: Path) -> Iterator[None]:
    """start_gateway_process puts ``REPO/src`` first on the child's path: point it at
    ``repo`` while the gateway starts."""
    saved = _common.REPO
    _common.REPO = repo
    try:
        yield
    finally:
        _common.REPO = saved


def main() -> int:
    args = parse_args()
    if not 0 < args.round_seconds <= 60 or not 1 <= args.rounds <= 50:
        print("--round-seconds must be in (0, 60] and --rounds in [1, 50]", file=sys.stderr)
        return 2
    keys = [ClientKey() for _ in range(max(args.concurrency))]
    rows: list[list[object]] = []
    with work_dir(False) as tmp:
        before_repo = export_src(args.before, tmp / "before")
        plain = start_monerod(tmp / "plain")
        gateways: dict[str, GatewayProcess] = {}
        try:
            for name, repo in (("before", before_repo), ("after", _common.REPO)):
                with running_from(repo):
                    gateways[name] = start_gateway_process(
                        tmp,
                        plain.url,
                        difficulty=DIFFICULTY,
                        credits=CREDITS_PER_HASH,
                        pow_mode="light",
                        ledger_sync="normal",
                        name=name,
                    )
                for key in keys:
                    fund(gateways[name].admin_url, key.public.hex(), FUNDING)
                # Warm up once here, so no round carries uncounted calls.
                asyncio.run(
                    run_load(
                        name,
                        len(keys),
                        paid_get_info(gateways[name].public_url, keys),
                        duration=1.0,
                        warmup=0.0,
                        max_requests=args.max_requests,
                    )
                )
            for conns in args.concurrency:
                parts: dict[str, list[LoadResult]] = {name: [] for name in gateways}
                cpu = dict.fromkeys(gateways, 0.0)
                calls = dict.fromkeys(gateways, 0)
                for index in range(args.rounds):
                    order = list(gateways) if index % 2 == 0 else list(reversed(gateways))
                    for name in order:
                        gateway = gateways[name]
                        start = process_cpu_s(gateway.process.pid)
                        result = asyncio.run(
                            run_load(
                                name,
                                conns,
                                paid_get_info(gateway.public_url, keys),
                                duration=args.round_seconds,
                                warmup=0.0,
                                max_requests=args.max_requests,
                            )
                        )
                        cpu[name] += process_cpu_s(gateway.process.pid) - start
                        calls[name] += result.ok + result.failed
                        parts[name].append(result)
                totals = {name: combine(p) for name, p in parts.items()}
                us = {name: cpu[name] / max(1, calls[name]) * 1e6 for name in gateways}
                for name in gateways:
                    rows.append(
                        [
                            f"{name} ({args.before if name == 'before' else 'this checkout'})",
                            conns,
                            totals[name].ok,
                            totals[name].failed,
                            totals[name].per_second,
                            f"{us[name]:.0f}",
                        ]
                    )
                speed = totals["after"].per_second / max(1e-9, totals["before"].per_second)
                cost = us["after"] / max(1e-9, us["before"])
                rows.append(["after / before", conns, "", "", f"{speed:.3f}x", f"{cost:.3f}x"])
        finally:
            for gateway in gateways.values():
                gateway.stop()
            plain.stop()
    print_table(
        "Paid JSON-RPC get_info: this checkout vs a reference revision (one run, alternating)",
        ["gateway", "conns", "ok", "failed", "calls/s", "CPU us/call"],
        rows,
    )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
