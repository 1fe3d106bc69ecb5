"""Monero's base58 and public addresses (common/base58.cpp, cryptonote_basic_impl.cpp).

Monero's base58 is not Bitcoin's: data is cut into 8-byte blocks, each encoded on its own as a
fixed 11-character big-endian base58 number (a shorter last block uses the size table
``0, 2, 3, 5, 6, 7, 9, 10, 11``), so the text length reveals the data length and leading zero
bytes need no special case. An address is ``base58(varint(prefix) ‖ spend key ‖ view key
[‖ 8-byte payment id] ‖ keccak256(all that)[:4])``. The prefix says network and kind.
"""

from dataclasses import dataclass

from rpcpay.errors import BlockFormatError, WireError
from rpcpay.wire.ed25519 import check_key
from rpcpay.wire.keccak import keccak256
from rpcpay.wire.varint import decode_varint, encode_varint

__all__ = [
    "INTEGRATED_PREFIXES",
    "MAINNET",
    "NETWORK_PREFIXES",
    "STAGENET",
    "STANDARD_PREFIXES",
    "SUBADDRESS_PREFIXES",
    "TESTNET",
    "Address",
    "base58_decode",
    "base58_decode_addr",
    "base58_encode",
    "base58_encode_addr",
    "decode_address",
    "encode_address",
]

MAINNET = "mainnet"
TESTNET = "testnet"
STAGENET = "stagenet"

#: (standard, integrated, subaddress) prefixes per network (cryptonote_config.h).
#: Regtest uses the mainnet prefixes.
NETWORK_PREFIXES: dict[str, tuple[int, int, int]] = {
    MAINNET: (18, 19, 42),
    TESTNET: (53, 54, 63),
    STAGENET: (24, 25, 36),
}
STANDARD_PREFIXES = frozenset(p[0] for p in NETWORK_PREFIXES.values())
INTEGRATED_PREFIXES = frozenset(p[1] for p in NETWORK_PREFIXES.values())
SUBADDRESS_PREFIXES = frozenset(p[2] for p in NETWORK_PREFIXES.values())
_ALL_PREFIXES = STANDARD_PREFIXES | INTEGRATED_PREFIXES | SUBADDRESS_PREFIXES

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {ch: i for i, ch in enumerate(_ALPHABET)}
_ENCODED_SIZES = (0, 2, 3, 5, 6, 7, 9, 10, 11)
_DECODED_SIZES = {enc: dec for dec, enc in enumerate(_ENCODED_SIZES)}
_BLOCK = 8
_ENCODED_BLOCK = 11
_CHECKSUM = 4
_PAYMENT_ID = 8


@dataclass(frozen=True, slots=True)
class Address:
    """A decoded address. ``payment_id`` is set only for integrated addresses."""

    prefix: int
    spend_public: bytes
    view_public: bytes
    payment_id: bytes | None = None

    @property
    def network(self) -> str:
        """Which network the prefix belongs to (regtest addresses read as mainnet)."""
        for name, prefixes in NETWORK_PREFIXES.items():
            if self.prefix in prefixes:
                return name
        raise WireError(f"unknown address prefix {self.prefix}")

    @property
    def is_subaddress(self) -> bool:
        """True for a subaddress (its keys are not a wallet's main keys)."""
        return self.prefix in SUBADDRESS_PREFIXES


def base58_encode(data: bytes) -> str:
    """Encode bytes with Monero's block-wise base58."""
    out = []
    for i in range(0, len(data), _BLOCK):
        block = data[i : i + _BLOCK]
        num = int.from_bytes(block, "big")
        chars = []
        for _ in range(_ENCODED_SIZES[len(block)]):
            num, digit = divmod(num, 58)
            chars.append(_ALPHABET[digit])
        out.append("".join(reversed(chars)))
    return "".join(out)


