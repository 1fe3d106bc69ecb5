"""Monero's Schnorr signatures: sign/verify, canonicality rules and refusal without raising."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings

from rpcpay.errors import WireError
from rpcpay.wire import ed25519
from rpcpay.wire.ed25519 import (
    L,
    check_key,
    check_signature,
    generate_keypair,
    generate_signature,
    hash_to_scalar,
    random_scalar,
    secret_to_public,
)
from rpcpay.wire.keccak import keccak256

# RFC 8032's base point B, the public key of the scalar 1
BASE_POINT = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")
IDENTITY = bytes.fromhex("01" + "00" * 31)
# a point of order 2, (0, -1)
ORDER_2 = bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")

secrets = st.integers(min_value=1, max_value=L - 1).map(lambda n: n.to_bytes(32, "little"))
hashes = st.binary(min_size=32, max_size=32)


def le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def test_hash_to_scalar_is_keccak_mod_l() -> None:
    for data in (b"", b"abc", bytes(100)):
        expected = int.from_bytes(keccak256(data), "little") % L
        assert hash_to_scalar(data) == le(expected)


@given(st.binary(max_size=200))
def test_hash_to_scalar_matches_libsodium_reduce(data: bytes) -> None:
    reduced = bindings.crypto_core_ed25519_scalar_reduce(keccak256(data) + bytes(32))
    assert hash_to_scalar(data) == bytes(reduced)


def test_secret_to_public_known() -> None:
    assert secret_to_public(le(1)) == BASE_POINT


@pytest.mark.parametrize("bad", [le(0), le(L), le(L + 5), b"\x01" * 31])
def test_secret_to_public_refuses(bad: bytes) -> None:
    with pytest.raises(WireError):
        secret_to_public(bad)


def test_random_scalar_is_canonical_and_nonzero() -> None:
    seen = {random_scalar() for _ in range(50)}
    assert len(seen) == 50
    assert all(0 < int.from_bytes(s, "little") < L for s in seen)


@settings(max_examples=50)
@given(secrets, hashes, hashes)
def test_sign_then_verify(sk: bytes, h: bytes, other: bytes) -> None:
    pub = secret_to_public(sk)
    sig = generate_signature(h, pub, sk)
    assert len(sig) == 64
    assert check_signature(h, pub, sig)
    if other != h:
        assert not check_signature(other, pub, sig)


def test_wrong_key_fails() -> None:
    sk, pub = generate_keypair()
    _, pub2 = generate_keypair()
    h = keccak256(b"m")
    sig = generate_signature(h, pub, sk)
    assert not check_signature(h, pub2, sig)


def test_signature_needs_matching_key() -> None:
    sk, _ = generate_keypair()
    _, pub2 = generate_keypair()
    with pytest.raises(WireError):
        generate_signature(bytes(32), pub2, sk)


def test_non_canonical_scalars_refused() -> None:
    sk, pub = generate_keypair()
    h = keccak256(b"m")
    sig = generate_signature(h, pub, sk)
    c, r = int.from_bytes(sig[:32], "little"), int.from_bytes(sig[32:], "little")
    # c + L and r + L are the same scalars mod L: libsodium's reduce would accept them,
    # monerod's sc_check does not
    if c + L < 2**256:
        assert not check_signature(h, pub, le(c + L) + sig[32:])
    if r + L < 2**256:
        assert not check_signature(h, pub, sig[:32] + le(r + L))


def test_zero_c_refused_without_raising() -> None:
    _, pub = generate_keypair()
    assert not check_signature(bytes(32), pub, bytes(32) + le(5))


def test_zero_r_does_not_raise() -> None:
    _, pub = generate_keypair()
    assert not check_signature(bytes(32), pub, le(7) + bytes(32))


def test_forgery_with_small_order_key_refused() -> None:
    # with P = identity, c*P vanishes: pick r, set comm = r*G and c = Hs(h || P || comm).
    # monerod accepts this (anyone can "sign" for the identity); we refuse small-order keys.
    h = keccak256(b"m")
    r = le(12345)
    comm = bindings.crypto_scalarmult_ed25519_base_noclamp(r)
    c = hash_to_scalar(h + IDENTITY + comm)
    assert not check_signature(h, IDENTITY, c + r)


@given(hashes, st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
def test_check_never_raises(h: bytes, pub: bytes, sig: bytes) -> None:
    assert check_signature(h, pub, sig) in (True, False)


@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=80))
def test_check_never_raises_on_any_lengths(h: bytes, pub: bytes, sig: bytes) -> None:
    assert check_signature(h, pub, sig) in (True, False)


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        (BASE_POINT, True),
        (IDENTITY, True),  # monerod's check_key accepts small-order points
        (ORDER_2, True),
        (IDENTITY[:31] + b"\x80", False),  # x = 0 with the sign bit set
        (le(2**255 - 19), False),  # y = p is not reduced
        (le(2**255 - 1), False),  # y > p
    ],
)
def test_check_key(key: bytes, valid: bool) -> None:
    assert check_key(key) is valid


def test_check_key_is_square_test() -> None:
    # a y decodes iff x^2 = (y^2 - 1) / (d y^2 + 1) is a square mod p (Euler's criterion)
    p = 2**255 - 19
    d = -121665 * pow(121666, p - 2, p) % p
    outcomes = set()
    for y in range(2, 60):
        x2 = (y * y - 1) * pow(d * y * y + 1, p - 2, p) % p
        square = x2 == 0 or pow(x2, (p - 1) // 2, p) == 1
        outcomes.add(square)
        assert check_key(le(y)) is square
    assert outcomes == {True, False}


@given(st.binary(min_size=32, max_size=32))
def test_check_key_accepts_whatever_libsodium_accepts(key: bytes) -> None:
    if bindings.crypto_core_ed25519_is_valid_point(key):
        assert check_key(key)


@given(secrets)
def test_check_key_on_real_keys(sk: bytes) -> None:
    assert check_key(secret_to_public(sk))


def test_module_exports() -> None:
    for name in ed25519.__all__:
        assert hasattr(ed25519, name)
