"""The 208-character client id: construction, monerod's acceptance rules, robustness."""

import ctypes
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.wire.client_id import (
    CLIENT_ID_LENGTH,
    TIMESTAMP_LEEWAY_US,
    ClientAuth,
    make_client_id,
    parse_timestamp,
    public_key_hex,
    verify_client_id,
)
from rpcpay.wire.ed25519 import L, generate_keypair, generate_signature
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