def base58_decode(text: str) -> bytes:
    """Decode Monero base58; raises ``WireError`` on a bad length, character or overflow."""
    out = bytearray()
    for i in range(0, len(text), _ENCODED_BLOCK):
        chunk = text[i : i + _ENCODED_BLOCK]
        size = _DECODED_SIZES.get(len(chunk))
        # a last block of 1, 4 or 8 characters decodes to no whole number of bytes
        if size is None or size == 0:
            raise WireError(f"invalid base58 length {len(text)}")
        num = 0
        for ch in chunk:
            digit = _INDEX.get(ch)
            # only the 58 alphabet characters are allowed
            if digit is None:
                raise WireError(f"invalid base58 character {ch!r}")
            num = num * 58 + digit
        # the block's value must fit in the bytes it decodes to (monerod checks 64-bit overflow
        # for full blocks and the byte count for short ones: both are this one test)
        if num >= 1 << (8 * size):
            raise WireError("base58 block overflows its size")
        out += num.to_bytes(size, "big")
    return bytes(out)


def base58_encode_addr(tag: int, data: bytes) -> str:
    """``base58(varint(tag) ‖ data ‖ keccak256(varint(tag) ‖ data)[:4])`` (encode_addr)."""
    body = encode_varint(tag) + data
    return base58_encode(body + keccak256(body)[:_CHECKSUM])


def base58_decode_addr(text: str) -> tuple[int, bytes]:
    """Undo ``base58_encode_addr``: check the checksum, return ``(tag, data)`` (decode_addr)."""
    raw = base58_decode(text)
    # there must be something besides the checksum
    if len(raw) <= _CHECKSUM:
        raise WireError("address too short")
    body, checksum = raw[:-_CHECKSUM], raw[-_CHECKSUM:]
    # the checksum catches typos
    if keccak256(body)[:_CHECKSUM] != checksum:
        raise WireError("address checksum mismatch")
    try:
        tag, pos = decode_varint(body, 0)
    except BlockFormatError as e:
        raise WireError(f"bad address prefix: {e}") from None
    return tag, body[pos:]


def encode_address(
    spend_pub: bytes, view_pub: bytes, prefix: int = 18, payment_id: bytes | None = None
) -> str:
    """Encode an address. ``prefix`` 18 is mainnet (also regtest), 53 testnet, 24 stagenet."""
    # both keys are 32-byte points
    if len(spend_pub) != 32 or len(view_pub) != 32:
        raise WireError("address keys must be 32 bytes")
    data = spend_pub + view_pub
    if payment_id is not None:
        # an integrated address carries an 8-byte payment id
        if len(payment_id) != _PAYMENT_ID:
            raise WireError("payment id must be 8 bytes")
        data += payment_id
    return base58_encode_addr(prefix, data)


def decode_address(text: str) -> Address:
    """Decode and check an address as monerod's ``get_account_address_from_str`` does.

    The checks, in monerod's order: base58, checksum, prefix varint, a known prefix, the body
    length for that kind, and both keys decoding as points (``check_key``). monerod accepts
    only its own network's prefixes; this accepts all three networks and leaves the choice to
    the caller (``Address.network``).
    """
    prefix, data = base58_decode_addr(text)
    # the prefix must be one monerod knows
    if prefix not in _ALL_PREFIXES:
        raise WireError(f"unknown address prefix {prefix}")
    expected = 64 + (_PAYMENT_ID if prefix in INTEGRATED_PREFIXES else 0)
    # the body must be exactly the keys (and payment id) for this kind of address
    if len(data) != expected:
        raise WireError(f"address body is {len(data)} bytes, expected {expected}")
    spend, view = data[:32], data[32:64]
    # both keys must decode as curve points
    if not (check_key(spend) and check_key(view)):
        raise WireError("address keys are not valid points")
    return Address(
        prefix=prefix,
        spend_public=spend,
        view_public=view,
        payment_id=data[64:] if prefix in INTEGRATED_PREFIXES else None,
    )
