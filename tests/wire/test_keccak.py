"""Keccak-256 against Monero's own cn_fast_hash vectors (tests/hash/tests-fast.txt)."""

import hashlib
from pathlib import Path

import pytest

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
