"""Monero base58 and addresses: Monero's own unit-test vectors and a real address."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.errors import WireError
from rpcpay.wire.address import (
    MAINNET,
    STAGENET,
    TESTNET,
    Address,
    base58_decode,
    base58_decode_addr,
    base58_encode,
    base58_encode_addr,
    decode_address,
    encode_address,
)
from rpcpay.wire.ed25519 import generate_keypair
from rpcpay.wire.keccak import keccak256

KNOWN = (
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)  # fmt: skip


# from monero's tests/unit_tests/base58.cpp (encode_block and encode)
@pytest.mark.parametrize(
    ("data", "text"),
    [
        ("00", "11"),
        ("39", "1z"),
        ("ff", "5Q"),
        ("0000", "111"),
        ("0039", "11z"),
        ("0100", "15R"),
        ("ffff", "LUv"),
        ("000000", "11111"),
        ("010000", "11LUw"),
        ("ffffff", "2UzHL"),
        ("ffffffff", "7YXq9G"),
        ("ffffffffff", "VtB5VXc"),
        ("ffffffffffff", "3CUsUpv9t"),
        ("ffffffffffffff", "Ahg1opVcGW"),
        ("ffffffffffffffff", "jpXCZedGfVQ"),
        ("0000000000000000", "11111111111"),
        ("000000000000003a", "11111111121"),
        ("06156013762879f7", "22222222222"),
        ("05e022ba374b2a00", "1z111111111"),
        ("06156013762879f7ffffffffff", "22222222222VtB5VXc"),
        ("", ""),
    ],
)
def test_base58_vectors(data: str, text: str) -> None:
    assert base58_encode(bytes.fromhex(data)) == text
    assert base58_decode(text) == bytes.fromhex(data)


# from monero's tests/unit_tests/base58.cpp (encode_decode_addr)
@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("PuT7GAdgbA819VwdWVDP", "11"),
        ("PuT7GAdgbA81efAfdCjPg", "2222"),
        ("PuT7GAdgbA83sryEt3YC8Q", "333333"),
        ("PuT7GAdgbA83tWUuc54PFP3b", "44444444"),
        ("PuT7GAdgbA83u9zaKrtRKZ1J6", "5555555555"),
    ],
)
def test_base58_addr_vectors(text: str, data: str) -> None:
    assert base58_encode_addr(0x1122334455667788, bytes.fromhex(data)) == text
    assert base58_decode_addr(text) == (0x1122334455667788, bytes.fromhex(data))


@pytest.mark.parametrize(
    "bad",
    [
        "1",  # a 1-character block decodes to nothing
        "1111",  # 4 characters: no block size
        "11111111111" + "1111",
        "0" + "1" * 10,  # '0' is not in the alphabet
        "I1",
        "l1",
        "zz",  # 58*58-1 does not fit in one byte
        "jpXCZedGfVR",  # 2**64 does not fit in 8 bytes
    ],
)
def test_base58_refused(bad: str) -> None:
    with pytest.raises(WireError):
        base58_decode(bad)


@given(st.binary(max_size=100))
def test_base58_round_trip(data: bytes) -> None:
    text = base58_encode(data)
    assert len(text) == (len(data) // 8) * 11 + [0, 2, 3, 5, 6, 7, 9, 10, 11][len(data) % 8]
    assert base58_decode(text) == data


def test_known_address() -> None:
    addr = decode_address(KNOWN)
    assert addr.prefix == 18
    assert addr.network == MAINNET
    assert not addr.is_subaddress
    assert addr.payment_id is None
    assert encode_address(addr.spend_public, addr.view_public) == KNOWN
    # the checksum is the first 4 bytes of keccak over prefix and keys
    raw = base58_decode(KNOWN)
    assert raw[-4:] == keccak256(raw[:-4])[:4]
    assert raw[:-4] == b"\x12" + addr.spend_public + addr.view_public


@pytest.mark.parametrize(
    ("prefix", "network", "first"),
    [(18, MAINNET, "4"), (53, TESTNET, "9A"), (24, STAGENET, "5"), (42, MAINNET, "8")],
)
def test_networks(prefix: int, network: str, first: str) -> None:
    _, spend = generate_keypair()
    _, view = generate_keypair()
    text = encode_address(spend, view, prefix)
    assert len(text) == 95
    assert text[0] in first  # the familiar leading characters of each network
    assert decode_address(text) == Address(prefix, spend, view)
    assert decode_address(text).network == network


def test_integrated_address() -> None:
    _, spend = generate_keypair()
    _, view = generate_keypair()
    pid = bytes.fromhex("0102030405060708")
    text = encode_address(spend, view, 19, pid)
    assert len(text) == 106
    assert decode_address(text) == Address(19, spend, view, pid)


def test_bad_checksum() -> None:
    # change one character of the encoded keys
    i = 40
    swapped = "2" if KNOWN[i] != "2" else "3"
    with pytest.raises(WireError):
        decode_address(KNOWN[:i] + swapped + KNOWN[i + 1 :])


def test_unknown_prefix_and_wrong_length() -> None:
    _, spend = generate_keypair()
    with pytest.raises(WireError):
        decode_address(base58_encode_addr(7, spend + spend))
    with pytest.raises(WireError):
        decode_address(base58_encode_addr(18, spend))
    with pytest.raises(WireError):
        decode_address(base58_encode_addr(19, spend + spend))  # integrated without payment id


def test_keys_must_be_points() -> None:
    _, spend = generate_keypair()
    not_a_point = (2**255 - 1).to_bytes(32, "little")  # y above p
    with pytest.raises(WireError):
        decode_address(base58_encode_addr(18, spend + not_a_point))


@given(st.text(max_size=120))
def test_decode_never_raises_other_errors(text: str) -> None:
    with contextlib.suppress(WireError):
        decode_address(text)
