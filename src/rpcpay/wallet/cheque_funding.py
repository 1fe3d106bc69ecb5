"""``ChequeFunder``: a ``PayingClient`` funder that pays with stamped lottery cheques.

When a call is refused for payment, the funder has the lottery payer (``LotteryPayer``, the
library behind ``rpcpay wallet lottery-pay``) send the refusing server one round's cheque:
the payer's value rule (its price for one interval, in whole credits of that gateway), from
an open, confirmed lottery, creating one when none is left (a new lottery must then be
confirmed before it pays: the funder says so instead of waiting). The credits land on the
payer's client key, which must be the paying client's.
"""

from __future__ import annotations

from rpcpay.wallet.client import AccessInfo, ClientError, PayingClient
from rpcpay.wallet.lottery_payer import LotteryPayer


class ChequeFunder:
    """Pays the refusing server one cheque per refusal, through ``payer`` (which lists only
    that server, and signs credits for the client's key)."""

    def __init__(self, payer: LotteryPayer) -> None:
        # One server per funder: a refusal names the server it came from.
        if len(payer.servers) != 1:
            raise ValueError("a ChequeFunder's payer pays exactly one server")
        self.payer = payer

    async def __call__(self, client: PayingClient, info: AccessInfo) -> None:
        # The credits must land on the account that makes the calls.
        if self.payer.client_key.public != client.key.public:
            raise ValueError("the lottery payer pays for another client key")
        report = await self.payer.pay_round()
        (delivery,) = report.deliveries
        # A cheque that was not credited earned nothing: stop rather than loop.
        if delivery.outcome != "paid":
            raise ClientError(f"lottery cheque not paid ({delivery.outcome}): {delivery.message}")
