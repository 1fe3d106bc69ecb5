"""The lottery desk's interim ledger: synchronous ``get`` and ``credit`` on a connection of
its own to the gateway's SQLite file.

The cheque desk (gateway/cheque*.py) still calls a synchronous ledger, with a save callback
that writes the account and its cheque (``SqliteLedgerStore.save_with_cheque`` or
``credit_pending``), on the event loop. Until it moves onto the async ``ChequeBook``, this
bridge keeps it correct beside the ``SharedLedger`` that serves every other call from the
same file through ``ThreadedSqliteStore``: nothing is cached, and a credit reads the
account, applies ``apply_credit`` and writes it with its cheque inside ONE ``BEGIN
IMMEDIATE`` transaction, so a charge committed by the other connection (or another process)
in between cannot be overwritten. Its cost is today's: the write waits on the loop.

SQLite only: the gateway refuses ``--lottery-contract`` with a PostgreSQL ledger for now.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from rpcpay.ledger import account as rules
from rpcpay.ledger.account import Account
from rpcpay.ledger.sqlite_store import _SELECT, SqliteLedgerStore, row_to_account


class ChequeDeskLedger:
    """``get`` and ``credit`` for the cheque desk, straight on its ``SqliteLedgerStore``."""

    def __init__(
        self,
        store: SqliteLedgerStore,
        on_credit: Callable[[int], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._on_credit = on_credit
        self._clock = clock

    def get(self, client: bytes) -> Account | None:
        """The client's stored account, as every process sees it now."""
        return self._store.load(client)

    def credit(
        self, client: bytes, credits: int, save: Callable[[Account], bool]
    ) -> Account | None:
        """Credit ``credits`` and write the result with ``save`` (the desk's write of the
        account and its cheque), all in one transaction; None, nothing written, if ``save``
        refuses (the cheque was recorded before)."""

        def work(db: sqlite3.Connection) -> tuple[Account | None, bool]:
            row = db.execute(_SELECT + " WHERE client = ?", (client,)).fetchone()
            current = (
                row_to_account(row)
                if row is not None
                else rules.new_account(client, int(self._clock()))
            )
            new = rules.apply_credit(current, credits)
            # The cheque book refused: roll back, credit nothing.
            if not save(new):
                return None, False
            return new, True

        account = self._store.transaction(work)
        if account is not None and self._on_credit is not None:
            self._on_credit(credits)
        return account
