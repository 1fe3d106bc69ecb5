"""The 208-character client id: construction, monerod's acceptance rules, robustness."""

import ctypes
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings

from rpcpay.wire.client_id import (
    CLIENT_ID_LENGTH,
    TIMESTAMP_LEEWAY_US,
    ClientAuth,
    make_client_id,
    parse_timestamp,
    public_key_hex,
    verify_client_id,
    verify_client_id_reference,
)
from rpcpay.wire.ed25519 import L, generate_keypair, generate_signature, hash_to_scalar
from rpcpay.wire.keccak import keccak256

NOW = 1_700_000_000_000_000  # 2023-11-14, µs
SK, PUB = generate_keypair()


def signed_id(ts_text: str, sk: bytes = SK, pub: bytes = PUB) -> str:
    """A client id whose 16 timestamp characters are exactly ``ts_text``."""
    assert len(ts_text) == 16
    sig = generate_signature(keccak256(ts_text.encode()), pub, sk)
    return pub.hex() + ts_text + sig.hex()


def test_layout() -> None:
    cid = make_client_id(SK, NOW)
    assert len(cid) == CLIENT_ID_LENGTH == 208
    assert cid == cid.lower()
    assert cid[:64] == PUB.hex()
    assert cid[64:80] == f"{NOW:016x}"
    assert int(cid[64:80], 16) == NOW


def test_round_trip() -> None:
    auth = verify_client_id(make_client_id(SK, NOW), NOW)
    assert auth == ClientAuth(public_key=PUB, timestamp_us=NOW)
    assert public_key_hex(auth) == PUB.hex()


def test_bytes_input_accepted() -> None:
    assert verify_client_id(make_client_id(SK, NOW).encode(), NOW) is not None


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (0, True),
        (TIMESTAMP_LEEWAY_US, True),
        (-TIMESTAMP_LEEWAY_US, True),
        (TIMESTAMP_LEEWAY_US + 1, False),
        (-TIMESTAMP_LEEWAY_US - 1, False),
        (120_000_000, False),
        (-120_000_000, False),
    ],
)
def test_timestamp_window(offset: int, ok: bool) -> None:
    # the id's timestamp is NOW; the server clock is NOW - offset
    assert (verify_client_id(make_client_id(SK, NOW), NOW - offset) is not None) is ok


def test_upper_case_hex_accepted_same_key() -> None:
    cid = make_client_id(SK, NOW)
    upper = cid[:64].upper() + cid[64:80] + cid[80:].upper()
    auth = verify_client_id(upper, NOW)
    assert auth is not None
    assert auth.public_key == PUB


def test_upper_case_timestamp_is_its_own_signed_text() -> None:
    ts = f"{NOW:016X}"
    assert any(ch.isalpha() for ch in ts)
    # re-casing the signed text breaks the signature...
    cid = make_client_id(SK, NOW)
    assert verify_client_id(cid[:64] + ts + cid[80:], NOW) is None
    # ...but signing the upper-case text is fine: strtoull reads both cases
    auth = verify_client_id(signed_id(ts), NOW)
    assert auth is not None and auth.timestamp_us == NOW


@pytest.mark.parametrize(
    "template",
    [
        "+{:015x}",
        " {:015x}",
        "\t\n{:014x}",
        "0x{:014x}",
        "0X{:014x}",
        "+0x{:013x}",
        "{:013x}zzz",
        "{:013x}\x00ab",
        "{:013x} 12",
    ],
)
def test_strtoull_spellings_accepted(template: str) -> None:
    ts = template.format(NOW)
    assert len(ts) == 16, ts
    auth = verify_client_id(signed_id(ts), NOW)
    assert auth is not None and auth.timestamp_us == NOW


@pytest.mark.parametrize("ts", ["-" + f"{NOW:015x}", "zzzzzzzzzzzzzzzz", "ffffffffffffffff"])
def test_strtoull_spellings_out_of_window(ts: str) -> None:
    assert verify_client_id(signed_id(ts), NOW) is None


_libc = ctypes.CDLL(None)
_libc.strtoull.restype = ctypes.c_ulonglong
_libc.strtoull.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]


def libc_strtoull(text: bytes) -> int:
    return int(_libc.strtoull(text, None, 16))


