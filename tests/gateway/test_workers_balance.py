"""``rpcpay serve --workers N`` spreads kept-alive connections evenly: the supervisor accepts
and hands each to the worker with the fewest (``rpcpay.gateway.handoff``), checked on real
processes by asking the kernel which worker holds each connection and by the per-worker
/metrics."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rpcpay.testing import ToyBackend
from tests.gateway.conftest import rpc
from tests.gateway.test_workers import SlowBackend, scraped_calls, start_workers
from tests.support.gateway_process import GatewayProcess
from tests.support.tls import self_signed
from tests.support.workers import wait_for_log, wait_gone, worker_pids

pytestmark = pytest.mark.slow

ECHO = {"echo": [], "method": "eth_x"}


@pytest.fixture
async def backend() -> AsyncIterator[SlowBackend]:
    async with SlowBackend() as running:
        yield running


@dataclass
class Client:
    """One kept-alive HTTP/1.1 connection, written by hand so the test knows its local port
    (which identifies it in the kernel's socket table)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int, tls: ssl.SSLContext | None = None) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def call(
        self, method: str = "eth_x", forwarded_for: str = "", status: int = 200
    ) -> object:
        """One call's result (its whole answer if ``status`` is not 200)."""
        body = json.dumps(rpc(method, [])).encode()
        extra = f"X-Forwarded-For: {forwarded_for}\r\n".encode() if forwarded_for else b""
        self.writer.write(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)
        )
        line = await asyncio.wait_for(self.reader.readline(), 30)
        assert line.startswith(b"HTTP/1.1 %d " % status), line
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        answer = json.loads(await self.reader.readexactly(length))
        return answer["result"] if status == 200 else answer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


def holders(port: int, clients: list[Client], pids: list[int]) -> dict[int, list[Client]]:
    """Which worker (pid) holds the server side of each client's connection to ``port``."""
    by_inode: dict[str, int] = {}
    with open("/proc/net/tcp") as rows:
        next(rows)
        for row in rows:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port:
                by_inode[inode] = int(remote.rsplit(":", 1)[1], 16)
    pid_of_port: dict[int, int] = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in by_inode:
                    pid_of_port[by_inode[target[8:-1]]] = pid
    held: dict[int, list[Client]] = {pid: [] for pid in pids}
    for client in clients:
        held[pid_of_port[client.local_port]].append(client)
    return held


