"""Client ids whose signature verified lately, so a replayed id costs no curve arithmetic.

Checking a client id's ed25519 signature is the dearest step of refusing a request (about
32 µs here since the one-call C check, docs/benchmarks.md; most of a refused call's cost).
Whether a signature verifies depends on the id's text only, so a success can be remembered;
the ±60 s window depends on the clock and is checked again on every use. Failures are not
remembered (a failure may be the window's, which time can change), so junk with fresh bad
signatures still costs one check each, as in monerod. Bounded LRU: ``max_ids`` entries of
about 500 bytes (5 MB at the default 10,000); ids replayed in a flood stay at the recent end,
honest ids are used once and age out.
"""

from __future__ import annotations

from collections import OrderedDict

from rpcpay.wire.client_id import TIMESTAMP_LEEWAY_US, ClientAuth, verify_client_id

DEFAULT_MAX_IDS = 10_000


class VerifiedIds:
    """``verify_client_id`` with a memory of recent successes."""

    def __init__(self, max_ids: int = DEFAULT_MAX_IDS) -> None:
        self._max = max_ids
        self._verified: OrderedDict[str, ClientAuth] = OrderedDict()

    def verify(self, client: str, now_us: int) -> ClientAuth | None:
        """The identity behind ``client`` at ``now_us``, or None if monerod would refuse it."""
        auth = self._verified.get(client)
        if auth is None:
            auth = verify_client_id(client, now_us)
            if auth is not None:
                self._verified[client] = auth
                if len(self._verified) > self._max:
                    self._verified.popitem(last=False)
            return auth
        self._verified.move_to_end(client)
        # A remembered signature still needs its timestamp within the window of now.
        if abs(auth.timestamp_us - now_us) > TIMESTAMP_LEEWAY_US:
            return None
        return auth
