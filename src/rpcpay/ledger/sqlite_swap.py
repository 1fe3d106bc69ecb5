"""One ``apply`` on SQLite in one statement, when this connection knows the row already.

A paid call's charge reads the client's row, runs the step and writes the result back: four
statements (``BEGIN IMMEDIATE``, ``SELECT``, the upsert, ``COMMIT``) and the row decoded into
an ``Account``. A process serving a client sees that client's row on every call, so the
loop's connection remembers the last row it read or wrote for each client (``KnownRows``)
and, for a batch of one call on a remembered row, runs the step on that row and writes with
ONE ``UPDATE ... WHERE`` every column still holds what it remembered (a compare-and-swap, its
own transaction, committed before it returns like any other).

Exactness: a step is a pure function of the account, so if the row still holds the
remembered values the step's result is what it would have been after a read. If anything
changed it (another process, this store's thread, a deleted idle row), the ``UPDATE``
matches no row, writes nothing, and the call takes the usual path, which reads the row. A
step that fails or would write nothing also takes the usual path (the answer must come from
the row as stored). Durability and the busy handling are the usual path's.

Measured in-process (``SharedLedger.pay`` on a stored row from one task, ``synchronous=normal``,
against the read-and-write transaction in the same build): 19 us of CPU per charge against
25 us.
"""

from __future__ import annotations

from rpcpay.ledger.account import Account
from rpcpay.ledger.group_commit import Pending
from rpcpay.ledger.sqlite_store import _COLUMNS, account_to_row
from rpcpay.ledger.transactional import Applied, settle

KNOWN_ROWS = 10_000
"""Rows remembered at most (about 200 bytes each); past that the memory starts again."""

UPDATE_IF_UNCHANGED = (
    "UPDATE accounts SET "
    + ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
    + " WHERE client = ? AND "
    + " AND ".join(f"{c} = ?" for c in _COLUMNS[1:])
)


class KnownRows:
    """The account row each client last had on this connection, as far as it knows."""

    def __init__(self, limit: int = KNOWN_ROWS) -> None:
        self._rows: dict[bytes, Account] = {}
        self._limit = limit

    def get(self, client: bytes) -> Account | None:
        return self._rows.get(client)

    def remember(self, account: Account) -> None:
        rows = self._rows
        # Bounded: a full memory starts again rather than tracking what is oldest.
        if len(rows) >= self._limit and account.client not in rows:
            rows.clear()
        rows[account.client] = account

    def forget(self, client: bytes) -> None:
        self._rows.pop(client, None)


def settle_known(item: Pending, known: Account) -> tuple[Account, Applied[object]] | None:
    """The call's step on the remembered row: (the row to write, the call's answer), or None
    when the step fails or writes nothing (the usual path answers those from the stored row)."""
    try:
        new, outcome, write = settle(item.client, known, item.step, item.now)
    except Exception:  # the usual path runs the step again, on the stored row, and reports
        return None
    if not write:
        return None
    return new, Applied(outcome, new, stored=True)


def swap_params(known: Account, new: Account) -> tuple[object, ...]:
    """``UPDATE_IF_UNCHANGED``'s parameters: the new values, the client, the known values."""
    return account_to_row(new)[1:] + account_to_row(known)
