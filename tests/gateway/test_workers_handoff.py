"""``rpcpay.gateway.handoff.Balancer`` on real sockets in one process: the test plays the
workers' ends of their socket pairs and receives the handed descriptors itself."""

from __future__ import annotations

import asyncio
import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from rpcpay.gateway.handoff import READY, REPORT, Balancer, Link, lifeline_pair


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def ready_worker(balancer: Balancer, index: int) -> tuple[Link, socket.socket]:
    """A worker's end that has said READY, and the supervisor's link to it."""
    mine, theirs = lifeline_pair()
    link = Link(index, mine)
    balancer.attach(link)
    theirs.sendall(READY)
    await asyncio.wait_for(link.ready.wait(), 5)
    return link, theirs


def received(theirs: socket.socket) -> list[socket.socket]:
    """The sockets handed to a worker so far."""
    theirs.setblocking(False)
    got = []
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(theirs, 16, 1)
        except BlockingIOError:
            return got
        got.extend(socket.socket(fileno=fd) for fd in fds)


def peek(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


async def accepted(balancer: Balancer, ends: list[socket.socket], count: int) -> list[int]:
    """Connect ``count`` clients to the listener; how many each worker was handed."""
    port = balancer.listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    handed: list[list[socket.socket]] = [[] for _ in ends]
    for _ in range(100):
        await asyncio.sleep(0.02)
        for n, end in enumerate(ends):
            handed[n] += received(end)
        if sum(map(len, handed)) == count:
            break
    # The descriptors are the clients' connections: a byte sent arrives on one of them.
    clients[0].sendall(b"x")
    await asyncio.sleep(0.05)
    every = [sock for socks in handed for sock in socks]
    assert [peek(sock) for sock in every].count(b"x") == 1
    for sock in [*clients, *every]:
        sock.close()
    return [len(h) for h in handed]


async def test_connections_alternate_then_go_to_the_worker_with_fewest() -> None:
    balancer = Balancer(listener())
    (a, a_end), (b, b_end) = [await ready_worker(balancer, n) for n in range(2)]
    try:
        assert await accepted(balancer, [a_end, b_end], 4) == [2, 2]
        assert (a.load, b.load) == (2, 2)
        # Worker 0 reports that it received 2 and holds none now: the next 3 all go to it...
        a_end.sendall(REPORT + struct.pack("<QQ", 2, 0))
        await asyncio.sleep(0.05)
        assert await accepted(balancer, [a_end, b_end], 3) == [2, 1]
        assert (a.load, b.load) == (2, 3)
    finally:
        balancer.close()
        for sock in (a_end, b_end):
            sock.close()


async def test_a_dead_worker_gets_nothing_and_none_ready_means_the_queue_waits() -> None:
    balancer = Balancer(listener())
    port = balancer.listener.getsockname()[1]
    (a, a_end), (b, b_end) = [await ready_worker(balancer, n) for n in range(2)]
    try:
        a_end.close()
        await asyncio.wait_for(a.gone.wait(), 5)
        assert await accepted(balancer, [b_end], 3) == [3]
        b_end.close()
        await asyncio.wait_for(b.gone.wait(), 5)
        # No worker ready: the connection is queued by the kernel, not accepted and dropped.
        waiting = socket.create_connection(("127.0.0.1", port))
        await asyncio.sleep(0.1)
        assert balancer.dropped == 0 and not balancer.accepting
        c, c_end = await ready_worker(balancer, 0)
        await asyncio.sleep(0.1)
        assert len(received(c_end)) == 1 and c.load == 1
        waiting.close()
        c_end.close()
    finally:
        balancer.close()


async def test_a_worker_that_stopped_reading_is_skipped() -> None:
    balancer = Balancer(listener())
    (a, a_end), (b, b_end) = [await ready_worker(balancer, n) for n in range(2)]
    a.channel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    spare = socket.socket()
    handed = 0
    try:
        # Fill worker 0's pair (it never reads) with handed sockets.
        while True:
            try:
                socket.send_fds(a.channel, [b"h"], [spare.fileno()])
            except BlockingIOError:
                break
            handed += 1
        a.sent += handed
        b.reported_received = b.reported_open = 0
        b.sent = handed + 5  # worker 1 looks fuller, yet it is the only one that can take it
        assert await accepted(balancer, [b_end], 2) == [2]
        assert balancer.dropped == 0
    finally:
        balancer.close()
        spare.close()
        for sock in (a_end, b_end):
            sock.close()


@given(st.lists(st.integers(0, 50), min_size=1, max_size=8), st.integers(0, 200))
def test_handing_out_keeps_the_workers_within_one_of_each_other(
    reported: list[int], count: int
) -> None:
    # The least-loaded rule alone (no sockets): each connection goes to a minimum.
    links = [Link(n, socket.socket(), reported_open=o) for n, o in enumerate(reported)]
    balancer = Balancer(socket.socket(), links=list(links))
    try:
        for _ in range(count):
            chosen = balancer.candidates()[0]
            assert chosen.load == min(link.load for link in links)
            chosen.sent += 1
            balancer.cursor = chosen.index + 1
        loads = [link.load for link in links]
        assert sum(loads) == sum(reported) + count
        assert max(loads) - min(loads) <= max(1, max(reported) - min(reported))
    finally:
        for link in links:
            link.channel.close()
        balancer.listener.close()
