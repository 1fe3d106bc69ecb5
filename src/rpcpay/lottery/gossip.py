"""Payee-to-payee gossip of stamped cheques (docs/lottery.md §16).

The wire is as small as it can be: ``POST /lottery/gossip`` with a body that is the
concatenation of 1 to ``MAX_BATCH`` cheques in their 274-byte wire form
(``encode_stamped``), ``application/octet-stream``. The receiver answers
``{"held": n, "fraud": k}``. Every cheque carries its domain and both signatures, so
a receiver trusts nothing about the sender: it verifies each cheque itself.

``GossipSender`` sends each accepted cheque to every configured peer from a bounded
queue per peer, batching what has queued up, retrying a failed batch with exponential
backoff. It never blocks the caller: a full queue drops its oldest cheque (and logs
it). Cheques are not forwarded further: peers are a full mesh, each payee gossips what
it was paid itself, and forwards the two halves of any fraud pair it finds.

Peers come from three places (docs/lottery.md §16): ``--gossip-peer`` (configured), a
peer's ``lottery_info`` (``gossip_url``, its own public URL), and gossip itself: a
sender names its public URL in the ``Rpcpay-Gossip-From`` header, and a receiver adds
it (``add_peer``) once that URL's ``lottery_info`` shows the same chain and contract,
so a mesh becomes symmetric without configuring both ends. Gossip is on whenever a
gateway has a peer; ``MAX_PEERS`` bounds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from rpcpay.lottery.cheque import STAMPED_CHEQUE_LENGTH

__all__ = [
    "FROM_HEADER",
    "GOSSIP_PATH",
    "MAX_BATCH",
    "MAX_PEERS",
    "GossipSender",
    "GossipSettings",
    "join_batch",
    "split_batch",
]

log = logging.getLogger("rpcpay.gossip")

GOSSIP_PATH = "/lottery/gossip"
FROM_HEADER = "Rpcpay-Gossip-From"
"""The sender's public URL (optional): how receivers learn their peers."""
MAX_PEERS = 32
"""Peers one gateway gossips to, configured and learnt together."""
MAX_BATCH = 64
"""Cheques per gossip request (17.5 KB)."""


def join_batch(cheques: list[bytes]) -> bytes:
    """The body of one gossip request."""
    # Each cheque is one wire form, and a batch holds 1..MAX_BATCH of them.
    if not 1 <= len(cheques) <= MAX_BATCH or any(len(c) != STAMPED_CHEQUE_LENGTH for c in cheques):
        raise ValueError(f"a gossip batch is 1-{MAX_BATCH} wire-form cheques")
    return b"".join(cheques)


def split_batch(body: bytes) -> list[bytes]:
    """The cheques in a gossip body; ``ValueError`` unless it is 1..MAX_BATCH whole ones."""
    count, rest = divmod(len(body), STAMPED_CHEQUE_LENGTH)
    # The body is whole cheques, at least one and at most a batch.
    if rest or not 1 <= count <= MAX_BATCH:
        raise ValueError(
            f"a gossip body is 1-{MAX_BATCH} cheques of {STAMPED_CHEQUE_LENGTH} bytes, "
            f"got {len(body)} bytes"
        )
    n = STAMPED_CHEQUE_LENGTH
    return [body[i * n : (i + 1) * n] for i in range(count)]


def peer_name(url: str) -> str:
    """``scheme://host:port`` of a peer URL, for logs (no paths or credentials)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"


@dataclass(frozen=True, slots=True)
class GossipSettings:
    """Queue bound per peer, and the retry backoff (seconds)."""

    queue_size: int = 4096
    first_backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 10.0


@dataclass
class _Peer:
    url: str
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    dropped: int = 0


class GossipSender:
    """Sends accepted cheques to peers in the background (see the module docstring)."""

    def __init__(
        self,
        peers: list[str],
        settings: GossipSettings | None = None,
        self_url: str | None = None,
    ) -> None:
        self.settings = settings or GossipSettings()
        self.self_url = self_url.rstrip("/") if self_url else None
        self._peers: list[_Peer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        for url in peers:
            self.add_peer(url)

    def peer_urls(self) -> list[str]:
        """The public URLs gossiped to (configured and learnt)."""
        return [p.url.removesuffix(GOSSIP_PATH) for p in self._peers]

    def add_peer(self, url: str) -> bool:
        """Gossip to ``url`` from now on; False if known, ourselves, or ``MAX_PEERS`` reached."""
        base = url.rstrip("/")
        # A peer once, never ourselves, and never more than the bound.
        if base == self.self_url or base in self.peer_urls() or len(self._peers) >= MAX_PEERS:
            return False
        peer = _Peer(base + GOSSIP_PATH)
        self._peers.append(peer)
        if self._started:
            self._run_peer(peer)
        return True

    def start(self) -> None:
        """Start one sending task per peer (on the running loop); peers added later start
        when added."""
        self._started = True
        for peer in self._peers:
            self._run_peer(peer)

    def _run_peer(self, peer: _Peer) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
            )
        self._tasks.append(asyncio.create_task(self._run(peer), name="rpcpay-gossip"))

    def send(self, wire: bytes) -> None:
        """Queue one cheque for every peer; never blocks, drops the oldest when full."""
        for peer in self._peers:
            # A full queue loses its oldest cheque rather than holding up a paid call.
            if len(peer.queue) >= self.settings.queue_size:
                peer.queue.popleft()
                peer.dropped += 1
                log.warning(
                    "gossip queue full, dropped a cheque", extra={"peer": peer_name(peer.url)}
                )
            peer.queue.append(wire)
            peer.wake.set()

    def pending(self) -> int:
        """Cheques queued and not yet delivered, over all peers."""
        return sum(len(p.queue) for p in self._peers)

    async def _run(self, peer: _Peer) -> None:
        backoff = self.settings.first_backoff
        while True:
            # Sleep until something is queued.
            if not peer.queue:
                peer.wake.clear()
                await peer.wake.wait()
                continue
            batch = [peer.queue[i] for i in range(min(MAX_BATCH, len(peer.queue)))]
            if await self._post(peer, batch):
                for _ in batch:
                    peer.queue.popleft()
                peer.sent += len(batch)
                backoff = self.settings.first_backoff
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.max_backoff)

    @property
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/octet-stream"}
        if self.self_url is not None:
            headers[FROM_HEADER] = self.self_url
        return headers

    async def _post(self, peer: _Peer, batch: list[bytes]) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(
                peer.url,
                data=join_batch(batch),
                headers=self._headers,
            ) as response:
                await response.read()
                # Only a 200 means the peer took the batch; anything else is retried.
                if response.status == 200:
                    return True
                log.warning(
                    "gossip refused",
                    extra={"peer": peer_name(peer.url), "status": response.status},
                )
                return False
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info(
                "gossip peer unreachable", extra={"peer": peer_name(peer.url), "error": str(exc)}
            )
            return False

    async def close(self) -> None:
        """Stop sending (what is still queued is dropped: gossip is best effort)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._started = False
        if self._session is not None:
            await self._session.close()
            self._session = None
