"""/metrics under ``--workers N``: any worker answers with every worker's series.

A scrape of the admin port reaches one worker, chosen by the kernel (SO_REUSEPORT). So that
Prometheus sees all of them on every scrape, each worker writes its own exposition, every
``SNAPSHOT_S`` seconds, to ``DIR/metrics-INDEX.prom`` (written aside, then renamed: a reader
never sees half a file), and the worker that is scraped answers with its own series rendered
fresh plus the other workers' latest files, each sample labelled ``worker="INDEX"`` and
grouped by metric family as the text format requires.

Why not prometheus-client's multiprocess mode: it keeps every value in memory-mapped files
and needs its own metric classes, where the gateway's counters are plain numbers updated on
the event loop (``metrics.LoopMetric``, a fifth of the cost per update); and it cannot sum
the gauges read at scrape time. Per-worker labels keep each worker's figures apart, which
is what an operator wants to see (is one worker's verifier queue longer?), and
``sum without (worker)`` gives the host's.

Staleness: another worker's figures are at most ``SNAPSHOT_S`` old; a worker that died
leaves its last file until its replacement overwrites it (counters then restart from zero,
which Prometheus treats as a counter reset). Cost: one exposition per worker per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from rpcpay.gateway.metrics import GatewayMetrics

SNAPSHOT_S = 1.0
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?( .*)$")


def label_worker(text: str, index: int) -> list[tuple[str, list[str]]]:
    """The exposition ``text`` as (family, lines) in order, every sample labelled with the
    worker; a family's lines are its ``# HELP``/``# TYPE`` lines, then its samples."""
    families: list[tuple[str, list[str]]] = []
    label = f'worker="{index}"'
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            # A HELP or TYPE line names its family; a new name starts a new family.
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                if not families or families[-1][0] != parts[2]:
                    families.append((parts[2], []))
                families[-1][1].append(line)
            continue
        match = _SAMPLE.match(line)
        # Only well-formed samples are passed on.
        if match is None or not families:
            continue
        name, labels, rest = match.groups()
        inner = labels[1:-1] if labels else ""
        families[-1][1].append(f"{name}{{{label}{',' + inner if inner else ''}}}{rest}")
    return families


def merge(expositions: Iterable[tuple[int, str]]) -> bytes:
    """Several workers' expositions as one, families together, samples labelled."""
    order: list[str] = []
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for index, text in expositions:
        for family, lines in label_worker(text, index):
            if family not in headers:
                order.append(family)
                headers[family] = [line for line in lines if line.startswith("#")]
                samples[family] = []
            samples[family].extend(line for line in lines if not line.startswith("#"))
    out: list[str] = []
    for family in order:
        out.extend(headers[family])
        out.extend(samples[family])
    return ("\n".join(out) + "\n").encode()


def snapshot_path(directory: Path, index: int) -> Path:
    return directory / f"metrics-{index}.prom"


def write_snapshot(directory: Path, index: int, exposition: bytes) -> None:
    """Publish one worker's exposition for the others (atomically)."""
    path = snapshot_path(directory, index)
    aside = path.with_suffix(".tmp")
    aside.write_bytes(exposition)
    os.replace(aside, path)


def read_others(directory: Path, index: int) -> list[tuple[int, str]]:
    """The other workers' latest expositions, by worker index."""
    found: list[tuple[int, str]] = []
    for path in sorted(directory.glob("metrics-*.prom")):
        try:
            other = int(path.stem.removeprefix("metrics-"))
            text = path.read_text()
        except (ValueError, OSError):
            continue
        if other != index:
            found.append((other, text))
    return found


def clear_snapshots(directory: Path) -> None:
    """Make ``directory`` and forget the files of an earlier run (the supervisor, at start)."""
    directory.mkdir(mode=0o700, exist_ok=True)
    for path in directory.glob("metrics-*"):
        with contextlib.suppress(OSError):
            path.unlink()


class WorkerMetrics(GatewayMetrics):
    """A worker's metrics: ``exposition()`` is every worker's, ``publish()`` shares its own."""

    def __init__(self, index: int, directory: Path) -> None:
        super().__init__()
        self.index = index
        self.directory = directory

    def own_exposition(self) -> bytes:
        return super().exposition()

    def exposition(self) -> bytes:
        mine = (self.index, self.own_exposition().decode())
        return merge([mine, *read_others(self.directory, self.index)])

    def publish(self) -> None:
        write_snapshot(self.directory, self.index, self.own_exposition())

    async def publish_forever(self) -> None:
        """Publish every ``SNAPSHOT_S`` seconds until cancelled."""
        while True:
            with contextlib.suppress(OSError):
                self.publish()
            await asyncio.sleep(SNAPSHOT_S)
