"""The payment side of the gateway: jobs, shares and charges, over the ledger.

``PaymentService`` implements monerod 0.18's rpc_access_info, rpc_access_submit_nonce,
rpc_access_pay and check_payment with the same decisions, codes and penalties, and adds what
monerod lacks: hashing off the event loop, budgets for bad shares and new ids, and a ledger
that keeps every credit it reported across crashes.

Every piece of a client's state is in the ledger's store, shared by every gateway instance:
its balance and last signed timestamp (a client id is accepted once, by one instance), its
session and jobs (a job issued by one instance is paid at another), and its paid nonces (the
same nonce sent to two instances is credited once). A call's ledger write commits before the
answer that reports it. Per instance, and documented as such: the abuse budgets (a new client
id is one that neither the sessions nor the accounts know), the hash-rate and block counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

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
from rpcpay.gateway.sessions import SAVE_ATTEMPTS, ClientSession, SharedSessions, job_row
from rpcpay.gateway.shares import (
    VERDICT_ERRORS,
    Admission,
    Slot,
    Verdict,
    judge_slot,
    place_share,
)
from rpcpay.gateway.tracking import HashRate
from rpcpay.ledger.account import U64_MAX, ShareOutcome
from rpcpay.ledger.session_rows import nonce_expiry
from rpcpay.ledger.shared_ledger import SharedLedger
from rpcpay.ledger.transactional import RecordNonce
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


def share_nonce(slot: Slot, nonce: int, now: float) -> RecordNonce:
    """The row that makes ``nonce`` count once for the slot's job across every process,
    kept as long as that job can be submitted."""
    return RecordNonce(slot.key, nonce, nonce_expiry(slot.job, int(now)))


def _refused(verdict: Verdict) -> NoReturn:
    """Log a refused share and answer it with the verdict's error."""
    log.info("share refused", extra={"verdict": verdict.value})
    code, message = VERDICT_ERRORS[verdict]
    raise RpcFault(code, message)


