"""Jobs from a real monerod's block template, paying the operator's address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from rpcpay.errors import UpstreamError
from rpcpay.gateway.jobs import ChainTop, Job, block_with_nonce, personalise_template
from rpcpay.gateway.upstream import Upstream, json_rpc, post_json
from rpcpay.wire.block import parse_block

log = logging.getLogger("rpcpay.jobs")

TEMPLATE_MAX_AGE_S = 10.0
RESERVE_SIZE = 4
T = TypeVar("T")
INTERNAL_TIMEOUT_S = 3.0
"""Bound on each of our own upstream calls (top poll, template, block submission): a monerod
answers them in milliseconds, and a hung one must not hold up a job or a shutdown."""
TEMPLATE_WAIT_S = 1.0
"""How long a client waits for a template being fetched before it gets a job from the last
good one (a template older than ``TEMPLATE_MAX_AGE_S`` or for the previous top still makes
valid shares; only a found block would not be accepted)."""


async def _bounded(call: Awaitable[T], what: str) -> T:
    """``call`` within ``INTERNAL_TIMEOUT_S``; a timeout becomes an ``UpstreamError``."""
    try:
        return await asyncio.wait_for(call, INTERNAL_TIMEOUT_S)
    except TimeoutError as exc:
        raise UpstreamError(f"upstream {what} took over {INTERNAL_TIMEOUT_S:g} s") from exc


@dataclass(frozen=True, slots=True)
class _Template:
    blob: bytes
    reserved_offset: int
    height: int
    prev_hash: str
    seed_hash: bytes
    seed_height: int
    next_seed_hash: bytes | None
    difficulty: int
    timestamp: int
    fetched_at: float


def _hex32(value: object, name: str) -> bytes:
    # Hashes from the upstream must be 32 bytes of hex.
    if not isinstance(value, str) or len(value) != 64:
        raise UpstreamError(f"upstream template has a bad {name}")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise UpstreamError(f"upstream template has a bad {name}") from exc


def _consume_error(task: asyncio.Task[_Template]) -> None:
    """Mark a background fetch's failure as seen (callers that waited got it already)."""
    if not task.cancelled():
        task.exception()


POLL_BACKOFF_MAX_S = 30.0
"""The longest wait between polls of a down upstream."""


def next_poll_delay(interval_s: float, failures: int) -> float:
    """Seconds before the next poll after ``failures`` failures in a row: doubling from the
    poll interval, capped at ``POLL_BACKOFF_MAX_S``."""
    return min(POLL_BACKOFF_MAX_S, interval_s * float(2 ** min(failures, 16)))


