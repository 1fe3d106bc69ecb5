"""The payment side of the gateway: jobs, shares and charges, over the ledger.

``PaymentService`` implements monerod 0.18's rpc_access_info, rpc_access_submit_nonce,
rpc_access_pay and check_payment with the same decisions, codes and penalties, and adds what
monerod lacks: hashing off the event loop, budgets for bad shares and new ids, and a ledger
that keeps every credit it reported across crashes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rpcpay.errors import UpstreamError, VerifierBusy
from rpcpay.gateway.id_cache import VerifiedIds
from rpcpay.gateway.jobs import JobSource
from rpcpay.gateway.limits import AbuseGuard
from rpcpay.gateway.protocol import (
    ERROR_INTERNAL,
    ERROR_INVALID_CLIENT,
    ERROR_PAYMENT_TOO_LOW,
    ERROR_RATE_LIMITED,
    ERROR_STALE_CLIENT_ID,
    MESSAGE_BAD_HASH,
    MESSAGE_INVALID_CLIENT,
    MESSAGE_STALE_CLIENT_ID,
    STATUS_OK,
    STATUS_PAYMENT_REQUIRED,
    RpcFault,
    signature_status,
)
from rpcpay.gateway.sessions import ClientSession, SessionTable
from rpcpay.gateway.shares import VERDICT_ERRORS, Admission, Verdict, admit_share
from rpcpay.gateway.tracking import HashRate
from rpcpay.ledger.account import U64_MAX, ShareOutcome
from rpcpay.ledger.ledger import Ledger
from rpcpay.pow.difficulty import check_hash
from rpcpay.wire.block import set_nonce
from rpcpay.wire.client_id import ClientAuth

log = logging.getLogger("rpcpay.payment")

U32 = 0xFFFFFFFF


class Hasher(Protocol):
    """Computes a PoW hash off the event loop (``rpcpay.pow.verifier.ShareVerifier``)."""

    async def hash(self, seed_hash: bytes, blob: bytes) -> bytes: ...

    async def prepare(self, seed_hash: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    """The operator's terms: difficulty per share and credits per share."""

    difficulty: int = 1000
    credits_per_hash_found: int = 100
    allow_free_loopback: bool = False


@dataclass(frozen=True, slots=True)
class Charge:
    """The outcome of charging a call. ``ok`` False means: answer ``status``, don't forward."""

    ok: bool
    status: str
    credits: int
    top_hash: str
    client: bytes | None = None
    amount: int = 0
    timestamp_us: int = 0


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (and v4-mapped loopback)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


_OUTCOMES = {
    Verdict.VERY_STALE: ShareOutcome.STALE,
    Verdict.STALE: ShareOutcome.STALE,
    Verdict.DUPLICATE: ShareOutcome.DUPE,
}


