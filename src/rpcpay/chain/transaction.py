"""Signing Ethereum transactions locally: EIP-1559 (type 2), RLP-encoded.

Why local signing: a JSON-RPC node then never holds a key (``eth_sendTransaction``
would need the node to manage accounts, which public nodes refuse), and the key
never leaves the process. Why EIP-1559 rather than legacy: it is what every chain
since London prices with, it states the most the sender pays (``max_fee_per_gas``)
and the tip apart, and anvil, geth and every provider accept it. Legacy transactions
would only be needed for pre-London chains, which rpcpay's contract (Cancun) does
not run on anyway.

RLP is twenty lines, so it is written here rather than taken from a package: the
only values a transaction needs are byte strings, non-negative integers and lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from rpcpay.lottery.eth import EthKey
from rpcpay.wire.keccak import keccak256

__all__ = ["EIP1559_TYPE", "Eip1559Transaction", "rlp_encode", "sign_transaction"]

EIP1559_TYPE = 2

RlpItem = bytes | int | list["RlpItem"]


def _length_prefix(length: int, short: int) -> bytes:
    # Up to 55 bytes the length fits in the prefix byte; beyond, it follows it big-endian.
    if length <= 55:
        return bytes([short + length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([short + 55 + len(encoded)]) + encoded


def rlp_encode(item: RlpItem) -> bytes:
    """Ethereum's Recursive Length Prefix encoding of bytes, non-negative ints and lists.

    Integers are big-endian with no leading zeros (0 is the empty string), as the
    yellow paper requires of every scalar in a transaction.
    """
    if isinstance(item, list):
        payload = b"".join(rlp_encode(x) for x in item)
        return _length_prefix(len(payload), 0xC0) + payload
    if isinstance(item, int):
        # Only non-negative integers have an RLP form.
        if item < 0:
            raise ValueError("RLP integers are non-negative")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    # A single byte below 0x80 is its own encoding.
    if len(item) == 1 and item[0] < 0x80:
        return item
    return _length_prefix(len(item), 0x80) + item


@dataclass(frozen=True, slots=True)
class Eip1559Transaction:
    """An EIP-1559 transaction before signing. ``to`` is ``b""`` for a contract creation."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes
    value: int
    data: bytes

    def __post_init__(self) -> None:
        # A recipient is an address, or nothing for a creation.
        if len(self.to) not in (0, 20):
            raise ValueError("to must be a 20-byte address or empty")
        # The tip is part of the fee cap, never above it.
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            raise ValueError("max_priority_fee_per_gas above max_fee_per_gas")

    def _fields(self) -> list[RlpItem]:
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            self.to,
            self.value,
            self.data,
            [],  # access list: none
        ]

    def signing_hash(self) -> bytes:
        """``keccak256(0x02 || rlp([chain_id, nonce, tip, fee cap, gas, to, value, data, []]))``."""
        return keccak256(bytes([EIP1559_TYPE]) + rlp_encode(self._fields()))


def sign_transaction(key: EthKey, tx: Eip1559Transaction) -> tuple[bytes, bytes]:
    """The raw signed transaction for ``eth_sendRawTransaction``, and its hash.

    The signature's recovery id goes in as ``y_parity`` (0 or 1), ``r`` and ``s`` as
    integers; libsecp256k1 gives the low-``s`` form every node requires.
    """
    signature = key.sign(tx.signing_hash())
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    y_parity = signature[64] - 27
    raw = bytes([EIP1559_TYPE]) + rlp_encode([*tx._fields(), y_parity, r, s])
    return raw, keccak256(raw)
