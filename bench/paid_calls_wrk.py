"""Paid get_info/s for every deployment shape, against monerod 0.18's payment (issue 11).

The reference method for paid-call throughput (``bench/paid_calls.py``, whose Python load
generator signs as it goes and so takes CPU from the servers it measures, is kept for its
history). Everything on loopback, in one run:

* monerod 0.18 with payment on (difficulty 5, 100 credits): the reference;
* a plain regtest monerod that the gateways front;
* one gateway per configuration in ``CONFIGS`` (name, flags): one instance on SQLite,
  ``--workers 2`` on SQLite, one instance on PostgreSQL (``--ledger-url``, a private cluster
  made by tests/support/postgres.py), ``--workers 2`` on PostgreSQL. A configuration whose
  flags ``rpcpay serve --help`` does not list is reported as not available, with the reason.

Load: wrk (C), one thread per connection, each thread owning one funded client key and
sending JSON-RPC ``get_info`` bodies signed *before* the phase with strictly increasing
timestamps (``bench/prepared_bodies.lua``). Signing happens in this process between phases,
never during one. Answers without ``"status": "OK"`` are counted and shown; a thread that
ran out of bodies and wrapped is reported (its replays are refused, so its figure is low).
Each phase prints wrk's own CPU and the servers' CPU (the target's process tree; for a
gateway that includes the monerod it fronts and the PostgreSQL cluster).

Rounds alternate who goes first (even rounds: monerod first; odd rounds: reversed order),
and no round is discarded. Ratios are totals over rounds, against monerod measured in the
same run at the same connection count.

Then, per gateway configuration, shares credited per second: a fresh gateway at difficulty 1
(so every nonce is a good share and the clients compute nothing; the gateway still verifies
each one with a full RandomX light-mode hash), wrk sending prepared ``rpc_access_submit_nonce``
bodies with distinct nonces. And the ledger's latency per charge, p50 and p99, from the
difference of the gateway's ``rpcpay_ledger_seconds{op="pay"}`` histogram before and after
each phase (interpolated within buckets, as Prometheus' ``histogram_quantile`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    TEST_ADDRESS,
    GatewayProcess,
    fund,
    json_rpc,
    print_table,
    start_gateway_process,
    start_monerod,
    work_dir,
)
from _wrk import WrkResult, have_wrk, run_wrk, tree_cpu_s, write_bodies

from rpcpay.wallet.keys import ClientKey
from rpcpay.wire.client_id import make_client_id

DIFFICULTY = 5
CREDITS_PER_HASH = 100
FUNDING = 10**15
OK_MARKER = '"status"%s*:%s*"OK"'
#: First-phase guess of one connection's calls/s (later phases size from what was sent).
PRIOR_PER_CONNECTION = {1: 4000.0, 4: 2000.0}
PRIOR_DEFAULT = 600.0
BODY_MARGIN = 1.6
WORKER_METRICS_SETTLE_S = 1.5
#: The monerod the gateways front serves every gateway and worker here (each keeps its own
#: upstream pool, idle connections included): monerod's defaults (25 connections per private
#: address, 100 in all) would refuse some of them, and the calls would fail as "upstream
#: unavailable". Operators with several workers or instances on one monerod need the same.
UPSTREAM_LIMITS = (
    "--rpc-max-connections", "2000",
    "--rpc-max-connections-per-private-ip", "1000",
    "--rpc-max-connections-per-public-ip", "1000",
)  # fmt: skip
SHARE_LIMIT_FLAGS = (
    "--bad-shares-burst", "1000000000", "--bad-shares-per-second", "1000000000",
    "--new-clients-burst", "1000000000", "--new-clients-per-second", "1000000000",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Config:
    """One gateway deployment shape: its name, its flags, and the flags it needs."""

    name: str
    store: str  # "sqlite" or "postgres" (postgres adds --ledger-url for its own database)
    flags: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


CONFIGS = (
    Config("sqlite x1", "sqlite"),
    Config("sqlite --workers 2", "sqlite", ("--workers", "2"), ("--workers",)),
    Config("postgres x1", "postgres", (), ("--ledger-url",)),
    Config("postgres --workers 2", "postgres", ("--workers", "2"), ("--ledger-url", "--workers")),
)
OPTIONAL_CONFIGS = (
    Config(
        "postgres x1 --ledger-sync full",
        "postgres",
        ("--ledger-sync", "full"),
        ("--ledger-url", "--ledger-sync"),
    ),
)
"""Configurations run only when ``--configs`` names them: every PostgreSQL commit waiting
for the disk, to show what ``--ledger-sync normal`` (the default) saves."""
REFERENCE = "monerod 0.18"


@dataclass
class Target:
    """A server under load: where to send, and which processes' CPU is its cost."""

    name: str
    url: str
    pids: list[int]
    #: A gateway's admin listener, for /metrics (None for monerod).
    metrics_url: str | None = None
    #: --workers: a scrape must carry every worker's series (labelled ``worker``), which
    #: the others publish once a second, so the scrape after a phase waits for them.
    workers: bool = False