async def settled_holders(
    gateway: GatewayProcess, clients: list[Client], pids: list[int]
) -> dict[int, list[Client]]:
    """``holders`` once every connection has reached its worker (a hand-over takes a moment)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await asyncio.to_thread(holders, gateway.port, clients, pids)
        except KeyError:
            assert time.monotonic() < deadline, "a connection reached no worker"
            await asyncio.sleep(0.05)


def counts(held: dict[int, list[Client]]) -> list[int]:
    return sorted(len(clients) for clients in held.values())


async def open_and_call(port: int, count: int, calls: int) -> list[Client]:
    clients = list(await asyncio.gather(*(Client.open(port) for _ in range(count))))
    for _ in range(calls):
        assert await asyncio.gather(*(client.call() for client in clients)) == [ECHO] * count
    return clients


async def test_keep_alive_connections_are_split_evenly_and_refill_the_emptier_worker(
    backend: SlowBackend, tmp_path: Path
) -> None:
    gateway = await start_workers(backend, tmp_path / "gw")
    pids = worker_pids(gateway.process.pid)
    clients: list[Client] = []
    try:
        # Four connections, three calls each: two connections and six calls per worker.
        clients = await open_and_call(gateway.port, 4, 3)
        assert counts(await settled_holders(gateway, clients, pids)) == [2, 2]
        await asyncio.sleep(1.5)  # the metrics files are written every second
        assert await scraped_calls(gateway.admin_port) == {"0": 6.0, "1": 6.0}
        # Then sixteen: eight each.
        await asyncio.gather(*(client.close() for client in clients))
        clients = await open_and_call(gateway.port, 16, 2)
        held = await settled_holders(gateway, clients, pids)
        assert counts(held) == [8, 8]
        # One worker's clients leave; once it has said so, every new connection goes to it
        # (round-robin would split them 4/4).
        emptied, kept = pids
        await asyncio.gather(*(client.close() for client in held[emptied]))
        clients = held[kept]
        await asyncio.sleep(0.5)
        clients += await open_and_call(gateway.port, 8, 1)
        held = await settled_holders(gateway, clients, pids)
        assert {pid: len(held[pid]) for pid in pids} == {emptied: 8, kept: 8}
        # The supervisor holds no copy of a handed connection, and nothing else can join the
        # public port (it is not SO_REUSEPORT).
        assert sum(counts(held)) == 16
        with socket.socket() as intruder:
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError) as refused:
                intruder.bind(("127.0.0.1", gateway.port))
            assert refused.value.errno == errno.EADDRINUSE
    finally:
        await asyncio.gather(*(client.close() for client in clients))
        gateway.stop()
    assert "Traceback" not in gateway.log_text()


async def test_workers_terminate_tls_and_see_the_client_on_handed_connections(
    backend: SlowBackend, tmp_path: Path
) -> None:
    cert, key = await asyncio.to_thread(self_signed, tmp_path / "tls")
    access_log = tmp_path / "access.jsonl"
    gateway = await start_workers(
        backend, tmp_path / "gw", "--rpc-ssl-certificate", str(cert),
        "--rpc-ssl-private-key", str(key), "--access-log", str(access_log),
        "--trusted-proxy", "127.0.0.1/32",
    )  # fmt: skip
    pids = worker_pids(gateway.process.pid)
    trusted = ssl.create_default_context(cafile=str(cert))
    clients: list[Client] = []
    try:
        # A client that speaks plain HTTP to the TLS port is cut off, and harms nobody.
        plain = await Client.open(gateway.port)
        plain.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(plain.reader.read(), 10) == b""
        await plain.close()
        clients = list(
            await asyncio.gather(*(Client.open(gateway.port, trusted) for _ in range(4)))
        )
        for _ in range(2):
            assert await asyncio.gather(*(client.call() for client in clients)) == [ECHO] * 4
        # Behind a trusted proxy (the handed socket's peer is 127.0.0.1), the forwarded
        # address is the client's: not loopback, so not free.
        refused = await clients[0].call(forwarded_for="203.0.113.7", status=402)
        assert isinstance(refused, dict) and "error" in refused, refused
        assert counts(await settled_holders(gateway, clients, pids)) == [2, 2]
    finally:
        await asyncio.gather(*(client.close() for client in clients))
        gateway.stop()
    assert "Traceback" not in gateway.log_text()
    # Both workers wrote their lines (flushed as they stopped) to the one access log.
    lines = [json.loads(line) for line in access_log.read_text().splitlines()]
    assert sorted(line["addr"] for line in lines) == ["127.0.0.1"] * 8 + ["203.0.113.7"]


async def test_connections_wait_in_the_queue_while_every_worker_restarts(
    backend: ToyBackend, tmp_path: Path
) -> None:
    gateway = await start_workers(backend, tmp_path / "gw")
    try:
        pids = worker_pids(gateway.process.pid)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert await asyncio.to_thread(wait_gone, pids, 10) == []
        # No worker is ready: the supervisor stops accepting, so this connection waits in
        # the kernel's queue and is served by the first worker back, not refused.
        client = await Client.open(gateway.port)
        try:
            assert await client.call() == ECHO
        finally:
            await client.close()
        assert len(await asyncio.to_thread(wait_for_log, gateway, "worker died; restarting", 2))
    finally:
        gateway.stop()
    assert gateway.process.returncode == 0


async def test_sigterm_refuses_new_connections_while_workers_drain_theirs(
    backend: SlowBackend, tmp_path: Path
) -> None:
    gateway = await start_workers(backend, tmp_path / "gw")
    clients: list[Client] = []
    try:
        clients = await open_and_call(gateway.port, 4, 1)
        calls = [asyncio.create_task(client.call("slow")) for client in clients]
        while len(backend.requests) < 8:
            await asyncio.sleep(0.05)
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(wait_for_log, gateway, "stopping workers")
        # The listener is closed first; the calls the workers hold are still answered.
        with pytest.raises(ConnectionRefusedError):
            await Client.open(gateway.port)
        assert await asyncio.gather(*calls) == [{"echo": [], "method": "slow"}] * 4
        assert await asyncio.to_thread(gateway.process.wait, 30) == 0
    finally:
        await asyncio.gather(*(client.close() for client in clients))
        gateway.stop()
