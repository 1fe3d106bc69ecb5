"""Monero varints: known encodings, round trip and monerod's refusals."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.errors import BlockFormatError
from rpcpay.wire.varint import MAX_VARINT, decode_varint, encode_varint


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
        (2**64 - 1, "ffffffffffffffffff01"),
    ],
)
def test_known_encodings(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded), 0) == (value, len(encoded) // 2)


@given(st.integers(min_value=0, max_value=MAX_VARINT), st.binary(max_size=8), st.binary())
def test_round_trip(value: int, before: bytes, after: bytes) -> None:
    enc = encode_varint(value)
    assert decode_varint(before + enc + after, len(before)) == (value, len(before) + len(enc))


@pytest.mark.parametrize("value", [-1, 2**64])
def test_encode_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)


@pytest.mark.parametrize(
    "bad",
    [
        "",  # nothing
        "80",  # continuation with nothing after
        "ffff",  # continuation with nothing after
        "8000",  # overlong: trailing zero group
        "ff8000",  # overlong further in
        "ffffffffffffffffff02",  # 2**64: bit 64 set
        "ffffffffffffffffff81",  # more than 64 bits via continuation
        "ffffffffffffffffffff01",  # 11 bytes
    ],
)
def test_refused(bad: str) -> None:
    with pytest.raises(BlockFormatError):
        decode_varint(bytes.fromhex(bad), 0)


@given(st.binary(max_size=12), st.integers(min_value=0, max_value=14))
def test_decode_never_raises_anything_else(buf: bytes, pos: int) -> None:
    try:
        value, end = decode_varint(buf, pos)
    except BlockFormatError:
        return
    assert 0 <= value <= MAX_VARINT
    # whatever decodes re-encodes to the same bytes: there is one encoding per value
    assert encode_varint(value) == buf[pos:end]