@settings(max_examples=500)
@given(st.text(alphabet="0123456789abcdefABCDEFxX+- \t\n\v\f\rgz\x00", min_size=16, max_size=16))
def test_parse_timestamp_matches_libc(ts: str) -> None:
    raw = ts.encode()
    assert parse_timestamp(raw) == libc_strtoull(raw)


def _flip(hex_text: str, bit: int) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[bit // 8] ^= 1 << (bit % 8)
    return raw.hex()


CID = make_client_id(SK, NOW)


@given(st.integers(min_value=0, max_value=255))
def test_key_bit_flip_fails(bit: int) -> None:
    assert verify_client_id(_flip(CID[:64], bit) + CID[64:], NOW) is None


@given(st.integers(min_value=0, max_value=511))
def test_signature_bit_flip_fails(bit: int) -> None:
    assert verify_client_id(CID[:80] + _flip(CID[80:], bit), NOW) is None


@given(st.integers(min_value=0, max_value=63))
def test_timestamp_bit_flip_fails(bit: int) -> None:
    ts = f"{NOW ^ (1 << bit):016x}"
    # even a flip that keeps the time inside the window breaks the signature
    assert verify_client_id(CID[:64] + ts + CID[80:], NOW ^ (1 << bit)) is None


def test_non_canonical_signature_scalar_fails() -> None:
    c = int.from_bytes(bytes.fromhex(CID[80:144]), "little")
    if c + L < 2**256:
        bad_c = (c + L).to_bytes(32, "little").hex()
        assert verify_client_id(CID[:80] + bad_c + CID[144:], NOW) is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        CID[:-1],
        CID + "0",
        CID[:-2] + "é",  # 207 characters but 208 bytes: decodes, but 'é' is no hex digit
        CID[:-1] + "é",  # 208 characters but 209 bytes: monerod measures bytes
        CID[:10] + "\ud800" + CID[11:],  # a lone surrogate cannot be UTF-8
        CID[:10] + " " + CID[11:],
        CID[:100] + "g" + CID[101:],
    ],
)
def test_malformed_refused(bad: str) -> None:
    assert verify_client_id(bad, NOW) is None


@given(st.text(min_size=208, max_size=208))
def test_never_raises_on_208_chars(text: str) -> None:
    assert verify_client_id(text, NOW) is None


@given(st.text(max_size=300), st.integers(min_value=-(2**70), max_value=2**70))
def test_never_raises_on_any_text(text: str, now: int) -> None:
    verify_client_id(text, now)


@given(st.binary(max_size=300))
def test_never_raises_on_bytes(raw: bytes) -> None:
    verify_client_id(raw, NOW)


@given(st.text(alphabet="0123456789abcdefABCDEF", min_size=208, max_size=208))
def test_never_raises_on_hex(text: str) -> None:
    assert verify_client_id(text, NOW) is None


def test_make_refuses_bad_timestamp() -> None:
    with pytest.raises(ValueError):
        make_client_id(SK, -1)
    with pytest.raises(ValueError):
        make_client_id(SK, 2**64)


def test_fast_enough_for_every_call() -> None:
    cid = make_client_id(SK, NOW)
    n = 300
    start = time.perf_counter()
    for _ in range(n):
        assert verify_client_id(cid, NOW) is not None
    per_call = (time.perf_counter() - start) / n
    assert per_call < 0.002, f"{per_call * 1e6:.0f} µs per verification"


# --- The C fast path against the Python reference (verify_client_id_reference). ---

SK_INT = int.from_bytes(SK, "little")
TS_TEXT = f"{NOW:016x}"
IDENTITY_KEY = b"\x01" + bytes(31)
SMALL_ORDER_KEY = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def with_signature(c: int, r: int, key: bytes = PUB, ts_text: str = TS_TEXT) -> str:
    return key.hex() + ts_text + c.to_bytes(32, "little").hex() + r.to_bytes(32, "little").hex()


