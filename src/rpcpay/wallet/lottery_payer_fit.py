"""Where the payer meets a gateway: its ``lottery_info``, and the rules that fit the two.

A gateway publishes what a payer needs (docs/lottery.md §15): its recipient address, its
chain id and contract, its price of one credit in wei, the least stamper deposit it
trusts, its reveal margin and its confirmations. The payer reads that once per server
instead of trusting what was typed on the command line, because every mismatch costs
money silently otherwise:

- another chain or contract: every cheque is refused (``wrong_chain``/``wrong_contract``);
- another recipient: every cheque is refused (``wrong_recipient``);
- a value that is not a whole number of credits: the gateway credits
  ``value // credit_price_wei`` and keeps the remainder, so the payer rounds first;
- a stamper with less at stake than the gateway wants: every cheque is refused
  (``stamper_deposit_low``);
- a gateway that wants more confirmations, or a wider reveal margin, than the stamper:
  the payer must not hand it cheques from lotteries too young or too close to their
  reveal, so it uses the stricter of the two.

The functions here are pure; ``LotteryPayer`` does the asking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rpcpay.errors import ConfigError
from rpcpay.lottery.cheque import Domain
from rpcpay.lottery.eth import checksum_address

if TYPE_CHECKING:  # only for annotations: lottery_payer imports this module
    from rpcpay.wallet.lottery_payer import ServerSpec, StamperInfo

__all__ = [
    "GatewayTerms",
    "check_gateway",
    "credit_value",
    "parse_lottery_info",
    "payable",
    "stricter_terms",
    "unannounced_terms",
]

UNKNOWN_CREDIT_PRICE = 1
"""A gateway without ``lottery_info`` did not say its price: any whole number of wei fits."""


@dataclass(frozen=True, slots=True)
class GatewayTerms:
    """What one gateway asks of the cheques it credits (from its ``lottery_info``)."""

    recipient: bytes
    credit_price_wei: int = UNKNOWN_CREDIT_PRICE
    min_stamper_deposit: int = 0
    reveal_margin: int = 0
    confirmations: int = 0
    announced: bool = True  # False: no lottery_info; the --server address is used as given


def _address(value: Any, what: str) -> bytes:
    raw = bytes.fromhex(str(value).removeprefix("0x"))
    # An address is 20 bytes.
    if len(raw) != 20:
        raise ValueError(f"{what} is not a 20-byte address")
    return raw


def parse_lottery_info(obj: Any) -> tuple[Domain, GatewayTerms]:
    """A ``lottery_info`` result -> (the gateway's domain, its terms); ``ValueError`` says
    what is missing or malformed."""
    # The answer is an object with every field §15 names.
    if not isinstance(obj, dict):
        raise ValueError("lottery_info answered no object")
    try:
        domain = Domain(int(obj["chain_id"]), _address(obj["contract"], "contract"))
        terms = GatewayTerms(
            recipient=_address(obj["recipient"], "recipient"),
            credit_price_wei=int(obj["credit_price_wei"]),
            min_stamper_deposit=int(obj["min_stamper_deposit"]),
            reveal_margin=int(obj["reveal_margin"]),
            confirmations=int(obj["confirmations"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad lottery_info answer: {exc}") from None
    # A credit costs at least one wei; margins and depths are not negative.
    if terms.credit_price_wei < 1 or terms.reveal_margin < 0 or terms.confirmations < 0:
        raise ValueError("bad lottery_info answer: a price < 1 wei or a negative block count")
    return domain, terms


def check_gateway(
    server: ServerSpec, ours: Domain, theirs: Domain, terms: GatewayTerms, stamper_deposit: int
) -> GatewayTerms:
    """The gateway's terms if this payer can pay it; ``ConfigError`` says why not (each
    mismatch would have every cheque refused, so it is better to stop and say so)."""
    # The gateway settles on the payer's chain and contract.
    if theirs != ours:
        raise ConfigError(
            f"the gateway at {server.url} settles on chain {theirs.chain_id}, contract "
            f"{checksum_address(theirs.contract)}; this payer uses chain {ours.chain_id}, "
            f"contract {checksum_address(ours.contract)}: give it --chain-url/--contract for "
            "that chain, or drop the server"
        )
    # A typed-in address must be the one the gateway credits.
    if server.recipient is not None and server.recipient != terms.recipient:
        raise ConfigError(
            f"--server {server.url} names payee {checksum_address(server.recipient)}, but the "
            f"gateway says it is {checksum_address(terms.recipient)}: fix the address or leave "
            "it out (the payer then asks the gateway)"
        )
    # The stamper has as much at stake as the gateway wants.
    if stamper_deposit < terms.min_stamper_deposit:
        raise ConfigError(
            f"the gateway at {server.url} accepts stamps only from stampers with at least "
            f"{terms.min_stamper_deposit} wei deposited; this stamper has {stamper_deposit}: "
            "use another stamper, or have it deposit more (rpcpay stamper deposit)"
        )
    return terms


def unannounced_terms(server: ServerSpec) -> GatewayTerms | None:
    """Terms for a gateway without ``lottery_info`` (method not found): usable only when
    the address was given; the price of a credit is unknown, so values are not rounded."""
    if server.recipient is None:
        return None
    return GatewayTerms(recipient=server.recipient, announced=False)


def credit_value(value: int, credit_price_wei: int) -> int:
    """A cheque's value as a whole number of the gateway's credits: rounded down (the
    gateway would keep the remainder), but at least one credit (it refuses less)."""
    return max(1, value // credit_price_wei) * credit_price_wei


def payable(owed: int, credit_price_wei: int) -> int:
    """The cheque for ``owed`` wei: whole credits, rounded down, never more than owed."""
    return owed // credit_price_wei * credit_price_wei


def stricter_terms(info: StamperInfo, gateways: Iterable[GatewayTerms]) -> StamperInfo:
    """The stamper's terms, with the deepest confirmations and widest reveal margin any
    gateway asks for: a lottery the payer uses must suit the stamper and every payee."""
    terms = list(gateways)
    return replace(
        info,
        reveal_margin=max([info.reveal_margin, *(t.reveal_margin for t in terms)]),
        confirmations=max([info.confirmations, *(t.confirmations for t in terms)]),
    )