@dataclass
class Cell:
    """All rounds of one target at one connection count."""

    target: str
    connections: int
    runs: list[WrkResult] = field(default_factory=list)
    server_cpu_s: float = 0.0
    pay_hist: dict[float, float] = field(default_factory=dict)
    hist_ok: bool = True

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.runs)

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def serve_flags() -> set[str]:
    """The flags this checkout's ``rpcpay serve --help`` lists (the gateways run its src/)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-m", "rpcpay", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out.stdout))


def availability(configs: tuple[Config, ...]) -> dict[str, str | None]:
    """Per configuration: None if it can run here, else why not."""
    flags = serve_flags()
    reasons: dict[str, str | None] = {}
    pg_problem: str | None = None
    try:
        from tests.support.postgres import postgres_bindir

        postgres_bindir()
    except RuntimeError as exc:
        pg_problem = str(exc)
    for config in configs:
        missing = [f for f in config.needs if f not in flags]
        if missing:
            reasons[config.name] = f"`rpcpay serve --help` lists no {', '.join(missing)}"
        elif config.store == "postgres" and pg_problem:
            reasons[config.name] = pg_problem
        else:
            reasons[config.name] = None
    return reasons


class Signer:
    """One client key signing blocks of ids, timestamps strictly increasing across blocks."""

    def __init__(self) -> None:
        key = ClientKey()
        self.secret = key.secret
        self.public_hex = key.public.hex()
        self._last_us = 0

    def block(self, count: int) -> range:
        """``count`` fresh timestamps (from now, 1 us apart), later than any signed before."""
        start = max(int(time.time() * 1_000_000), self._last_us + 1)
        self._last_us = start + count - 1
        return range(start, start + count)

    def client_id(self) -> str:
        return make_client_id(self.secret, self.block(1)[0])


def get_info_bodies(secret: bytes, timestamps: range) -> Iterator[str]:
    """Paid get_info bodies, one per timestamp, in send order."""
    for ts in timestamps:
        client = make_client_id(secret, ts)
        yield '{"jsonrpc":"2.0","id":0,"method":"get_info","params":{"client":"' + client + '"}}'


def write_get_info_file(base: Path, n: int, secret: bytes, timestamps: range) -> None:
    """Thread ``n``'s body file (run in a signing process: ~18,000 ids/s per core)."""
    write_bodies(base, [get_info_bodies(secret, timestamps)], "/json_rpc", OK_MARKER, first=n)


def share_bodies(key: Signer, cookie: int, count: int) -> Iterator[str]:
    """``count`` submissions of distinct nonces for one job (every nonce is good at diff 1)."""
    for n, ts in enumerate(key.block(count)):
        client = make_client_id(key.secret, ts)
        yield (
            '{"jsonrpc":"2.0","id":0,"method":"rpc_access_submit_nonce","params":{"client":"'
            f'{client}","nonce":{n},"cookie":{cookie}}}}}'
        )


