"""Monero's varint: unsigned 64-bit integers in little-endian groups of 7 bits.

Each byte carries 7 bits, low group first; the high bit says another byte follows. Decoding
follows ``common/varint.h`` exactly, because accepting an encoding monerod refuses (or the
reverse) would let two different byte strings mean the same block: overlong encodings (a
final zero group) and values beyond 2**64 - 1 are errors, as is running out of bytes.
"""

from rpcpay.errors import BlockFormatError

__all__ = ["MAX_VARINT", "decode_varint", "encode_varint"]

#: The largest value a varint may carry (monerod reads them into uint64_t).
MAX_VARINT = 2**64 - 1


def encode_varint(n: int) -> bytes:
    """Encode ``n`` (0 ≤ n < 2**64) as a Monero varint."""
    # only unsigned 64-bit values exist on the wire
    if not 0 <= n <= MAX_VARINT:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode the varint at ``buf[pos:]``; return ``(value, position after it)``."""
    value = 0
    shift = 0
    while True:
        # the varint must not run past the end of the buffer
        if pos >= len(buf):
            raise BlockFormatError(f"truncated varint at offset {pos}")
        byte = buf[pos]
        pos += 1
        # the group that reaches bit 63 may only carry the bits that still fit in 64
        if shift + 7 >= 64 and byte >= 1 << (64 - shift):
            raise BlockFormatError(f"varint overflows 64 bits at offset {pos - 1}")
        # a zero group after the first is an overlong (non-canonical) encoding
        if byte == 0 and shift != 0:
            raise BlockFormatError(f"overlong varint at offset {pos - 1}")
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
