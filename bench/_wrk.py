"""wrk as a load generator that costs the servers nothing, and CPU accounting around it.

Bodies are written to files *before* a phase (one file per wrk thread, one connection per
thread, so each thread can own one client key and send its timestamps in order); during the
phase the only client-side work is wrk's C event loop and a few Lua lines per request. The
Lua side is ``prepared_bodies.lua``: it sends a thread's lines in order, counts the answers
that carry the expected marker, and says if a thread ran out of bodies and wrapped (a
wrapped run re-sends used bodies, which a paying server must refuse).

CPU is read from ``/proc``: a server's CPU is the sum over its process tree (utime + stime of
the live processes plus what their reaped children used), and wrk's own CPU comes from
``RUSAGE_CHILDREN`` around its run.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("prepared_bodies.lua")
_TICK = os.sysconf("SC_CLK_TCK")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def write_bodies(
    base: Path, per_thread: Sequence[Iterable[str]], path: str, marker: str, first: int = 0
) -> None:
    """``base.N`` for thread N (from ``first``): the marker line, then one ``PATH<TAB>BODY``
    line per body."""
    for n, bodies in enumerate(per_thread, start=first):
        with open(f"{base}.{n}", "w") as out:
            out.write(marker + "\n")
            for body in bodies:
                out.write(f"{path}\t{body}\n")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: answers counted by kind, latency, and wrk's own CPU."""

    seconds: float
    ok: int
    not_ok: int
    errors: int
    wrapped_threads: int
    max_sent_per_thread: int
    p50_ms: float
    p99_ms: float
    wrk_cpu_s: float
    sample: str

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def run_wrk(url: str, base: Path, connections: int, seconds: int) -> WrkResult:
    """wrk with one thread per connection (thread N sends ``base.N``), bounded in time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "wrk",
            f"-t{connections}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            str(base),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    match = re.search(r"^RESULT (.*)$", out.stdout, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    fields = dict(kv.split("=", 1) for kv in match.group(1).split())
    sample = re.search(r"^SAMPLE (.*)$", out.stdout, re.M)
    return WrkResult(
        seconds=int(fields["duration_us"]) / 1e6,
        ok=int(fields["ok"]),
        not_ok=int(fields["not_ok"]),
        errors=int(fields["errors"]),
        wrapped_threads=int(fields["wrapped"]),
        max_sent_per_thread=int(fields["max_sent"]),
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        wrk_cpu_s=cpu,
        sample=sample.group(1)[:300] if sample else "",
    )


def start_wrk(
    url: str, script: Path, threads: int, connections: int, seconds: float, *script_args: str
) -> subprocess.Popen[str]:
    """wrk running ``script`` in the background (read its output with ``communicate``)."""
    return subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s",
         "-s", str(script), url, "--", *script_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def parse_result(output: str) -> dict[str, int]:
    """The ``RESULT k=v ...`` line a bench's Lua script prints at the end, as integers."""
    match = re.search(r"RESULT (.*)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    return {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) one process has used so far (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _own_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14-17 of stat (utime, stime, cutime, cstime), counted after the ")".
    return sum(int(f) for f in fields[11:15]) / _TICK


def tree_cpu_s(roots: Iterable[int]) -> float:
    """CPU seconds used so far by these processes and all their descendants."""
    tree = _children()
    seen: set[int] = set()
    stack = list(roots)
    total = 0.0
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _own_cpu_s(pid)
        stack.extend(tree.get(pid, ()))
    return total