def scrape_pay_histogram(admin_url: str, workers: bool) -> dict[float, float] | None:
    """Cumulative bucket counts of the ledger's per-charge time (le in seconds -> count),
    summed over workers; None if a --workers gateway's scrape has one worker's series only."""
    with urllib.request.urlopen(admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    if workers and 'worker="1"' not in text:
        return None
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith("rpcpay_ledger_seconds_bucket{"):
            continue
        labels, value = line.rsplit(" ", 1)
        if 'op="pay"' not in labels and 'op="charge"' not in labels:
            continue
        le = re.search(r'le="([^"]+)"', labels)
        if le:
            bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus-style histogram quantile (linear within the bucket), in seconds."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bucket: report its bound
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def phase(
    target: Target,
    cell: Cell,
    keys: list[Signer],
    seconds: int,
    tmp: Path,
    budget: int,
    signers: Executor,
) -> WrkResult:
    """Sign, then measure one target at one connection count; adds to ``cell``."""
    conns = cell.connections
    base = tmp / "bodies"
    # Timestamps are handed out here, in order; the signing itself runs on every core.
    blocks = [keys[n].block(budget) for n in range(conns)]
    list(
        signers.map(
            write_get_info_file,
            [base] * conns,
            range(conns),
            [k.secret for k in keys[:conns]],
            blocks,
        )
    )
    url = target.metrics_url
    before = scrape_pay_histogram(url, target.workers) if url else None
    cpu_before = tree_cpu_s(target.pids)
    result = run_wrk(target.url, base, conns, seconds)
    cell.server_cpu_s += tree_cpu_s(target.pids) - cpu_before
    if url:
        if target.workers:
            time.sleep(WORKER_METRICS_SETTLE_S)
        after = scrape_pay_histogram(url, target.workers)
        if before is None or after is None:
            cell.hist_ok = False
        else:
            for bound, count in after.items():
                delta = count - before.get(bound, 0.0)
                cell.hist_ok = cell.hist_ok and delta >= 0
                cell.pay_hist[bound] = cell.pay_hist.get(bound, 0.0) + delta
    cell.runs.append(result)
    return result


def start_gateway(
    tmp: Path, upstream: str, config: Config, ledger_url: str | None, tag: str, difficulty: int
) -> GatewayProcess:
    extra = list(config.flags) + list(SHARE_LIMIT_FLAGS)
    if ledger_url is not None:
        extra += ["--ledger-url", ledger_url]
    return start_gateway_process(
        tmp,
        upstream,
        difficulty=difficulty,
        credits=CREDITS_PER_HASH,
        pow_mode="light",
        ledger_sync="normal",
        extra=extra,
        name=tag,
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Paid get_info/s (wrk, bodies signed beforehand) for monerod 0.18 and each "
        "gateway configuration at 1, 4 and 16 connections, rounds alternating; then shares "
        "credited/s and the ledger's latency per charge for each store."
    )
    p.add_argument("--seconds", type=int, default=5, help="seconds per phase (default 5)")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4)")
    p.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=[1, 4, 16],
        help="connection counts, one key and one wrk thread each (default: 1 4 16)",
    )
    p.add_argument(
        "--configs",
        default=",".join(c.name for c in CONFIGS),
        help="comma-separated gateway configurations to try (default: "
        + ", ".join(c.name for c in CONFIGS)
        + "; also available: "
        + ", ".join(c.name for c in OPTIONAL_CONFIGS)
        + ")",
    )
    p.add_argument(
        "--share-seconds", type=int, default=8, help="seconds per share phase (default 8)"
    )
    p.add_argument(
        "--share-rounds", type=int, default=2, help="alternating share rounds (default 2)"
    )
    p.add_argument(
        "--share-connections",
        type=int,
        default=4,
        help="mining connections in the share phases (default 4)",
    )
    p.add_argument("--no-shares", action="store_true", help="skip the shares-credited phases")
    p.add_argument(
        "--pg-synchronous-commit",
        choices=("on", "off"),
        default="on",
        help="the private cluster's synchronous_commit: off is a diagnostic only (it shows "
        "what the commit's fsync costs; a PostgreSQL crash could then lose credits a client "
        "was told it has) (default: on)",
    )
    p.add_argument("--json", action="store_true", help="also print one JSON document at the end")
    p.add_argument("--keep-dir", action="store_true", help="keep the temporary directory (logs)")
    return p.parse_args()


