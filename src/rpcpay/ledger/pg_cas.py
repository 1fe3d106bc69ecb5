"""A group-commit batch on PostgreSQL in one round trip: cached rows, compare-and-set writes.

``PostgresLedgerStore``'s plain ``apply`` batches (``group_commit``) run here. The store keeps
an ``AccountCache`` of the rows it last read or wrote. A batch runs its steps (pure,
``settle_batch``) on the cached rows, then ONE statement, in autocommit (a single
statement is its own transaction: one round trip, one commit, one fsync), writes every
changed row only where the stored row still equals the cached one, column for column
(``_CAS``): ``UPDATE ... FROM unnest(...) WHERE`` the whole old row matches, ``INSERT ...
ON CONFLICT DO NOTHING`` for new rows, and, for a client whose steps wrote nothing (a
refused charge), a check that the row is still the cached one; it returns the clients that
passed. Why the whole row is the right check: a step is a pure function of the account,
so if the stored row equals the cached one, the step's result is what it would have been
after a fresh read (a row changed and changed back is harmless).

A client that did not pass (another process changed, deleted or first inserted its row)
is read again and its steps, and only its, run again: the steps of different clients are
independent in ``settle_batch`` (each client's steps see only that client's account). The
clients that passed are final. A client not in the cache costs one plain ``SELECT`` (no
lock, no transaction) before the write; so does a client that failed its check. No
in-memory copy is authoritative: the cache only chooses what the statement compares with,
and a stale entry costs one more round trip, never a wrong balance.

Numbers travel as text: each row's nine u64s are one comma-joined string, cast to
``numeric[]`` by the server. asyncpg's ``numeric`` codec goes through ``Decimal``: reading
one row and sending its 18 old and new numbers cost 91 us of client CPU as ``numeric``
against 44 us as text (same statements otherwise); text is exact for every u64, with no
special case at or above 2**63 as ``int8`` would need. The schema is unchanged.

Bounds: attempts are bounded by ``MAX_ATTEMPTS`` (each a read and a write; from the third
on, after a random pause of up to a millisecond per attempt), after which the clients still
in conflict get ``LedgerError`` (the others keep their committed answers).
A failed statement changed nothing it was sent; the answers of earlier attempts stand.
A connection lost during the statement is ambiguous as a lost ``COMMIT`` is: the write may
have applied although the callers hear ``LedgerError``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from rpcpay.errors import LedgerError
from rpcpay.ledger.account import Account
from rpcpay.ledger.group_commit import Pending, Write, settle_batch
from rpcpay.ledger.transactional import MAX_ATTEMPTS, Applied

CACHE_ROWS = 32_768
"""Rows an ``AccountCache`` holds at most (measured with tracemalloc: ~370 bytes each, so
~12 MB when full)."""

_NUMBERS = (
    "balance", "credits_total", "credits_used", "nonces_good", "nonces_stale", "nonces_bad",
    "nonces_dupe", "last_request_timestamp_us", "update_time",
)  # fmt: skip
_ROW = "ARRAY[" + ", ".join(f"a.{c}::numeric" for c in _NUMBERS) + "]"
_SET = ", ".join(f"{c} = u.n[{i}]" for i, c in enumerate(_NUMBERS, start=1))

READ = (
    "SELECT client, concat_ws(',', " + ", ".join(_NUMBERS) + ") FROM accounts "
    "WHERE client = ANY($1::bytea[])"
)
"""Every named client's row, its numbers as one text (``decode``)."""

CAS = f"""WITH
upd AS (
    UPDATE accounts AS a SET {_SET}
    FROM (SELECT c, string_to_array(o, ',')::numeric[] AS o, string_to_array(n, ',')::numeric[] AS n
          FROM unnest($1::bytea[], $2::text[], $3::text[]) AS x(c, o, n)) AS u
    WHERE a.client = u.c AND {_ROW} = u.o
    RETURNING a.client
),
ins AS (
    INSERT INTO accounts (client, {", ".join(_NUMBERS)})
    SELECT c, {", ".join(f"n[{i}]" for i in range(1, len(_NUMBERS) + 1))}
    FROM (SELECT c, string_to_array(n, ',')::numeric[] AS n
          FROM unnest($4::bytea[], $5::text[]) AS x(c, n)) AS v
    ON CONFLICT (client) DO NOTHING
    RETURNING client
),
chk AS (
    SELECT x.c AS client FROM unnest($6::bytea[], $7::text[]) AS x(c, o)
    JOIN accounts AS a ON a.client = x.c
    WHERE {_ROW} = string_to_array(x.o, ',')::numeric[]
)
SELECT client FROM upd UNION ALL SELECT client FROM ins UNION ALL SELECT client FROM chk"""
"""The compare-and-set write of one batch: updates ($1 clients, $2 old rows, $3 new rows),
inserts ($4, $5) and checks of unchanged rows ($6, $7); returns the clients that passed."""


def encode(acct: Account) -> str:
    """The account's nine numbers as one text, exact for every u64."""
    a = acct
    return (
        f"{a.balance},{a.credits_total},{a.credits_used},{a.nonces_good},{a.nonces_stale},"
        f"{a.nonces_bad},{a.nonces_dupe},{a.last_request_timestamp_us},{a.update_time}"
    )


def decode(client: bytes, numbers: str) -> Account:
    """An account from its client key and ``encode``'s text (as ``READ`` returns it)."""
    return Account(client, *map(int, numbers.split(",")))


