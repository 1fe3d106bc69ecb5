"""Shared pieces of the benchmarks: monerod and gateway processes, load loops, tables.

Everything binds to 127.0.0.1. Every load loop stops after a fixed duration *and* a fixed
maximum number of requests, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
# The monerod harness lives in tests/support; rpcpay itself comes from the venv (or src/).
for _extra in (REPO, REPO / "src"):
    if str(_extra) not in sys.path:
        sys.path.append(str(_extra))

from tests.support.monerod import (  # noqa: E402
    TEST_ADDRESS,
    MonerodProcess,
    free_port,
    start_monerod,
)

__all__ = [
    "REPO",
    "TEST_ADDRESS",
    "GatewayProcess",
    "LoadResult",
    "MonerodProcess",
    "Request",
    "free_port",
    "percentile",
    "post_json",
    "print_table",
    "run_load",
    "start_gateway_process",
    "start_monerod",
]

JSON = Any
HOST = "127.0.0.1"
#: Hard cap on requests per measured phase, whatever the duration (a bound, not a target).
MAX_REQUESTS_PER_PHASE = 2_000_000


@contextlib.contextmanager
def work_dir(keep: bool) -> Iterator[Path]:
    """A temporary directory for data and logs; removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix="rpcpay-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"logs kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def post_json(url: str, body: JSON, timeout: float = 30.0) -> JSON:
    """Blocking JSON POST (setup only, never in a measured loop)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def json_rpc(base_url: str, method: str, params: JSON | None = None) -> JSON:
    body: dict[str, JSON] = {"jsonrpc": "2.0", "id": "0", "method": method}
    if params is not None:
        body["params"] = params
    return post_json(base_url.rstrip("/") + "/json_rpc", body)


def fund(admin_url: str, public_key_hex: str, credits: int) -> int:
    """rpc_access_account on an admin endpoint (monerod's own port, or the gateway's admin)."""
    answer = json_rpc(
        admin_url, "rpc_access_account", {"client": public_key_hex, "delta_balance": credits}
    )
    result = answer.get("result")
    if not isinstance(result, dict) or result.get("status") != "OK":
        raise RuntimeError(f"rpc_access_account failed at {admin_url}: {answer}")
    return int(result.get("credits", 0))


@dataclass
class GatewayProcess:
    """``python -m rpcpay serve`` in its own process (its own event loop and cores)."""

    process: subprocess.Popen[bytes]
    public_url: str
    admin_url: str
    log_path: Path
    _log: Any = field(repr=False)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_gateway_process(
    tmp: Path,
    upstream: str,
    *,
    difficulty: int,
    credits: int,
    pow_mode: str,
    ledger_sync: str = "full",
    log_level: str = "warning",
    extra: Sequence[str] = (),
    name: str = "gateway",
) -> GatewayProcess:
    data_dir = tmp / f"{name}-data"
    log_path = tmp / f"{name}.log"
    port, admin_port = free_port(), free_port()
    while admin_port == port:
        admin_port = free_port()
    cmd = [
        sys.executable, "-m", "rpcpay", "serve",
        "--upstream", upstream,
        "--upstream-kind", "monero",
        "--rpc-payment-address", TEST_ADDRESS,
        "--rpc-payment-difficulty", str(difficulty),
        "--rpc-payment-credits", str(credits),
        "--rpc-bind-ip", HOST,
        "--rpc-bind-port", str(port),
        "--admin-bind-ip", HOST,
        "--admin-bind-port", str(admin_port),
        "--data-dir", str(data_dir),
        "--pow-mode", pow_mode,
        "--ledger-sync", ledger_sync,
        "--log-level", log_level,
        *extra,
    ]  # fmt: skip
    log = log_path.open("ab")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    gw = GatewayProcess(
        process, f"http://{HOST}:{port}", f"http://{HOST}:{admin_port}", log_path, log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            gw.stop()
            raise RuntimeError(f"gateway exited ({process.returncode}):\n{gw.log_text()[-2000:]}")
        with contextlib.suppress(OSError, ValueError):
            socket.create_connection((HOST, port), timeout=1).close()
            json_rpc(gw.admin_url, "rpc_access_data")
            return gw
        time.sleep(0.1)
    gw.stop()
    raise RuntimeError(f"gateway did not start within 60 s:\n{gw.log_text()[-2000:]}")


@dataclass
class LoadResult:
    """One measured phase."""

    target: str
    concurrency: int
    seconds: float
    ok: int
    failed: int
    per_second: float
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, JSON]:
        return asdict(self)


def combine(parts: Sequence[LoadResult]) -> LoadResult:
    """Several rounds of one target as one result (totals over total time)."""
    seconds = sum(p.seconds for p in parts)
    ok = sum(p.ok for p in parts)
    failures: dict[str, int] = {}
    for part in parts:
        for label, count in part.failures.items():
            failures[label] = failures.get(label, 0) + count
    return LoadResult(
        parts[0].target,
        parts[0].concurrency,
        seconds,
        ok,
        sum(p.failed for p in parts),
        ok / seconds if seconds else 0.0,
        failures,
    )


#: One request: (session, worker index) -> None if OK, else a short failure label.
Request = Callable[[aiohttp.ClientSession, int], Awaitable[str | None]]


async def run_load(
    target: str,
    concurrency: int,
    request: Request,
    *,
    duration: float,
    warmup: float,
    max_requests: int = MAX_REQUESTS_PER_PHASE,
) -> LoadResult:
    """``concurrency`` workers, one keep-alive connection each, looping ``request``.

    The warm-up runs first (not counted); then every answer completed inside the measured
    window counts. Stops at ``duration`` seconds or ``max_requests`` answers.
    """
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    ok = failed = 0
    failures: dict[str, int] = {}
    counting = False
    started = 0.0
    phase_end = time.monotonic() + warmup
    stop_at = phase_end + duration
    issued = 0

    async def worker(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal ok, failed, issued
        while time.monotonic() < stop_at and issued < max_requests:
            issued += 1
            try:
                outcome = await request(session, index)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                outcome = type(exc).__name__
            now = time.monotonic()
            if not counting or now > stop_at:
                continue
            if outcome is None:
                ok += 1
            else:
                failed += 1
                failures[outcome] = failures.get(outcome, 0) + 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(worker(i, session)) for i in range(concurrency)]
        await asyncio.sleep(max(0.0, phase_end - time.monotonic()))
        counting = True
        started = time.monotonic()
        await asyncio.gather(*tasks)
    elapsed = min(time.monotonic(), stop_at) - started
    total = ok + failed
    return LoadResult(
        target,
        concurrency,
        elapsed,
        ok,
        failed,
        ok / elapsed if elapsed else 0.0,
        failures if total else {},
    )


def percentile(data: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 <= q <= 1) of a non-empty sample."""
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        raw = rows[n - 1] if n else headers
        print(
            "  "
            + "  ".join(
                c.rjust(w) if n and not isinstance(v, str) else c.ljust(w)
                for c, w, v in zip(row, widths, raw, strict=True)
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)
