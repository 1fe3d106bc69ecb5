"""Keccak-256 against Monero's own cn_fast_hash vectors (tests/hash/tests-fast.txt) and,
differentially, against pycryptodome's Keccak."""

import hashlib
from pathlib import Path

import pytest
from Crypto.Hash import keccak as _keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.wire.keccak import keccak256

_VECTORS = [
    line.split()
    for line in (Path(__file__).parent / "data" / "monero-tests-fast.txt").read_text().splitlines()
    if line.strip()
]


def test_empty_input_vector() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


@pytest.mark.parametrize(("expected", "data"), _VECTORS)
def test_monero_fast_hash_vectors(expected: str, data: str) -> None:
    # Monero's vector file writes the empty input as "x"
    assert keccak256(b"" if data == "x" else bytes.fromhex(data)).hex() == expected


def test_is_not_nist_sha3() -> None:
    # the padding differs, so every digest differs
    assert keccak256(b"abc") != hashlib.sha3_256(b"abc").digest()


def _exact_size(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


# Lengths around the 136-byte rate, where the padding moves into its own block or shares the
# last byte (0x01 ^ 0x80), plus arbitrary ones.
_RATE_EDGES = [0, 1, 134, 135, 136, 137, 271, 272, 273]


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=700), st.sampled_from(_RATE_EDGES).flatmap(_exact_size)))
def test_matches_pycryptodome(data: bytes) -> None:
    assert keccak256(data) == _keccak.new(data=data, digest_bits=256).digest()


def test_accepts_any_bytes_like() -> None:
    data = b"monero" * 50
    assert keccak256(bytearray(data)) == keccak256(memoryview(data)) == keccak256(data)


@pytest.mark.parametrize("size", [4095, 4096, 4097, 100_000])
def test_long_inputs_match_pycryptodome(size: int) -> None:
    # from 4096 bytes on, the digest is computed with the GIL released
    data = bytes(i * 7 % 251 for i in range(size))
    assert keccak256(data) == _keccak.new(data=data, digest_bits=256).digest()