class AccountCache:
    """The rows this store last read or wrote, at most ``limit`` (the oldest written
    goes first). Never authoritative: ``CAS`` checks every entry it relies on."""

    __slots__ = ("_limit", "_rows")

    def __init__(self, limit: int = CACHE_ROWS) -> None:
        # A cache that can hold nothing would make every call read first.
        if limit < 1:
            raise ValueError("the account cache must hold at least one row")
        self._limit = limit
        self._rows: dict[bytes, Account] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, client: bytes) -> Account | None:
        return self._rows.get(client)

    def put(self, acct: Account) -> None:
        """Remember ``acct`` as the stored row of its client (moved to the newest end)."""
        rows = self._rows
        rows.pop(acct.client, None)
        # Full: the row written longest ago makes room.
        if len(rows) >= self._limit:
            del rows[next(iter(rows))]
        rows[acct.client] = acct

    def drop(self, clients: Iterable[bytes]) -> None:
        """Forget these clients' rows (their stored value is unknown now)."""
        for client in clients:
            self._rows.pop(client, None)


@dataclass(frozen=True, slots=True)
class _Round:
    """One attempt's writes: the clients it sends and what each passing client caches."""

    updates: list[tuple[bytes, str, str]]
    inserts: list[tuple[bytes, str]]
    checks: list[tuple[bytes, str]]
    cache: dict[bytes, Account]  # what the client's row is once its write passed

    def sent(self) -> int:
        return len(self.updates) + len(self.inserts) + len(self.checks)


async def read(conn: asyncpg.Connection, clients: Sequence[bytes]) -> dict[bytes, Account | None]:
    """The stored rows of ``clients`` (None: no row), one plain ``SELECT``."""
    found: dict[bytes, Account | None] = dict.fromkeys(clients)
    for client, numbers in await conn.fetch(READ, clients):
        found[bytes(client)] = decode(bytes(client), numbers)
    return found


Slots = list[Applied[Any] | BaseException | None]
"""A batch's answers as they become final (None: not yet)."""


async def commit_batch(
    conn: asyncpg.Connection,
    cache: AccountCache,
    batch: Sequence[Pending],
    answers: Slots,
    known: Callable[[], None],
) -> None:
    """Run ``batch`` to the end on ``conn``, filling ``answers`` (one slot per call, None
    until final). ``known()`` is called once every client of the batch is known to have a
    row (cached or read): as ``GroupCommit``'s ``locked``, it lets the next batch start
    (a batch that creates a row goes alone). A driver error propagates; the slots filled
    before it are committed."""
    todo = list(range(len(batch)))
    for attempt in range(MAX_ATTEMPTS):
        clients = list(dict.fromkeys(batch[i].client for i in todo))
        stored: dict[bytes, Account | None] = {}
        missing = []
        for client in clients:
            acct = cache.get(client)
            if acct is None:
                missing.append(client)
            stored[client] = acct
        fresh = set(missing)  # rows read in this attempt need no check
        if missing:
            rows = await read(conn, missing)
            stored.update(rows)
            for acct in rows.values():
                if acct is not None:
                    cache.put(acct)
        if attempt == 0 and all(acct is not None for acct in stored.values()):
            known()
        items = [batch[i] for i in todo]
        settled = settle_batch(stored, items)
        plan = _plan(stored, fresh, settled.writes)
        passed: set[bytes] = set(fresh) - set(plan.cache) - {c for c, _ in plan.checks}
        if plan.sent():
            rows_passed = await conn.fetch(CAS, *_arguments(plan))
            passed.update(bytes(r[0]) for r in rows_passed)
        for client, acct in plan.cache.items():
            if client in passed:
                cache.put(acct)
        failed = [c for c in clients if c not in passed]
        # Another writer changed these rows: read them again next attempt.
        cache.drop(failed)
        retry = []
        for i, answer in zip(todo, settled.answers, strict=True):
            if batch[i].client in passed:
                answers[i] = answer
            else:
                retry.append(i)
        if not retry:
            return
        todo = retry
        # A stale cache entry is retried at once; a row still contended after that waits a
        # little, so that writers that keep colliding drift apart.
        if attempt >= 1:
            await asyncio.sleep(random.uniform(0, 0.001 * attempt))
    # Still in conflict after every attempt: those calls fail, the rest stand.
    conflict = LedgerError("ledger conflict: too many concurrent writers")
    for i in todo:
        answers[i] = conflict


def _plan(
    stored: dict[bytes, Account | None], fresh: set[bytes], writes: Sequence[Write]
) -> _Round:
    """The attempt's statement arguments: each written row against what it was computed
    from, and a check for each cached row whose steps wrote nothing."""
    updates: list[tuple[bytes, str, str]] = []
    inserts: list[tuple[bytes, str]] = []
    cache: dict[bytes, Account] = {}
    for write in writes:
        acct = write.account
        old = stored[acct.client]
        cache[acct.client] = acct
        if old is None:
            inserts.append((acct.client, encode(acct)))
        else:
            updates.append((acct.client, encode(old), encode(acct)))
    # A row only read from the cache may be stale: an answer computed on it stands only if
    # the stored row is still the same (a row just read needs no check).
    checks = [
        (client, encode(old))
        for client, old in stored.items()
        if old is not None and client not in cache and client not in fresh
    ]
    return _Round(updates, inserts, checks, cache)


def _arguments(plan: _Round) -> tuple[list[Any], ...]:
    """``CAS``'s seven arrays."""
    return (
        [u[0] for u in plan.updates],
        [u[1] for u in plan.updates],
        [u[2] for u in plan.updates],
        [i[0] for i in plan.inserts],
        [i[1] for i in plan.inserts],
        [c[0] for c in plan.checks],
        [c[1] for c in plan.checks],
    )
