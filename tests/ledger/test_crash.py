"""SIGKILL the process mid-stream: no acknowledged credit or debit may be lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from tests.ledger.crash_worker import balance_after, client_key

WORKER = Path(__file__).with_name("crash_worker.py")
CLIENTS = 3


def run_and_kill(path: Path, sync: str, acks_before_kill: int) -> list[tuple[int, int]]:
    """Start the worker, SIGKILL it after some acknowledgements, return all it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), sync, str(CLIENTS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < acks_before_kill:
            line = proc.stdout.readline()
            assert line, f"worker exited early with {proc.wait()}"
            lines.append(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # Everything still in the pipe was acknowledged before the kill too.
    lines.extend(proc.stdout.readlines())
    proc.stdout.close()
    acks = []
    for line in lines:
        if line.endswith("\n"):
            n, balance = line.split()
            acks.append((int(n), int(balance)))
    return acks


@pytest.mark.parametrize("sync", ["full", "normal"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_acknowledged_change_lost(tmp_path: Path, sync: str, seed: int) -> None:
    path = tmp_path / "data" / "ledger.db"
    acks = run_and_kill(path, sync, random.Random(seed).randint(20, 1500))
    assert acks, "the worker acknowledged nothing"
    # The acknowledgements themselves follow the scripted sequence.
    for n, balance in acks:
        assert balance == balance_after(n // CLIENTS)
    last = acks[-1][0]
    store = SqliteLedgerStore(path)
    try:
        for c in range(CLIENTS):
            acked_k = (last - c) // CLIENTS if last >= c else -1
            stored = store.load(client_key(c))
            got = 0 if stored is None else stored.balance
            allowed = {balance_after(acked_k)}
            # The one operation in flight at the kill may or may not have been committed.
            if (last + 1) % CLIENTS == c:
                allowed.add(balance_after(acked_k + 1))
            assert got in allowed, (c, acked_k, got, allowed)
    finally:
        store.close()
