"""Interim: the cheque desk's store and ledger over the gateway's synchronous ``Ledger``.

The desk (gateway/cheques.py) runs on a ``TransactionalStore``'s ``ChequeBook`` and a
``SharedLedger``. Until the server builds those (issue 11's ledger wiring), it runs the
write-through ``Ledger`` on a ``SqliteLedgerStore``, which must stay the only writer of
its accounts: a second connection crediting behind its back would be overwritten. So
this bridge gives the desk the same calls over that one ``Ledger`` and store: a held
cheque's release and its credit are still one SQLite transaction
(``SqliteLedgerStore.credit_pending``), and leases use the store's ``leases`` table.
Calls run on the event loop, as the gateway's every ledger call does today.

Correct for one process on its own file (what ``rpcpay serve`` is today); delete it once
the server passes its ``TransactionalStore`` and ``SharedLedger`` to ``ChequeDesk``.
"""

from __future__ import annotations

import sqlite3

from rpcpay.ledger.account import Account
from rpcpay.ledger.ledger import Ledger
from rpcpay.ledger.sqlite_async import _take_lease_in
from rpcpay.ledger.sqlite_store import ChequeRow, SqliteLedgerStore
from rpcpay.ledger.transactional import ChequeBook

__all__ = ["SyncChequeLedger", "SyncChequeStore"]


class SyncChequeBook:
    """``ChequeBook`` over a ``SqliteLedgerStore``, called on the event loop."""

    def __init__(self, store: SqliteLedgerStore) -> None:
        self._store = store

    async def hold_pending(self, cheque: ChequeRow) -> bool:
        return self._store.hold_pending(cheque)

    async def withhold_pending(self, cheque_id: bytes, outcome: str) -> None:
        self._store.withhold_pending(cheque_id, outcome)

    async def pending_cheque(self, cheque_id: bytes) -> ChequeRow | None:
        return self._store.pending_cheque(cheque_id)

    async def pending_cheques(self) -> list[ChequeRow]:
        return self._store.pending_cheques()

    async def hold_cheque(self, cheque: ChequeRow) -> bool:
        return self._store.hold_cheque(cheque)

    async def hold_evidence(self, cheque: ChequeRow, outcome: str) -> None:
        self._store.hold_evidence(cheque, outcome)

    async def hold_evidence_outcome(self, cheque_id: bytes, outcome: str) -> None:
        self._store.hold_evidence_outcome(cheque_id, outcome)

    async def cheques_with_outcome(self, outcome: str) -> list[ChequeRow]:
        return self._store.cheques_with_outcome(outcome)

    async def cheques_of(self, lottery: bytes) -> list[ChequeRow]:
        return self._store.cheques_of(lottery)

    async def open_lotteries(self) -> list[tuple[bytes, int]]:
        return self._store.open_lotteries()

    async def close_lottery(self, lottery: bytes, outcome: str) -> None:
        self._store.close_lottery(lottery, outcome)

    async def outcomes(self) -> dict[bytes, str]:
        return self._store.outcomes()

    async def take_lease(self, name: str, holder: str, now: int, ttl_s: int) -> bool:
        return self._store.transaction(lambda db: _take_lease_in(db, name, holder, now, ttl_s))

    async def release_lease(self, name: str, holder: str) -> None:
        def release(db: sqlite3.Connection) -> tuple[None, bool]:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
            return None, True

        self._store.transaction(release)


class SyncChequeStore:
    """The desk's ``ChequeStore`` (a cheque book) over a ``SqliteLedgerStore``."""

    def __init__(self, store: SqliteLedgerStore) -> None:
        self._cheques = SyncChequeBook(store)

    @property
    def cheques(self) -> ChequeBook:
        return self._cheques


class SyncChequeLedger:
    """The desk's ``ChequeLedger`` over the write-through ``Ledger`` and its store."""

    def __init__(self, ledger: Ledger, store: SqliteLedgerStore) -> None:
        self._ledger = ledger
        self._store = store

    async def get(self, client: bytes) -> Account | None:
        return self._ledger.get(client)

    async def credit_held(self, client: bytes, credits: int, cheque_id: bytes) -> Account | None:
        return self._ledger.credit(
            client, credits, lambda acct: self._store.credit_pending(acct, cheque_id)
        )
