"""``ChequeFunder``: a ``PayingClient`` funder that pays with stamped lottery cheques.

When a call is refused for payment, the funder has a lottery payer (``LotteryPayer``, the
library behind ``rpcpay wallet lottery-pay``) pay the refusing server one round: the payer's
value rule (its price for one interval, in whole credits of that gateway), from an open,
confirmed lottery, creating one when none is left. A lottery just created must be confirmed
before it pays; the funder waits for that up to ``confirm_timeout`` seconds, then reports
why nothing was paid. The credits land on the payer's client key, which must be the paying
client's.

The payer is made by ``make_payer`` on first use, inside the paying client's event loop,
with an HTTP session of that loop (``SyncPayingClient`` runs its own loop on a thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from rpcpay.wallet.client import AccessInfo, ClientError, PayingClient
from rpcpay.wallet.lottery_payer import LotteryPayer

NOT_CONFIRMED = "no confirmed lottery with room yet"


class ChequeFunder:
    """Pays the refusing server one round of cheques per refusal."""

    def __init__(
        self,
        make_payer: Callable[[aiohttp.ClientSession], LotteryPayer],
        *,
        confirm_timeout: float = 60.0,
        poll_s: float = 0.5,
    ) -> None:
        self.make_payer = make_payer
        self.confirm_timeout = confirm_timeout
        self.poll_s = poll_s
        self.payer: LotteryPayer | None = None
        self._session: aiohttp.ClientSession | None = None

    def _payer(self) -> LotteryPayer:
        if self.payer is None:
            self._session = aiohttp.ClientSession()
            payer = self.make_payer(self._session)
            # One server per funder: a refusal names the server it came from.
            if len(payer.servers) != 1:
                raise ValueError("a ChequeFunder's payer pays exactly one server")
            self.payer = payer
        return self.payer

    async def __call__(self, client: PayingClient, info: AccessInfo) -> None:
        payer = self._payer()
        # The credits must land on the account that makes the calls.
        if payer.client_key.public != client.key.public:
            raise ValueError("the lottery payer pays for another client key")
        deadline = time.monotonic() + self.confirm_timeout
        while True:
            (delivery,) = (await payer.pay_round()).deliveries
            if delivery.outcome == "paid":
                return
            # A lottery waiting for confirmations will pay soon; anything else will not.
            if delivery.message != NOT_CONFIRMED or time.monotonic() > deadline:
                raise ClientError(
                    f"lottery cheque not paid ({delivery.outcome}): {delivery.message}"
                )
            await asyncio.sleep(self.poll_s)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