class PaymentService:
    """Everything the gateway does with money, independent of HTTP."""

    def __init__(
        self,
        settings: PaymentSettings,
        ledger: SharedLedger,
        jobs: JobSource,
        hasher: Hasher,
        guard: AbuseGuard,
        *,
        sessions: SharedSessions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.jobs = jobs
        self._hasher = hasher
        self._guard = guard
        self.sessions = sessions if sessions is not None else SharedSessions(ledger.store)
        self._clock = clock
        self.hashrate = HashRate()
        self.blocks_found = 0
        self._warmed: set[bytes] = set()
        self._warming: set[asyncio.Task[None]] = set()
        self._ids = VerifiedIds()
        # A charge may run eagerly (``gateway.eager``) only on a store whose transaction
        # binds no task: asyncpg's timeouts would bind the caller's, and cancel it.
        self.charges_eagerly = getattr(ledger.store, "BINDS_NO_TASK", False) is True

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

    async def _session_for(self, key: bytes, address: str, now: float) -> ClientSession:
        """The client's shared session, or a new one (not yet stored) on first contact."""
        session = await self.sessions.get(key)
        if session is not None:
            return session
        # A client id no instance has seen spends its address's new-client budget (kept per
        # instance: a client known to the ledger is known to all).
        if await self.ledger.get(key) is None and not self._guard.may_add_client(address, now):
            raise RpcFault(ERROR_RATE_LIMITED, "Too many new client ids from this address")
        return ClientSession(update_time=now)

    async def access_info(self, client: object, address: str) -> dict[str, object]:
        """rpc_access_info: the client's current job and balance, with a new job if due."""
        auth = self.authenticate(client)
        # The client id must verify.
        if auth is None:
            raise RpcFault(ERROR_INVALID_CLIENT, MESSAGE_INVALID_CLIENT)
        key, now = auth.public_key, self._clock()
        session = await self._session_for(key, address, now)
        try:
            top = await self.jobs.top()
            session = await self._seen(key, session, top.top_hash, now)
        except UpstreamError as exc:
            log.warning("job creation failed", extra={"error": str(exc)})
            raise RpcFault(ERROR_INTERNAL, "Failed to create block template") from exc
        account = await self.ledger.touch(key)
        job = session.job
        assert job is not None  # a job was installed at least once: top != "" on a new session
        return {
            "hashing_blob": job.hashing_blob.hex(),
            "seed_height": job.seed_height,
            "seed_hash": job.seed_hash.hex(),
            "next_seed_hash": job.next_seed_hash.hex(),
            "cookie": session.cookie,
            "diff": self.settings.difficulty,
            "credits_per_hash_found": self.settings.credits_per_hash_found,
            "height": top.height,
            "credits": account.balance,
            "top_hash": top.top_hash,
            "status": STATUS_OK,
            "untrusted": False,
        }

    async def _seen(
        self, key: bytes, session: ClientSession, top: str, now: float
    ) -> ClientSession:
        """Note the client's job request in its shared session, with a new job if monerod
        would give one; if another instance changed the session meanwhile, decide again on
        what it wrote."""
        for _ in range(SAVE_ATTEMPTS):
            new, template = session, b""
            if session.needs_job(top, now):
                min_ts = session.job.timestamp + 1 if session.job is not None else 0
                fresh = await self.jobs.new_job(key, min_ts)
                new, template = session.with_job(job_row(fresh, now), now), fresh.template_blob
                self.warm_seed(fresh.seed_hash)
                self.warm_seed(fresh.next_seed_hash)
            new = dataclasses.replace(new, top=top, update_time=now)
            saved = await self.sessions.save(key, session, new, template)
            if saved is not None:
                return saved
            reread = await self.sessions.get(key)
            session = reread if reread is not None else ClientSession(update_time=now)
        raise RpcFault(ERROR_RATE_LIMITED, "Session busy in another request; retry")

    async def _stored_session(self, key: bytes, address: str, now: float) -> ClientSession:
        """The session a share is judged on; a first contact's is stored, as monerod creates
        a client's record on any call."""
        session = await self._session_for(key, address, now)
        if session.stored_cookie is not None:
            return session
        saved = await self.sessions.save(key, session, session)
        if saved is not None:
            return saved
        # Another instance created it meanwhile: judge on that one.
        return await self.sessions.get(key) or session

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
        session = await self._stored_session(key, address, now)
        # The id must be newer than any the client used, on any instance: a replay costs
        # it nothing, and is refused before any hashing.
        if not await self.ledger.claim(key, auth.timestamp_us):
            raise RpcFault(ERROR_STALE_CLIENT_ID, MESSAGE_STALE_CLIENT_ID)
        nonce &= U32
        slot = place_share(session, cookie & U32)
        if isinstance(slot, Verdict):
            await self._refuse(key, address, slot, now)
        # A nonce is paid once per job, even if its hash turned out bad.
        if await self.ledger.store.has_nonce(key, slot.key, nonce):
            await self._refuse(key, address, Verdict.DUPLICATE, now)
        admission = judge_slot(session, slot, now)
        if admission is Verdict.VERY_STALE:
            await self._refuse(key, address, admission, now)
        if isinstance(admission, Verdict):
            await self._refuse_recorded(key, address, admission, share_nonce(slot, nonce, now))
        return await self._judge_hash(auth, admission, nonce, address)

    async def _refuse(self, key: bytes, address: str, verdict: Verdict, now: float) -> NoReturn:
        """Book a share refused before hashing (monerod's penalty, if any), and answer."""
        outcome = _OUTCOMES.get(verdict)
        if outcome is not None:
            await self.ledger.record_share(key, outcome, self.settings.credits_per_hash_found)
        if verdict is Verdict.DUPLICATE:
            self._guard.charge_bad_share(address, now)
        _refused(verdict)

    async def _refuse_recorded(
        self, key: bytes, address: str, verdict: Verdict, nonce: RecordNonce
    ) -> NoReturn:
        """Refuse a stale or not-initialized share with its nonce recorded in the same
        transaction (re-sent, to any instance, it is a duplicate)."""
        credits = self.settings.credits_per_hash_found
        outcome = _OUTCOMES.get(verdict)
        if outcome is not None:
            _, booked = await self.ledger.record_submitted_share(key, nonce, outcome, credits)
            fresh = booked is not ShareOutcome.DUPE
        else:
            fresh = await self.ledger.record_unbooked_nonce(key, nonce, credits)
        # Another request recorded this nonce first: it is a duplicate (booked as one).
        if not fresh:
            self._guard.charge_bad_share(address, self._clock())
            verdict = Verdict.DUPLICATE
        _refused(verdict)

    async def _judge_hash(
        self, auth: ClientAuth, admission: Admission, nonce: int, address: str
    ) -> dict[str, object]:
        key, job = auth.public_key, admission.job
        try:
            pow_hash = await self._hasher.hash(job.seed_hash, set_nonce(job.hashing_blob, nonce))
        except VerifierBusy as exc:
            # Nothing was recorded: the client may send the share again.
            raise RpcFault(ERROR_RATE_LIMITED, "Server busy verifying shares; retry") from exc
        now = self._clock()
        good = check_hash(pow_hash, self.settings.difficulty)
        # The nonce's row and the share's credit (or penalty) are one transaction: a nonce
        # some other process (or an earlier call) recorded for this job is a duplicate.
        account, booked = await self.ledger.record_submitted_share(
            key,
            share_nonce(admission.slot, nonce, now),
            ShareOutcome.GOOD if good else ShareOutcome.BAD,
            self.settings.credits_per_hash_found,
        )
        # The same nonce reached another process first: it was credited there.
        if booked is ShareOutcome.DUPE:
            self._guard.charge_bad_share(address, now)
            _refused(Verdict.DUPLICATE)
        # The hash must meet the share difficulty.
        if not good:
            self._guard.charge_bad_share(address, now)
            log.info("share refused", extra={"verdict": "bad"})
            raise RpcFault(ERROR_PAYMENT_TOO_LOW, MESSAGE_BAD_HASH)
        self.hashrate.add(now, self.settings.difficulty)
        # A current-job share that also meets the network difficulty is a real block.
        if (
            admission.is_current
            and job.network_difficulty > 0
            and check_hash(pow_hash, job.network_difficulty)
        ):
            log.info("share meets network difficulty", extra={"height": job.height})
            block_job = await self.sessions.job_for_block(job)
            if await self.jobs.submit_block(block_job, key, nonce):
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
        result = await self.ledger.pay(auth.public_key, auth.timestamp_us, amount, same_ts)
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
        result = await self.ledger.pay(first.client, first.timestamp_us, amount, True)
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
        return (await self.ledger.refund(charge.client, charge.amount)).balance
