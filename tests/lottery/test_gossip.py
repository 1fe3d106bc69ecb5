"""Gossip batches, and the sender: batching, retry with backoff, bounded queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from rpcpay.lottery.cheque import STAMPED_CHEQUE_LENGTH
from rpcpay.lottery.gossip import (
    GOSSIP_PATH,
    MAX_BATCH,
    GossipSender,
    GossipSettings,
    join_batch,
    split_batch,
)


def wire(i: int) -> bytes:
    return i.to_bytes(2, "big") * (STAMPED_CHEQUE_LENGTH // 2)


def test_batches_round_trip_and_refuse_partial_cheques() -> None:
    batch = [wire(i) for i in range(3)]
    assert split_batch(join_batch(batch)) == batch
    for bad in (b"", b"\0" * (STAMPED_CHEQUE_LENGTH + 1), wire(0) * (MAX_BATCH + 1)):
        with pytest.raises(ValueError):
            split_batch(bad)
    with pytest.raises(ValueError):
        join_batch([])


class Peer:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.fail = 0  # answer 503 this many times first

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=503)
        self.bodies.append(await request.read())
        return web.json_response({"status": "OK"})


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, str]]:
    p = Peer()
    app = web.Application()
    app.router.add_post(GOSSIP_PATH, p.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield p, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_sender_delivers_everything_in_order_after_failures(
    peer: tuple[Peer, str],
) -> None:
    p, url = peer
    p.fail = 2
    sender = GossipSender([url], GossipSettings(first_backoff=0.01, max_backoff=0.02))
    sender.start()
    try:
        for i in range(100):
            sender.send(wire(i))
        for _ in range(500):
            if sender.pending() == 0:
                break
            await asyncio.sleep(0.01)
        got = [c for body in p.bodies for c in split_batch(body)]
        assert got == [wire(i) for i in range(100)]
        assert all(len(body) <= MAX_BATCH * STAMPED_CHEQUE_LENGTH for body in p.bodies)
    finally:
        await sender.close()


async def test_full_queue_drops_the_oldest_and_never_blocks() -> None:
    sender = GossipSender(["http://127.0.0.1:9"], GossipSettings(queue_size=3))
    for i in range(5):
        sender.send(wire(i))  # not started: nothing is sent, nothing blocks
    assert sender.pending() == 3
    assert list(sender._peers[0].queue) == [wire(2), wire(3), wire(4)]
    assert sender._peers[0].dropped == 2
