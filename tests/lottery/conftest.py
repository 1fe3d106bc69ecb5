"""Shared makers for the pure lottery tests."""

from dataclasses import dataclass

import pytest

from rpcpay.lottery.cheque import Cheque, Domain, LotteryTerms, StampedCheque
from rpcpay.lottery.eip712 import sign_cheque, sign_stamp
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.state import LotteryState, StamperState


@dataclass
class Cast:
    payer: EthKey
    stamper: EthKey
    payee: EthKey
    domain: Domain
    terms: LotteryTerms

    def lottery(self, **changes: object) -> LotteryState:
        fields: dict[str, object] = {
            "id": self.terms.id,
            "payer": self.terms.payer,
            "stamper": self.terms.stamper,
            "prize": self.terms.prize,
            "reveal_block": self.terms.reveal_block,
            "seed": None,
            "paid_cheque": None,
            "refunded": False,
        }
        fields.update(changes)
        return LotteryState(**fields)  # type: ignore[arg-type]

    def stamped(
        self,
        start: int,
        value: int,
        recipient: bytes | None = None,
        payer: EthKey | None = None,
        stamper: EthKey | None = None,
        domain: Domain | None = None,
        lottery: bytes | None = None,
    ) -> StampedCheque:
        c = Cheque(
            lottery=lottery or self.terms.id,
            recipient=recipient or self.payee.address,
            start=start,
            value=value,
        )
        d = domain or self.domain
        return StampedCheque(
            cheque=c,
            payer_sig=sign_cheque(payer or self.payer, d, c),
            stamp_sig=sign_stamp(stamper or self.stamper, d, c),
        )


@pytest.fixture(scope="module")
def cast() -> Cast:
    payer, stamper, payee = (EthKey(bytes([i]) * 32) for i in (1, 2, 3))
    terms = LotteryTerms(
        payer=payer.address,
        stamper=stamper.address,
        prize=10**18,
        reveal_block=1000,
        salt=b"\x07" * 32,
    )
    return Cast(payer, stamper, payee, Domain(chain_id=1337, contract=b"\xcc" * 20), terms)


ACTIVE = StamperState(deposit=3 * 10**18, exit_block=0, slashed=False)  # burns 1.2 > prize
