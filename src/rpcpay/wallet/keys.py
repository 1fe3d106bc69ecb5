"""The client key and its ids, with timestamps that strictly increase.

monerod refuses a charged call whose id carries a timestamp not greater than the last one it
saw from the key, so concurrent calls must never sign the same microsecond.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rpcpay.wire.client_id import make_client_id
from rpcpay.wire.ed25519 import generate_keypair, secret_to_public


class ClientKey:
    """A client secret key that signs ids with strictly increasing timestamps (thread-safe)."""

    def __init__(
        self, secret: bytes | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        if secret is None:
            secret, public = generate_keypair()
        else:
            public = secret_to_public(secret)
        self.secret = secret
        self.public = public
        self._clock = clock
        self._last_us = 0
        self._lock = threading.Lock()

    def next_timestamp_us(self) -> int:
        """Now in microseconds, bumped past the last timestamp this key signed."""
        with self._lock:
            self._last_us = max(int(self._clock() * 1_000_000), self._last_us + 1)
            return self._last_us

    def client_id(self) -> str:
        """A fresh 208-character client id."""
        return make_client_id(self.secret, self.next_timestamp_us())