def check_args(args: argparse.Namespace) -> str | None:
    if not 2 <= args.seconds <= 30:
        return "need 2 <= --seconds <= 30 (a signed id is valid 60 s after signing)"
    if not 1 <= args.rounds <= 10 or not 1 <= args.share_rounds <= 10:
        return "need 1 <= --rounds, --share-rounds <= 10"
    if not all(1 <= c <= 64 for c in args.connections):
        return "connections must be in 1..64"
    if not 2 <= args.share_seconds <= 30 or not 1 <= args.share_connections <= 16:
        return "need 2 <= --share-seconds <= 30 and 1 <= --share-connections <= 16"
    names = {c.name for c in (*CONFIGS, *OPTIONAL_CONFIGS)}
    unknown = [n for n in args.configs.split(",") if n not in names]
    if unknown:
        return f"unknown --configs {unknown}; known: {sorted(names)}"
    return None


def budget_for(previous: WrkResult | None, conns: int, seconds: int) -> int:
    """Bodies per connection: enough for the fastest thread, with a margin.

    Never below the prior: with ``--workers`` the kernel spreads connections over the workers
    by a hash, so one round's fastest thread can be much slower than the next round's.
    """
    rate = PRIOR_PER_CONNECTION.get(conns, PRIOR_DEFAULT)
    if previous is not None:
        rate = max(rate, previous.max_sent_per_thread / previous.seconds)
    return int(rate * seconds * BODY_MARGIN) + 200


def main() -> int:
    args = parse_args()
    problem = check_args(args)
    if problem is None and not have_wrk():
        problem = "wrk is not installed (scripts/setup.sh installs Debian's wrk)"
    if problem:
        print(problem, file=sys.stderr)
        return 2
    wanted = [c for c in (*CONFIGS, *OPTIONAL_CONFIGS) if c.name in args.configs.split(",")]
    reasons = availability(tuple(wanted))
    configs = [c for c in wanted if reasons[c.name] is None]
    for c in wanted:
        if reasons[c.name]:
            print(f"not available: {c.name}: {reasons[c.name]}", file=sys.stderr)
    wall = time.monotonic()
    fsync_before = fsync_ms(Path(tempfile.gettempdir()))
    keys = [Signer() for _ in range(max(args.connections))]
    cells: dict[tuple[str, int], Cell] = {}
    shares: dict[str, list[WrkResult]] = {}
    share_cpu: dict[str, float] = {}
    with work_dir(args.keep_dir) as tmp:
        plain = start_monerod(tmp / "plain", extra_args=UPSTREAM_LIMITS)
        paying = start_monerod(
            tmp / "paying", payment_address=TEST_ADDRESS, difficulty=DIFFICULTY,
            credits=CREDITS_PER_HASH,
        )  # fmt: skip
        cluster = None
        gateways: list[GatewayProcess] = []
        signers = ProcessPoolExecutor(os.cpu_count() or 1)
        try:
            plain.generate_blocks(20, TEST_ADDRESS)
            if any(c.store == "postgres" for c in configs):
                from tests.support.postgres import start_postgres

                cluster = start_postgres()
                if args.pg_synchronous_commit == "off":
                    cluster.psql("ALTER SYSTEM SET synchronous_commit = off")
                    cluster.psql("SELECT pg_reload_conf()")
            targets = [Target(REFERENCE, paying.url, [paying.process.pid])]
            for key in keys:
                fund(paying.url, key.public_hex, FUNDING)
            ledger_urls: dict[str, str | None] = {}
            for n, config in enumerate(configs):
                url = None
                pids = [plain.process.pid]
                if config.store == "postgres":
                    assert cluster is not None
                    url = cluster.create_database(f"calls{n}")
                    pids.append(cluster.process.pid)
                ledger_urls[config.name] = url
                gw = start_gateway(tmp, plain.url, config, url, f"gw{n}", DIFFICULTY)
                gateways.append(gw)
                for key in keys:
                    fund(gw.admin_url, key.public_hex, FUNDING)
                pids.insert(0, gw.process.pid)
                workers = "--workers" in config.flags
                targets.append(Target(config.name, gw.public_url, pids, gw.admin_url, workers))
            for conns in args.connections:
                for t in targets:
                    cells[(t.name, conns)] = Cell(t.name, conns)
            for r in range(args.rounds):
                order = targets if r % 2 == 0 else targets[::-1]
                for conns in args.connections:
                    for t in order:
                        cell = cells[(t.name, conns)]
                        previous = cell.runs[-1] if cell.runs else None
                        budget = budget_for(previous, conns, args.seconds)
                        res = phase(t, cell, keys, args.seconds, tmp, budget, signers)
                        print(
                            f"round {r + 1} {t.name} x{conns}: {res.per_second:,.0f}/s "
                            f"not-OK {res.not_ok} errors {res.errors} wrapped {res.wrapped_threads}"
                            f" wrk CPU {res.wrk_cpu_s:.2f}s"
                            + (f" sample: {res.sample}" if res.sample else ""),
                            file=sys.stderr,
                            flush=True,
                        )
            for gw in gateways:
                gw.stop()
            gateways.clear()
            if not args.no_shares:
                measure_shares(args, tmp, cluster, configs, shares, share_cpu)
        finally:
            signers.shutdown()
            for gw in gateways:
                gw.stop()
            if cluster is not None:
                cluster.stop()
            paying.stop()
            plain.stop()
    fsyncs = (fsync_before, fsync_ms(Path(tempfile.gettempdir())))
    report(args, wanted, reasons, cells, shares, share_cpu, fsyncs, time.monotonic() - wall)
    return 0


