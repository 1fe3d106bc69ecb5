"""Looking inside ``rpcpay serve --workers N`` from a test: its worker processes, which of
them holds each connection, and its log.

``connections_by_pid`` asks the kernel which process holds the server side of each
established connection on a port (``/proc/net/tcp`` for the socket inodes, ``/proc/PID/fd``
for their owners), so a test sees how real connections were spread, without any
help from the gateway.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tests.support.gateway_process import GatewayProcess

_ESTABLISHED = "01"


def worker_pids(supervisor_pid: int) -> list[int]:
    """The supervisor's child processes (its workers), by pid."""
    children: list[int] = []
    for task in Path(f"/proc/{supervisor_pid}/task").iterdir():
        text = (task / "children").read_text()
        children.extend(int(pid) for pid in text.split())
    return sorted(children)


def log_entries(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """The JSON log lines written so far (other lines skipped)."""
    entries = []
    for line in gateway.log_text().splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def wait_for_log(
    gateway: GatewayProcess, msg: str, count: int = 1, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Wait until ``count`` log lines say ``msg``; those lines (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [entry for entry in log_entries(gateway) if entry.get("msg") == msg]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{count} x {msg!r} not logged in {timeout} s: {gateway.log_text()[-3000:]}"
            )
        time.sleep(0.1)


def _server_inodes(port: int) -> set[str]:
    """Inodes of established sockets whose local port is ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def connections_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """How many established connections to ``port`` each of ``pids`` holds."""
    inodes = _server_inodes(port)
    held: dict[int, int] = {}
    for pid in pids:
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
        held[pid] = count
    return held


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` s for ``pids`` to exit; those still running."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        if alive:
            time.sleep(0.1)
    return alive


def _running(pid: int) -> bool:
    """Whether any thread of ``pid`` is still alive: a killed process's main thread is a
    zombie before its other threads have exited, and its files close with the last one."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            return True
    return False