class PaymentService:
    """Everything the gateway does with money, independent of HTTP."""

    def __init__(
        self,
        settings: PaymentSettings,
        ledger: Ledger,
        jobs: JobSource,
        hasher: Hasher,
        guard: AbuseGuard,
        *,
        sessions: SessionTable | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.jobs = jobs
        self._hasher = hasher
        self._guard = guard
        self.sessions = sessions if sessions is not None else SessionTable()
        self._clock = clock
        self.hashrate = HashRate()
        self.blocks_found = 0
        self._warmed: set[bytes] = set()
        self._warming: set[asyncio.Task[None]] = set()
        self._ids = VerifiedIds()

    def warm_seed(self, seed_hash: bytes | None) -> None:
        """Start building a seed's RandomX cache (and dataset) in the background, once, so
        the first share of a new seed does not wait for it."""
        if seed_hash is None or seed_hash in self._warmed:
            return
        if len(self._warmed) > 8:
            self._warmed.clear()
        self._warmed.add(seed_hash)
        task = asyncio.create_task(self._warm(seed_hash), name="rpcpay-warm-seed")
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _warm(self, seed_hash: bytes) -> None:
        try:
            await self._hasher.prepare(seed_hash)
        except Exception as exc:  # a failed warm-up only means the first share waits
            log.warning("seed warm-up failed", extra={"error": str(exc)})
            self._warmed.discard(seed_hash)

    def authenticate(self, client: object) -> ClientAuth | None:
        """The verified identity behind a client id, or None if monerod would refuse it."""
        # The client id is a string; anything else cannot verify.
        if not isinstance(client, str):
            return None
        return self._ids.verify(client, int(self._clock() * 1_000_000))

    def _session_for(self, key: bytes, address: str, now: float) -> ClientSession:
        # A client id never seen before spends its address's new-client budget.
        if (
            key not in self.sessions
            and self.ledger.get(key) is None
            and not self._guard.may_add_client(address, now)
        ):
            raise RpcFault(ERROR_RATE_LIMITED, "Too many new client ids from this address")
        return self.sessions.get_or_create(key, now)

    async def access_info(self, client: object, address: str) -> dict[str, object]:
        """rpc_access_info: the client's current job and balance, with a new job if due."""
        auth = self.authenticate(client)
        # The client id must verify.
        if auth is None:
            raise RpcFault(ERROR_INVALID_CLIENT, MESSAGE_INVALID_CLIENT)
        now = self._clock()
        session = self._session_for(auth.public_key, address, now)
        try:
            top = await self.jobs.top()
            if session.needs_job(top.top_hash, now):
                previous = session.job
                min_ts = previous.timestamp + 1 if previous is not None else 0
                fresh = await self.jobs.new_job(auth.public_key, min_ts)
                session.install_job(fresh, now)
                self.warm_seed(fresh.seed_hash)
                self.warm_seed(fresh.next_seed_hash)
        except UpstreamError as exc:
            log.warning("job creation failed", extra={"error": str(exc)})
            raise RpcFault(ERROR_INTERNAL, "Failed to create block template") from exc
        session.top = top.top_hash
        session.update_time = now
        account = self.ledger.touch(auth.public_key)
        job = session.job
        assert job is not None  # install_job ran at least once: top != "" on a new session
        return {
            "hashing_blob": job.hashing_blob.hex(),
            "seed_height": job.seed_height,
            "seed_hash": job.seed_hash.hex(),
            "next_seed_hash": job.next_seed_hash.hex() if job.next_seed_hash else "",
            "cookie": session.cookie,
            "diff": self.settings.difficulty,
            "credits_per_hash_found": self.settings.credits_per_hash_found,
            "height": top.height,
            "credits": account.balance,
            "top_hash": top.top_hash,
            "status": STATUS_OK,
            "untrusted": False,
        }

    async def submit_nonce(
        self, client: object, nonce: int, cookie: int, address: str
    ) -> dict[str, object]:
        """rpc_access_submit_nonce: judge one share as monerod does, hashing off the loop."""
        auth = self.authenticate(client)
        # The client id must verify.
        if auth is None:
            raise RpcFault(ERROR_INVALID_CLIENT, MESSAGE_INVALID_CLIENT)
        key, now = auth.public_key, self._clock()
        # A host that spent its bad-share budget gets no hashing at all.
        if not self._guard.may_verify(address, now):
            raise RpcFault(ERROR_RATE_LIMITED, "Too many bad shares; slow down")
        session = self._session_for(key, address, now)
        # The id must be newer than any the client used: a replay costs it nothing.
        if not self.ledger.claim(key, auth.timestamp_us):
            raise RpcFault(ERROR_STALE_CLIENT_ID, MESSAGE_STALE_CLIENT_ID)
        admission = admit_share(session, cookie & U32, nonce & U32, now)
        if isinstance(admission, Verdict):
            self._book_refusal(key, address, admission, now)
            code, message = VERDICT_ERRORS[admission]
            raise RpcFault(code, message)
        return await self._judge_hash(auth, session, admission, cookie, nonce, address)

    def _book_refusal(self, key: bytes, address: str, verdict: Verdict, now: float) -> None:
        outcome = _OUTCOMES.get(verdict)
        if outcome is not None:
            self.ledger.record_share(key, outcome, self.settings.credits_per_hash_found)
        if verdict is Verdict.DUPLICATE:
            self._guard.charge_bad_share(address, now)
        log.info("share refused", extra={"verdict": verdict.value})

    async def _judge_hash(
        self,
        auth: ClientAuth,
        session: ClientSession,
        admission: Admission,
        cookie: int,
        nonce: int,
        address: str,
    ) -> dict[str, object]:
        key, job = auth.public_key, admission.job
        try:
            pow_hash = await self._hasher.hash(job.seed_hash, set_nonce(job.hashing_blob, nonce))
        except VerifierBusy as exc:
            # Unchecked shares are forgotten so the client may send them again.
            session.forget_nonce(nonce & U32, admission.is_current)
            raise RpcFault(ERROR_RATE_LIMITED, "Server busy verifying shares; retry") from exc
        now = self._clock()
        # The hash must meet the share difficulty.
        if not check_hash(pow_hash, self.settings.difficulty):
            self.ledger.record_share(key, ShareOutcome.BAD, self.settings.credits_per_hash_found)
            self._guard.charge_bad_share(address, now)
            log.info("share refused", extra={"verdict": "bad"})
            raise RpcFault(ERROR_PAYMENT_TOO_LOW, MESSAGE_BAD_HASH)
        account = self.ledger.record_share(
            key, ShareOutcome.GOOD, self.settings.credits_per_hash_found
        )
        self.hashrate.add(now, self.settings.difficulty)
        # A current-job share that also meets the network difficulty is a real block.
        if (
            admission.is_current
            and job.network_difficulty > 0
            and check_hash(pow_hash, job.network_difficulty)
        ):
            log.info("share meets network difficulty", extra={"height": job.height})
            if await self.jobs.submit_block(job, key, nonce & U32):
                self.blocks_found += 1
        top = await self.jobs.top()
        return {
            "credits": account.balance,
            "top_hash": top.top_hash,
            "status": STATUS_OK,
            "untrusted": False,
        }

    async def charge(
        self, client: object, amount: int, rpc: str, address: str, *, same_ts: bool = False
    ) -> Charge:
        """monerod's check_payment: verify the client id, then debit ``amount`` credits."""
        top_hash = (await self.jobs.top()).top_hash
        # Free calls, and every call from loopback when the operator allows it, pass unpaid.
        if amount <= 0 or (self.settings.allow_free_loopback and is_loopback(address)):
            return Charge(True, STATUS_OK, 0, top_hash)
        auth = self.authenticate(client)
        # The client id must verify; otherwise nothing is charged and nothing forwarded.
        if auth is None:
            return Charge(False, signature_status(rpc), 0, top_hash)
        # No u64 balance can pay more than 2^64-1 (the price rules refuse such calls first).
        if amount > U64_MAX:
            return Charge(False, STATUS_PAYMENT_REQUIRED, 0, top_hash)
        result = self.ledger.pay(auth.public_key, auth.timestamp_us, amount, same_ts)
        if not result.ok:
            return Charge(False, STATUS_PAYMENT_REQUIRED, result.credits, top_hash)
        return Charge(
            True, STATUS_OK, result.credits, top_hash, auth.public_key, amount, auth.timestamp_us
        )

    async def charge_more(self, first: Charge, amount: int) -> Charge:
        """monerod's second, same-timestamp charge (``CHECK_PAYMENT_SAME_TS``) for a call
        whose first charge passed: the client id was verified then, so it is not again."""
        # Nothing more to pay, or a call that was free in the first place.
        if amount <= 0 or first.client is None:
            return first
        # No u64 balance can pay more than 2^64-1.
        if amount > U64_MAX:
            return Charge(False, STATUS_PAYMENT_REQUIRED, 0, first.top_hash)
        result = self.ledger.pay(first.client, first.timestamp_us, amount, True)
        if not result.ok:
            return Charge(False, STATUS_PAYMENT_REQUIRED, result.credits, first.top_hash)
        return Charge(
            True,
            STATUS_OK,
            result.credits,
            first.top_hash,
            first.client,
            amount,
            first.timestamp_us,
        )

    async def refund(self, charge: Charge) -> int:
        """Give back a charge whose call the upstream failed to answer; the new balance."""
        if charge.client is None or charge.amount == 0:
            return charge.credits
        return self.ledger.refund(charge.client, charge.amount).balance