def measure_shares(
    args: argparse.Namespace,
    tmp: Path,
    cluster: Any,
    configs: list[Config],
    shares: dict[str, list[WrkResult]],
    share_cpu: dict[str, float],
) -> None:
    """Shares credited/s per configuration: fresh gateways at difficulty 1, wrk miners."""
    conns = args.share_connections
    started: list[tuple[Config, GatewayProcess, list[int]]] = []
    # Block difficulty far above 1, so no share is also a block: blocks would move the
    # chain (new jobs) and make monerod verify them, which is not what is measured here.
    upstream = start_monerod(
        tmp / "shares-upstream", fixed_difficulty=2**40, extra_args=UPSTREAM_LIMITS
    )
    plain = upstream
    try:
        for n, config in enumerate(configs):
            url = None
            pids: list[int] = [plain.process.pid]
            if config.store == "postgres":
                url = cluster.create_database(f"shares{n}")
                pids.append(cluster.process.pid)
            gw = start_gateway(tmp, plain.url, config, url, f"shares{n}", 1)
            started.append((config, gw, [gw.process.pid, *pids]))
            warm_up_verifier(gw.public_url)
        for r in range(args.share_rounds):
            order = started if r % 2 == 0 else started[::-1]
            for config, gw, pids in order:
                keys = [Signer() for _ in range(conns)]
                cookies = [job_cookie(gw.public_url, key) for key in keys]
                base = tmp / "shares"
                budget = 400 * args.share_seconds + 200  # far above ~34 H/s per core
                write_bodies(
                    base,
                    [share_bodies(k, c, budget) for k, c in zip(keys, cookies, strict=True)],
                    "/json_rpc",
                    OK_MARKER,
                )
                before = tree_cpu_s(pids)
                res = run_wrk(gw.public_url, base, conns, args.share_seconds)
                share_cpu[config.name] = share_cpu.get(config.name, 0.0) + tree_cpu_s(pids) - before
                shares.setdefault(config.name, []).append(res)
                print(
                    f"shares round {r + 1} {config.name}: {res.per_second:,.1f}/s credited, "
                    f"not-OK {res.not_ok}" + (f" sample: {res.sample}" if res.sample else ""),
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for _config, gw, _pids in started:
            gw.stop()
        upstream.stop()


def job_cookie(public_url: str, key: Signer) -> int:
    answer = json_rpc(public_url, "rpc_access_info", {"client": key.client_id()})
    result = answer.get("result") or {}
    if result.get("status") != "OK":
        raise RuntimeError(f"rpc_access_info at {public_url}: {answer}")
    return int(result["cookie"])


def warm_up_verifier(public_url: str) -> None:
    """One good share before measuring: builds the RandomX light cache (seconds of CPU)."""
    key = Signer()
    cookie = job_cookie(public_url, key)
    for n in range(1, 60):
        params = {"client": key.client_id(), "nonce": n, "cookie": cookie}
        answer = json_rpc(public_url, "rpc_access_submit_nonce", params)
        if (answer.get("result") or {}).get("status") == "OK":
            return
        time.sleep(0.5)  # the verifier may still be building its cache ("busy")
    raise RuntimeError(f"no share was credited while warming up {public_url}: {answer}")


def fsync_ms(directory: Path, count: int = 40) -> float:
    """Median time of an 8 KiB write + fdatasync in ``directory``: what a commit waits for."""
    times = []
    fd, path = tempfile.mkstemp(dir=directory, prefix="rpcpay-fsync-")
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.pwrite(fd, b"x" * 8192, 0)
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times) * 1000


