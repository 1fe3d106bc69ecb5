"""check_hash against monerod's rule, including a word-by-word model of check_hash_64."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.pow.difficulty import HASH_SPACE, check_hash, max_valid_hash

MASK64 = (1 << 64) - 1

hashes = st.binary(min_size=32, max_size=32)
difficulties = st.one_of(
    st.integers(min_value=1, max_value=1 << 20),
    st.integers(min_value=1, max_value=MASK64),
    st.integers(min_value=1, max_value=(1 << 128) - 1),
)


def _mul(a: int, b: int) -> tuple[int, int]:
    """64x64 -> 128-bit product as (low word, high word)."""
    p = a * b
    return p & MASK64, p >> 64


def _add_carry(a: int, b: int, carry_in: bool) -> tuple[int, bool]:
    s = a + b + int(carry_in)
    return s & MASK64, s > MASK64


def monerod_check_hash_64(hash32: bytes, difficulty: int) -> bool:
    """A model of monerod's check_hash_64 (difficulty.cpp), word by word: multiply each
    little-endian 64-bit word by the difficulty, add the partial products with carries, and
    accept only if nothing carries out of the fourth word."""
    w = [int.from_bytes(hash32[i : i + 8], "little") for i in range(0, 32, 8)]
    top, high = _mul(w[3], difficulty)
    if high != 0:
        return False
    _, cur = _mul(w[0], difficulty)
    low, high = _mul(w[1], difficulty)
    _, carry = _add_carry(cur, low, False)
    cur = high
    low, high = _mul(w[2], difficulty)
    _, carry = _add_carry(cur, low, carry)
    _, carry = _add_carry(high, top, carry)
    return not carry


def to_hash(n: int) -> bytes:
    return n.to_bytes(32, "little")


@given(hashes, st.integers(min_value=1, max_value=MASK64))
def test_matches_monerod_64bit_model(h: bytes, d: int) -> None:
    assert check_hash(h, d) == monerod_check_hash_64(h, d)


@given(difficulties)
def test_exact_boundary(d: int) -> None:
    bound = max_valid_hash(d)
    assert bound == (HASH_SPACE - 1) // d
    assert check_hash(to_hash(bound), d)
    # One above the boundary fails (when it is still a 256-bit number).
    if bound + 1 < HASH_SPACE:
        assert not check_hash(to_hash(bound + 1), d)
    # 2**256 // d itself is valid exactly when d does not divide 2**256.
    q = HASH_SPACE // d
    if q < HASH_SPACE:
        assert check_hash(to_hash(q), d) == (HASH_SPACE % d != 0)


@given(hashes, difficulties)
def test_monotonic_in_difficulty(h: bytes, d: int) -> None:
    # Harder targets accept a subset: valid at d+1 implies valid at d.
    if check_hash(h, d + 1):
        assert check_hash(h, d)


def test_fixed_points() -> None:
    assert check_hash(bytes(32), (1 << 128) - 1)  # zero hash meets every difficulty
    assert check_hash(b"\xff" * 32, 1)  # difficulty 1 accepts everything
    assert not check_hash(b"\xff" * 32, 2)
    # Little-endian: the last byte is the most significant.
    assert check_hash(b"\xff" * 31 + b"\x7f", 2)
    assert not check_hash(b"\x7f" + b"\xff" * 31, 2)


@pytest.mark.parametrize("d", [0, -1, True, 1.0])
def test_bad_difficulty(d: object) -> None:
    with pytest.raises(ValueError):
        check_hash(bytes(32), d)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        max_valid_hash(d)  # type: ignore[arg-type]


def test_bad_hash_length() -> None:
    with pytest.raises(ValueError):
        check_hash(bytes(31), 1)