def forged_for_identity_key(r: int) -> str:
    # With the identity as key, comm = r*G whatever c is, so c = Hs(prefix || key || r*G)
    # verifies under monerod's rules: anybody can sign for it (a deliberate refusal of ours).
    comm_g = bytes(bindings.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little")))
    prefix = keccak256(TS_TEXT.encode())
    c = int.from_bytes(hash_to_scalar(prefix + IDENTITY_KEY + comm_g), "little")
    return with_signature(c, r, IDENTITY_KEY)


def _plus_l(cid: str, on_c: bool) -> str:
    c, r = int.from_bytes(bytes.fromhex(cid[80:144]), "little"), bytes.fromhex(cid[144:])
    if on_c:
        return with_signature(c + L, int.from_bytes(r, "little"), ts_text=cid[64:80])
    return with_signature(c, int.from_bytes(r, "little") + L, ts_text=cid[64:80])


def identity_commitment_id() -> str:
    # r = -c*sk makes c*P + r*G the neutral point; the key's owner can then pick
    # c = Hs(prefix || key || identity) and the hash matches: only the refusal of an identity
    # commitment stops it (monerod's rule).
    c = int.from_bytes(hash_to_scalar(keccak256(TS_TEXT.encode()) + PUB + IDENTITY_KEY), "little")
    return with_signature(c, (-c * SK_INT) % L)


def _id_variants() -> st.SearchStrategy[str]:
    valid = st.integers(min_value=-TIMESTAMP_LEEWAY_US - 5, max_value=TIMESTAMP_LEEWAY_US + 5).map(
        lambda offset: make_client_id(SK, NOW + offset)
    )
    scalar = st.one_of(
        st.integers(min_value=0, max_value=2**256 - 1), st.sampled_from([0, 1, L - 1, L, L + 1])
    )
    keys = st.one_of(
        st.just(PUB),
        st.sampled_from([SMALL_ORDER_KEY, IDENTITY_KEY, (2**255 - 19).to_bytes(32, "little")]),
        st.binary(min_size=32, max_size=32),
    )
    nonzero = st.integers(min_value=1, max_value=L - 1)
    return st.one_of(
        valid,
        # one character of a valid id replaced by anything
        st.tuples(valid, st.integers(0, 207), st.characters(max_codepoint=0x7F)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
        ),
        # upper-casing any part of a valid id
        st.tuples(valid, st.integers(0, 207), st.integers(0, 208)).map(
            lambda t: t[0][: t[1]] + t[0][t[1] : t[2]].upper() + t[0][t[2] :]
        ),
        # arbitrary scalars (non-canonical, zero) and keys (refused, small order, not points)
        st.builds(with_signature, scalar, scalar, keys),
        # a valid signature with c or r made non-canonical by adding L
        st.tuples(valid, st.booleans()).map(lambda t: _plus_l(*t)),
        nonzero.map(forged_for_identity_key),
        st.text(alphabet="0123456789abcdefABCDEF", min_size=208, max_size=208),
        st.text(min_size=206, max_size=210),
    )


@settings(max_examples=500, deadline=None)
@given(_id_variants())
def test_fast_path_matches_reference(cid: str) -> None:
    assert verify_client_id(cid, NOW) == verify_client_id_reference(cid, NOW)
    raw = cid.encode("utf-8", "surrogatepass")
    assert verify_client_id(raw, NOW) == verify_client_id_reference(raw, NOW)


def test_fast_path_on_crafted_ids() -> None:
    # each of these would be accepted if its one check were missing
    valid = make_client_id(SK, NOW)
    crafted = [
        valid,
        identity_commitment_id(),
        forged_for_identity_key(7),
        forged_for_identity_key(L - 1),
        _plus_l(valid, on_c=True),
        _plus_l(valid, on_c=False),
    ]
    verdicts = [verify_client_id_reference(cid, NOW) is not None for cid in crafted]
    assert verdicts == [True, False, False, False, False, False]
    for cid in crafted:
        assert verify_client_id(cid, NOW) == verify_client_id_reference(cid, NOW)


def test_fast_path_on_every_single_byte_substitution() -> None:
    # every byte value at every position of a valid id: non-hex bytes in the key or signature,
    # any change of the signed timestamp text
    valid = make_client_id(SK, NOW).encode()
    for pos in range(CLIENT_ID_LENGTH):
        for value in range(256):
            if value == valid[pos]:
                continue
            cid = valid[:pos] + bytes([value]) + valid[pos + 1 :]
            assert verify_client_id(cid, NOW) == verify_client_id_reference(cid, NOW), (pos, value)