def ms(value: float | None, buckets: dict[float, float]) -> str:
    """Milliseconds; a quantile inside the first bucket is shown as "<" its bound."""
    if value is None:
        return "n/a"
    first = min(buckets)
    if value <= first:
        return f"<{first * 1000:.3f}"
    return f"{value * 1000:.3f}"


def report(
    args: argparse.Namespace,
    wanted: list[Config],
    reasons: dict[str, str | None],
    cells: dict[tuple[str, int], Cell],
    shares: dict[str, list[WrkResult]],
    share_cpu: dict[str, float],
    fsyncs: tuple[float, float],
    wall_s: float,
) -> None:
    rows = []
    doc: dict[str, Any] = {"benchmark": "paid_calls_wrk", "reference": REFERENCE, "cells": []}
    for (name, conns), cell in cells.items():
        ref = cells[(REFERENCE, conns)].per_second
        wrk_cpu = sum(r.wrk_cpu_s for r in cell.runs)
        not_ok = sum(r.not_ok + r.errors for r in cell.runs)
        wrapped = sum(r.wrapped_threads for r in cell.runs)
        ratio = cell.per_second / ref if ref else float("nan")
        p50 = quantile(0.5, cell.pay_hist) if cell.hist_ok else None
        p99 = quantile(0.99, cell.pay_hist) if cell.hist_ok else None
        rows.append(
            [
                name,
                conns,
                cell.per_second,
                f"{ratio:.2f}x",
                f"{wrk_cpu / cell.seconds:.2f}",
                f"{cell.server_cpu_s / cell.seconds:.2f}",
                f"{cell.server_cpu_s / max(cell.ok, 1) * 1e6:.0f}",
                not_ok,
                wrapped,
                ms(p50, cell.pay_hist) if name != REFERENCE else "-",
                ms(p99, cell.pay_hist) if name != REFERENCE else "-",
            ]
        )
        doc["cells"].append(
            {
                "target": name,
                "connections": conns,
                "calls_per_s": round(cell.per_second, 1),
                "ratio": round(ratio, 3),
                "wrk_cores": round(wrk_cpu / cell.seconds, 3),
                "server_cores": round(cell.server_cpu_s / cell.seconds, 3),
                "not_ok": not_ok,
                "wrapped_threads": wrapped,
                "ledger_pay_p50_ms": None if p50 is None else round(p50 * 1000, 4),
                "ledger_pay_p99_ms": None if p99 is None else round(p99 * 1000, 4),
            }
        )
    rows.sort(key=lambda row: (int(str(row[1])), str(row[0]) != REFERENCE))
    print_table(
        f"Paid JSON-RPC get_info (wrk, bodies signed beforehand), {args.rounds} rounds x "
        f"{args.seconds} s alternating; ratio vs {REFERENCE} at the same connections",
        [
            "target", "conns", "calls/s", "ratio", "wrk cores", "server cores",
            "server CPU us/call", "not OK", "wrapped", "ledger p50 ms", "ledger p99 ms",
        ],
        rows,
    )  # fmt: skip
    if any(int(str(row[8])) for row in rows):
        print("  WARNING: some threads ran out of bodies and wrapped; their replays were refused")
    for config in wanted:
        if reasons[config.name]:
            print(f"  not available: {config.name}: {reasons[config.name]}")
    print(
        "  ledger p50/p99: the gateway's /metrics rpcpay_ledger_seconds{op=pay} histogram, "
        "difference over each phase, interpolated within buckets (0.1, 0.25, 0.5, 1, 2.5 ms...);"
        " with --workers summed over the workers' series, n/a if /metrics shows one worker only"
    )

    def rate(name: str, conns: int) -> float | None:
        cell = cells.get((name, conns))
        return cell.per_second if cell and cell.runs else None

    goals = [
        ("sqlite --workers 2", REFERENCE, 4, 1.2),
        ("sqlite --workers 2", REFERENCE, 16, 1.2),
        ("postgres --workers 2", REFERENCE, 16, 1.0),
        ("postgres x1", "sqlite x1", 1, 0.8),
        ("postgres x1", "sqlite x1", 4, 0.8),
        ("postgres x1", "sqlite x1", 16, 0.8),
    ]
    print("\nGoals (issue 11)")
    doc["goals"] = []
    for name, ref_name, conns, goal in goals:
        a, b = rate(name, conns), rate(ref_name, conns)
        if a is None or b is None:
            verdict = "not measured"
            text = f"  {name} / {ref_name} at {conns}: not measured (goal >= {goal}x)"
        else:
            verdict = "met" if a / b >= goal else "NOT met"
            text = f"  {name} / {ref_name} at {conns}: {a / b:.2f}x (goal >= {goal}x): {verdict}"
        print(text)
        doc["goals"].append({"text": text.strip(), "verdict": verdict})
    if shares:
        ref_runs = shares.get("sqlite x1")
        ref_rate = _rate(ref_runs) if ref_runs else None
        share_rows = []
        for name, runs in shares.items():
            r = _rate(runs)
            secs = sum(x.seconds for x in runs)
            share_rows.append(
                [
                    name,
                    r,
                    f"{r / ref_rate:.2f}x" if ref_rate else "n/a",
                    sum(x.not_ok + x.errors for x in runs),
                    f"{share_cpu[name] / secs:.2f}",
                    f"{sum(x.wrk_cpu_s for x in runs) / secs:.3f}",
                ]
            )
        print_table(
            f"Shares credited/s (difficulty 1, RandomX light-mode verification, "
            f"{args.share_connections} wrk miners, {args.share_rounds} rounds x "
            f"{args.share_seconds} s); ratio vs sqlite x1",
            ["configuration", "shares/s", "ratio", "not OK", "server cores", "wrk cores"],
            share_rows,
        )
        doc["shares"] = [
            {"configuration": r[0], "per_s": round(float(str(r[1])), 2)} for r in share_rows
        ]
    print(
        f"\ndisk: one 8 KiB write + fdatasync took {fsyncs[0]:.2f} ms (median) before the run, "
        f"{fsyncs[1]:.2f} ms after (PostgreSQL fsyncs each commit; synchronous_commit "
        f"{args.pg_synchronous_commit})"
    )
    doc["fsync_ms"] = fsyncs
    print(f"wall time {wall_s:.0f} s")
    if args.json:
        print(json.dumps(doc))


def _rate(runs: list[WrkResult]) -> float:
    seconds = sum(r.seconds for r in runs)
    return sum(r.ok for r in runs) / seconds if seconds else 0.0


if __name__ == "__main__":
    sys.exit(main())
