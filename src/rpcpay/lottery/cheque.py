"""Lotteries, cheques and stamps: the data, and the arithmetic of ticket ranges.

A lottery's ticket space is ``[0, prize)``, one ticket per wei of the prize. A
cheque gives its recipient the range ``[start, start + value)``; the winning
ticket is uniform over the space, so the cheque wins the whole prize with
probability ``value / prize`` and its expected value is exactly ``value`` wei.
Nothing has to be divided or rounded to price a cheque, and the payee credits
``value`` at its credit price.

Everything here is pure: no chain, no keys. docs/lottery.md is the spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from rpcpay.lottery.eth import ADDRESS_LENGTH, SIGNATURE_LENGTH
from rpcpay.wire.keccak import keccak256

__all__ = [
    "MAX_PRIZE",
    "STAMPED_CHEQUE_LENGTH",
    "U256_MAX",
    "Cheque",
    "Domain",
    "LotteryTerms",
    "StampedCheque",
    "decode_stamped",
    "draw_seed",
    "encode_stamped",
    "holds_ticket",
    "in_ticket_space",
    "lottery_id",
    "ranges_overlap",
    "winning_ticket",
]

U256_MAX = 2**256 - 1
MAX_PRIZE = 2**128
"""Prizes are below this, so ``seed % prize`` is uniform to within ``2**-128``."""

WORD = 32


def _u256(n: int) -> bytes:
    return n.to_bytes(WORD, "big")


def _address_word(address: bytes) -> bytes:
    return address.rjust(WORD, b"\0")


def _check_u256(name: str, n: int) -> None:
    # Every number crosses into the EVM as a uint256.
    if not 0 <= n <= U256_MAX:
        raise ValueError(f"{name}={n} is not a uint256")


def _check_address(name: str, address: bytes) -> None:
    # An address is 20 bytes.
    if len(address) != ADDRESS_LENGTH:
        raise ValueError(f"{name} must be {ADDRESS_LENGTH} bytes")


@dataclass(frozen=True, slots=True)
class Domain:
    """Where a signature is valid: one chain and one contract.

    EIP-712's domain also has a name and a version; they are constants of the protocol.
    """

    chain_id: int
    contract: bytes

    def __post_init__(self) -> None:
        _check_u256("chain_id", self.chain_id)
        _check_address("contract", self.contract)


@dataclass(frozen=True, slots=True)
class LotteryTerms:
    """Everything a payer fixes when it creates a lottery; the lottery's id hashes all of it.

    Hashing the terms into the id means a cheque, which signs only the id, also
    commits to the prize, the stamper and the reveal block: if a reorg drops the
    lottery and the payer re-creates it differently, the new one has a new id and
    the old cheques name nothing.
    """

    payer: bytes
    stamper: bytes
    prize: int
    reveal_block: int
    salt: bytes

    def __post_init__(self) -> None:
        _check_address("payer", self.payer)
        _check_address("stamper", self.stamper)
        # The prize is positive and below MAX_PRIZE (the contract refuses others).
        if not 0 < self.prize < MAX_PRIZE:
            raise ValueError(f"prize={self.prize} is not in (0, 2**128)")
        _check_u256("reveal_block", self.reveal_block)
        # The salt is one word.
        if len(self.salt) != WORD:
            raise ValueError("salt must be 32 bytes")

    @property
    def id(self) -> bytes:
        return lottery_id(self)


def lottery_id(terms: LotteryTerms) -> bytes:
    """``keccak256(abi.encode(payer, stamper, prize, reveal_block, salt))``, as in the contract."""
    return keccak256(
        _address_word(terms.payer)
        + _address_word(terms.stamper)
        + _u256(terms.prize)
        + _u256(terms.reveal_block)
        + terms.salt
    )


@dataclass(frozen=True, slots=True)
class Cheque:
    """The payer's promise: ``recipient`` owns tickets ``[start, start + value)`` of ``lottery``."""

    lottery: bytes
    recipient: bytes
    start: int
    value: int

    def __post_init__(self) -> None:
        # The lottery id is one word.
        if len(self.lottery) != WORD:
            raise ValueError("lottery id must be 32 bytes")
        _check_address("recipient", self.recipient)
        _check_u256("start", self.start)
        _check_u256("value", self.value)

    @property
    def end(self) -> int:
        """One past the last ticket of the range."""
        return self.start + self.value