class MonerodJobSource:
    """Follows a monerod's chain top and makes per-client jobs from one shared template.

    monerod builds a whole block template per client; we fetch one per new top (or every
    ``TEMPLATE_MAX_AGE_S``) and personalise it, which costs a few Keccak hashes instead of a
    template per client — a flood of new client ids cannot make the upstream build templates.

    A hung upstream stalls nothing: every call of ours is bounded by ``INTERNAL_TIMEOUT_S``,
    one fetch at a time runs as a task that nobody holds a lock across, and while it is late
    (``TEMPLATE_WAIT_S``) or failed, jobs come from the last good template.
    """

    def __init__(
        self, upstream: Upstream, payment_address: str, *, poll_interval_s: float = 1.0
    ) -> None:
        self._upstream = upstream
        self._address = payment_address
        self._poll_interval = poll_interval_s
        self._top: ChainTop | None = None
        self._template: _Template | None = None
        self._fetching: asyncio.Task[_Template] | None = None
        self._poller: asyncio.Task[None] | None = None
        self.blocks_found = 0

    async def start(self) -> None:
        await self._refresh_top()
        self._poller = asyncio.create_task(self._poll(), name="rpcpay-top-poller")

    async def close(self) -> None:
        for task in (self._poller, self._fetching):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, UpstreamError):
                    await task

    async def _poll(self) -> None:
        delay = self._poll_interval
        failures = 0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._refresh_top()
            except UpstreamError as exc:
                failures += 1
                # A down upstream is asked less and less often (and logged as often).
                delay = next_poll_delay(self._poll_interval, failures)
                log.warning(
                    "top poll failed",
                    extra={"error": str(exc), "failures": failures, "retry_in_s": delay},
                )
                continue
            if failures:
                log.info("upstream answers again", extra={"failures": failures})
            failures, delay = 0, self._poll_interval

    async def _refresh_top(self) -> ChainTop:
        answer = await _bounded(post_json(self._upstream, "/get_height", {}), "/get_height")
        height, top_hash = answer.get("height"), answer.get("hash")
        # /get_height answers the chain height and the top block's hash.
        if not isinstance(height, int) or not isinstance(top_hash, str):
            raise UpstreamError("upstream /get_height answered no height/hash")
        top = ChainTop(height, top_hash)
        if self._top is None or top.top_hash != self._top.top_hash:
            log.info("new chain top", extra={"height": height, "top_hash": top_hash})
        self._top = top
        return top

    async def top(self) -> ChainTop:
        if self._top is None:
            return await self._refresh_top()
        return self._top

    async def _fresh_template(self) -> _Template:
        top = await self.top()
        cached = self._template
        # A template for the current top, young enough, is used as it is.
        if (
            cached is not None
            and cached.prev_hash == top.top_hash
            and time.monotonic() - cached.fetched_at < TEMPLATE_MAX_AGE_S
        ):
            return cached
        task = self._fetching
        if task is None or task.done():
            task = asyncio.create_task(self._fetch_template(), name="rpcpay-template")
            task.add_done_callback(_consume_error)
            self._fetching = task
        # Only an aged template for the same top: renew it in the background, don't wait.
        if cached is not None and cached.prev_hash == top.top_hash:
            return cached
        try:
            return await asyncio.wait_for(asyncio.shield(task), TEMPLATE_WAIT_S)
        except (TimeoutError, UpstreamError) as exc:
            # No template at all yet: nothing to fall back on.
            if cached is None:
                raise UpstreamError(f"no block template yet: {exc}") from exc
            log.warning("block template late; jobs from the last one", extra={"error": str(exc)})
            return cached

    async def _fetch_template(self) -> _Template:
        result = await _bounded(
            json_rpc(
                self._upstream,
                "get_block_template",
                {"wallet_address": self._address, "reserve_size": RESERVE_SIZE},
            ),
            "get_block_template",
        )
        try:
            blob = bytes.fromhex(result["blocktemplate_blob"])
            next_seed = result.get("next_seed_hash") or ""
            template = _Template(
                blob=blob,
                reserved_offset=int(result["reserved_offset"]),
                height=int(result["height"]),
                prev_hash=str(result["prev_hash"]),
                seed_hash=_hex32(result["seed_hash"], "seed_hash"),
                seed_height=int(result["seed_height"]),
                next_seed_hash=_hex32(next_seed, "next_seed_hash") if next_seed else None,
                difficulty=int(result["difficulty"]),
                timestamp=parse_block(blob).timestamp,
                fetched_at=time.monotonic(),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise UpstreamError("upstream get_block_template answer is malformed") from exc
        self._template = template
        return template

    async def new_job(self, client: bytes, min_timestamp: int) -> Job:
        template = await self._fresh_template()
        timestamp = max(template.timestamp, min_timestamp)
        _, hashing_blob = personalise_template(
            template.blob, template.reserved_offset, client, timestamp
        )
        return Job(
            hashing_blob=hashing_blob,
            template_blob=template.blob,
            reserved_offset=template.reserved_offset,
            height=template.height,
            seed_hash=template.seed_hash,
            seed_height=template.seed_height,
            next_seed_hash=template.next_seed_hash,
            network_difficulty=template.difficulty,
            timestamp=timestamp,
            top_hash=template.prev_hash,
        )

    async def submit_block(self, job: Job, client: bytes, nonce: int) -> bool:
        blob = block_with_nonce(job, client, nonce)
        try:
            await _bounded(json_rpc(self._upstream, "submit_block", [blob.hex()]), "submit_block")
        except UpstreamError as exc:
            log.error("block not accepted", extra={"height": job.height, "error": str(exc)})
            return False
        self.blocks_found += 1
        log.info("block found by rpc client", extra={"height": job.height})
        try:
            await self._refresh_top()
        except UpstreamError as exc:  # the poller will learn the new top
            log.warning("top refresh failed", extra={"error": str(exc)})
        return True
