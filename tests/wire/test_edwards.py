"""The C double-scalar multiply agrees with libsodium's arithmetic, point by point."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as nacl

from rpcpay.wire import _edwards
from rpcpay.wire.ed25519 import L

scalars = st.integers(min_value=0, max_value=L - 1).map(lambda n: n.to_bytes(32, "little"))
nonzero = st.integers(min_value=1, max_value=L - 1).map(lambda n: n.to_bytes(32, "little"))
IDENTITY = b"\x01" + bytes(31)


def libsodium(a: bytes, point: bytes, b: bytes) -> bytes:
    """a*P + b*G with libsodium (identity results spelled out: libsodium refuses them)."""
    parts = []
    if a != bytes(32):
        parts.append(bytes(nacl.crypto_scalarmult_ed25519_noclamp(a, point)))
    if b != bytes(32):
        parts.append(bytes(nacl.crypto_scalarmult_ed25519_base_noclamp(b)))
    if not parts:
        return IDENTITY
    if len(parts) == 1:
        return parts[0]
    return bytes(nacl.crypto_core_ed25519_add(parts[0], parts[1]))


@settings(max_examples=300)
@given(nonzero, scalars, scalars)
def test_matches_libsodium(k: bytes, a: bytes, b: bytes) -> None:
    point = bytes(nacl.crypto_scalarmult_ed25519_base_noclamp(k))
    assert _edwards.double_scalarmult_base(a, point, b) == libsodium(a, point, b)


@given(nonzero)
def test_group_identities(k: bytes) -> None:
    # With P = k*G: 0*P + k*G = P, 1*P + 0*G = P, and (-1)*P + k*G is the identity.
    point = bytes(nacl.crypto_scalarmult_ed25519_base_noclamp(k))
    one = (1).to_bytes(32, "little")
    assert _edwards.double_scalarmult_base(bytes(32), point, k) == point
    assert _edwards.double_scalarmult_base(one, point, bytes(32)) == point
    minus_one = (L - 1).to_bytes(32, "little")
    assert _edwards.double_scalarmult_base(minus_one, point, k) == IDENTITY


def test_non_points_and_bad_lengths_are_refused() -> None:
    # y = 2 gives x^2 = 3 / (4d + 1), which is not a square: no point has that y.
    not_a_point = (2).to_bytes(32, "little")
    assert _edwards.double_scalarmult_base(bytes(32), not_a_point, bytes(32)) is None
    # y = p (non-canonical encoding of 0) is refused, as monerod refuses it.
    non_canonical = (2**255 - 19).to_bytes(32, "little")
    assert _edwards.double_scalarmult_base(bytes(32), non_canonical, bytes(32)) is None
    try:
        _edwards.double_scalarmult_base(b"", bytes(32), bytes(32))
    except ValueError:
        pass
    else:
        raise AssertionError("a short scalar must raise ValueError")