@dataclass(frozen=True, slots=True)
class StampedCheque:
    """A cheque with the payer's signature and the stamper's stamp (both 65-byte ``r||s||v``)."""

    cheque: Cheque
    payer_sig: bytes
    stamp_sig: bytes

    def __post_init__(self) -> None:
        # Both signatures have Ethereum's 65-byte layout.
        if len(self.payer_sig) != SIGNATURE_LENGTH or len(self.stamp_sig) != SIGNATURE_LENGTH:
            raise ValueError(f"signatures are {SIGNATURE_LENGTH} bytes")


def in_ticket_space(cheque: Cheque, prize: int) -> bool:
    """True when the cheque's range is non-empty and inside ``[0, prize)``."""
    return cheque.value > 0 and cheque.start < prize and cheque.value <= prize - cheque.start


def ranges_overlap(a: Cheque, b: Cheque) -> bool:
    """True when the two ranges share a ticket (empty ranges share none)."""
    return a.value > 0 and b.value > 0 and a.start < b.end and b.start < a.end


def holds_ticket(cheque: Cheque, ticket: int) -> bool:
    """True when ``ticket`` is in the cheque's range."""
    return cheque.start <= ticket < cheque.end


def draw_seed(reveal_block_hash: bytes, lottery: bytes) -> bytes:
    """``keccak256(abi.encode(blockhash(reveal_block), lottery_id))``.

    Mixing in the id makes lotteries that share a reveal block independent: one
    payer's many lotteries do not all win or all lose together.
    """
    # Both inputs are one word.
    if len(reveal_block_hash) != WORD or len(lottery) != WORD:
        raise ValueError("block hash and lottery id are 32 bytes")
    return keccak256(reveal_block_hash + lottery)


def winning_ticket(seed: bytes, prize: int) -> int:
    """The winning ticket: the seed as a big-endian number, modulo the prize."""
    # The prize is a lottery's prize.
    if not 0 < prize < MAX_PRIZE:
        raise ValueError(f"prize={prize} is not in (0, 2**128)")
    return int.from_bytes(seed, "big") % prize


STAMPED_CHEQUE_LENGTH = 8 + 20 + 32 + 20 + 32 + 32 + 65 + 65
"""Bytes in the wire form of a stamped cheque with its domain (274)."""


def encode_stamped(domain: Domain, sc: StampedCheque) -> bytes:
    """The fixed-size wire form that payers send and payees gossip.

    Layout (big-endian): chain id (8), contract (20), lottery (32), recipient (20),
    start (32), value (32), payer signature (65), stamp signature (65). The domain
    travels with the cheque so a payee can refuse a cheque of another chain or
    contract by name before it recovers any signature.
    """
    # A chain id fits the eight bytes of the wire form.
    if domain.chain_id >= 2**64:
        raise ValueError("chain id does not fit in 8 bytes")
    c = sc.cheque
    return (
        domain.chain_id.to_bytes(8, "big")
        + domain.contract
        + c.lottery
        + c.recipient
        + _u256(c.start)
        + _u256(c.value)
        + sc.payer_sig
        + sc.stamp_sig
    )


def decode_stamped(data: bytes) -> tuple[Domain, StampedCheque]:
    """Parse ``encode_stamped``'s output; raises ``ValueError`` on any other length."""
    # The wire form has one fixed length.
    if len(data) != STAMPED_CHEQUE_LENGTH:
        raise ValueError(f"a stamped cheque is {STAMPED_CHEQUE_LENGTH} bytes, got {len(data)}")
    chain_id = int.from_bytes(data[0:8], "big")
    domain = Domain(chain_id=chain_id, contract=data[8:28])
    cheque = Cheque(
        lottery=data[28:60],
        recipient=data[60:80],
        start=int.from_bytes(data[80:112], "big"),
        value=int.from_bytes(data[112:144], "big"),
    )
    return domain, StampedCheque(cheque=cheque, payer_sig=data[144:209], stamp_sig=data[209:274])
