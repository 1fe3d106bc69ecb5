"""The storage interface behind the ``Ledger``.

It is deliberately tiny (load, save, delete, scan) so that a PostgreSQL store can
implement it later without the ledger changing. The contract that matters is
durability: when ``save`` or ``save_many`` returns, the accounts survive a crash of the
process, because the gateway tells the client its new balance right after. Any failure
raises ``rpcpay.errors.LedgerError`` and leaves the stored accounts as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from rpcpay.ledger.account import Account


class LedgerStore(Protocol):
    """Durable accounts keyed by the 32-byte client key. Single writer."""

    def load(self, client: bytes) -> Account | None:
        """The stored account of ``client``, or None if it has none."""
        ...

    def save(self, account: Account) -> None:
        """Insert or replace one account; durable when this returns."""
        ...

    def save_many(self, accounts: Iterable[Account]) -> None:
        """Insert or replace several accounts in one transaction: all or none."""
        ...

    def delete(self, clients: Iterable[bytes]) -> None:
        """Remove these clients' accounts (absent ones are ignored), in one transaction."""
        ...

    def iter_accounts(self) -> Iterator[Account]:
        """Every stored account, in no particular order. Do not write while iterating."""
        ...

    def count(self) -> int:
        """How many accounts are stored."""
        ...

    def close(self) -> None:
        """Release the store; it must not be used afterwards. Idempotent."""
        ...
