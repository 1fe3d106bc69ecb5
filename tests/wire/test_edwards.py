"""The C double-scalar multiply agrees with libsodium and with a slow integer reference.

libsodium covers prime-order points and reduced scalars; the integer reference (the affine
addition law, double-and-add) covers everything else the function accepts: any 256-bit
scalars, small-order and mixed-order points, and encodings that must not decode.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as nacl

from rpcpay.wire import _edwards
from rpcpay.wire.ed25519 import L, check_key

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


# --- An independent slow reference: the curve's affine addition law on Python integers. ---

_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
Affine = tuple[int, int]
_NEUTRAL: Affine = (0, 1)


def ref_decode(enc: bytes) -> Affine | None:
    """Monero's ge_frombytes_vartime on integers: y < p, x from x^2 = (y^2-1)/(dy^2+1), sign."""
    y = int.from_bytes(enc, "little") & (2**255 - 1)
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x2 = u * pow(v, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if x * x % _P != x2:
        x = x * _SQRT_M1 % _P
    if x * x % _P != x2:
        return None
    if x & 1 != enc[31] >> 7:
        if x == 0:
            return None
        x = _P - x
    return (x, y)


def ref_add(p: Affine, q: Affine) -> Affine:
    """-x^2 + y^2 = 1 + d x^2 y^2: the addition law, complete since d is not a square."""
    (x1, y1), (x2, y2) = p, q
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P
    return (x3, y3)


def ref_mul(k: int, p: Affine) -> Affine:
    """k*p by plain double-and-add over every bit of k (k >= 0, not reduced)."""
    acc = _NEUTRAL
    for bit in bin(k)[2:]:
        acc = ref_add(acc, acc)
        if bit == "1":
            acc = ref_add(acc, p)
    return acc


def ref_encode(p: Affine) -> bytes:
    x, y = p
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _base_point() -> Affine:
    point = ref_decode(bytes([0x58]) + bytes([0x66]) * 31)
    assert point is not None
    return point


_G = _base_point()


def reference(a: int, enc: bytes, b: int) -> bytes | None:
    """a*P + b*G with the integers a and b taken whole (P may have a small-order part)."""
    point = ref_decode(enc)
    if point is None:
        return None
    return ref_encode(ref_add(ref_mul(a, point), ref_mul(b, _G)))


# The eight points of order dividing 8 (libsodium's small-order list), all of which Monero's
# decoder accepts.
SMALL_ORDER = [
    bytes.fromhex(h)
    for h in [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    ]
]
# Encodings that must not decode: x = 0 with the sign bit set (y = 1 and y = -1), y = p and
# y = 2^255 - 1 (non-canonical), and y = 2 (no x).
NOT_POINTS = [
    (1 | 1 << 255).to_bytes(32, "little"),
    ((_P - 1) | 1 << 255).to_bytes(32, "little"),
    _P.to_bytes(32, "little"),
    (2**255 - 1).to_bytes(32, "little"),
    (2**256 - 1).to_bytes(32, "little"),
    (2).to_bytes(32, "little"),
]
EDGE_SCALARS = [0, 1, 2, 15, 16, 127, 128, L - 1, L, L + 1, 8 * L, 2**252, 2**255, 2**256 - 1]
# Long runs of ones make every wNAF window negative and carry all the way to the top.
ones_runs = st.builds(
    lambda length, shift: (((1 << length) - 1) << shift) % 2**256,
    st.integers(min_value=1, max_value=256),
    st.integers(min_value=0, max_value=255),
)
any_scalar = st.one_of(
    st.integers(min_value=0, max_value=2**256 - 1),
    # uniform 256-bit values (st.integers favours small ones), so the top windows see all bits
    st.binary(min_size=32, max_size=32).map(lambda raw: int.from_bytes(raw, "little")),
    st.sampled_from(EDGE_SCALARS),
    ones_runs,
)
prime_order_points = st.integers(min_value=1, max_value=L - 1).map(
    lambda k: bytes(nacl.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little")))
)
# Random encodings: about half decode, nearly all to mixed-order points; the rest must be None.
any_encoding = st.binary(min_size=32, max_size=32)
points = st.one_of(prime_order_points, any_encoding, st.sampled_from(SMALL_ORDER + NOT_POINTS))


def test_reference_lists_are_what_they_say() -> None:
    for enc in SMALL_ORDER:
        point = ref_decode(enc)
        assert point is not None and ref_mul(8, point) == _NEUTRAL
    assert len({ref_decode(enc) for enc in SMALL_ORDER}) == 8
    assert all(ref_decode(enc) is None for enc in NOT_POINTS)


@settings(max_examples=300, deadline=None)
@given(any_scalar, points, any_scalar)
def test_matches_integer_reference(a: int, enc: bytes, b: int) -> None:
    got = _edwards.double_scalarmult_base(a.to_bytes(32, "little"), enc, b.to_bytes(32, "little"))
    assert got == reference(a, enc, b)


@settings(max_examples=200, deadline=None)
@given(points)
def test_decoding_matches_check_key(enc: bytes) -> None:
    # rpcpay.wire.ed25519.check_key is the integer mirror of monerod's decoder.
    assert (_edwards.double_scalarmult_base(bytes(32), enc, bytes(32)) is not None) == check_key(
        enc
    )


@pytest.mark.parametrize("enc", SMALL_ORDER)
@pytest.mark.parametrize("a", EDGE_SCALARS)
def test_small_order_points_with_edge_scalars(enc: bytes, a: int) -> None:
    b = (a * 7 + 3) % 2**256
    got = _edwards.double_scalarmult_base(a.to_bytes(32, "little"), enc, b.to_bytes(32, "little"))
    assert got == reference(a, enc, b)


@pytest.mark.parametrize("top", range(64))
def test_every_top_window(top: int) -> None:
    # The six top bits decide how the last windows end (a negative digit at bit 251, a carry
    # into bit 256); the low bits vary with them so that the carry arrives both ways.
    a = top << 250 | (top * 0x9E3779B97F4A7C15) % 2**250
    b = (2**256 - 1) ^ (top << 249)
    point = (
        SMALL_ORDER[top % 8]
        if top % 3 == 0
        else bytes(nacl.crypto_scalarmult_ed25519_base_noclamp((top + 2).to_bytes(32, "little")))
    )
    got = _edwards.double_scalarmult_base(a.to_bytes(32, "little"), point, b.to_bytes(32, "little"))
    assert got == reference(a, point, b)


@settings(max_examples=200, deadline=None)
@given(any_scalar, points, any_scalar)
def test_prepared_key_gives_the_same_point(a: int, enc: bytes, b: int) -> None:
    a_bytes, b_bytes = a.to_bytes(32, "little"), b.to_bytes(32, "little")
    direct = _edwards.double_scalarmult_base(a_bytes, enc, b_bytes)
    prepared = _edwards.prepare_point(enc)
    if prepared is None:
        assert direct is None
    else:
        assert _edwards.double_scalarmult_prepared(a_bytes, prepared, b_bytes) == direct


def test_prepared_lengths_are_checked() -> None:
    prepared = _edwards.prepare_point(SMALL_ORDER[4])
    assert prepared is not None
    for bad in (prepared[:-1], prepared + b"\0", b""):
        with pytest.raises(ValueError):
            _edwards.double_scalarmult_prepared(bytes(32), bad, bytes(32))
    with pytest.raises(ValueError):
        _edwards.double_scalarmult_prepared(bytes(31), prepared, bytes(32))
    with pytest.raises(ValueError):
        _edwards.prepare_point(bytes(33))
