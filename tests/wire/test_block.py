"""Block blobs: parsing, Monero's tree hash vectors, nonce and extra-nonce surgery.

The blobs here are assembled field by field from the layout in cryptonote_basic.h, not by the
code under test; the differential tests against monerod (test_monerod.py) use real ones.
"""

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.errors import BlockFormatError
from rpcpay.wire.block import (
    block_hashing_blob,
    client_extra_nonce,
    client_template,
    hash_block,
    miner_tx_hash,
    nonce_offset,
    parse_block,
    replace_extra_nonce,
    set_nonce,
    tree_hash,
)
from rpcpay.wire.keccak import keccak256

TIMESTAMP = 1_700_000_000  # needs a 5-byte varint
PREV = bytes(range(32))
TX_PUBKEY = bytes([0xAB]) * 32
OUT_KEY = bytes([0xCD]) * 32


def varint(n: int) -> bytes:
    # written out independently of rpcpay.wire.varint
    out = b""
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out += bytes([low | 0x80])
        else:
            return out + bytes([low])


def header(timestamp: int = TIMESTAMP, nonce: int = 0x11223344) -> bytes:
    return varint(16) + varint(16) + varint(timestamp) + PREV + nonce.to_bytes(4, "little")


def coinbase_prefix(version: int = 2, nonce_data: bytes = bytes(4), height: int = 1234) -> bytes:
    extra = b"\x01" + TX_PUBKEY + b"\x02" + bytes([len(nonce_data)]) + nonce_data
    return (
        varint(version)
        + varint(height + 60)  # unlock time
        + varint(1)
        + b"\xff"
        + varint(height)
        + varint(2)  # two outputs: a tagged key and a plain key
        + varint(600_000_000_000)
        + b"\x03"
        + OUT_KEY
        + b"\x5a"
        + varint(1)
        + b"\x02"
        + OUT_KEY
        + varint(len(extra))
        + extra
    )


def coinbase(version: int = 2, nonce_data: bytes = bytes(4), height: int = 1234) -> bytes:
    prefix = coinbase_prefix(version, nonce_data, height)
    return prefix + (b"\x00" if version == 2 else b"")


TX_HASHES = [keccak256(bytes([i])) for i in range(3)]


def block(txs: list[bytes] | None = None, **kw: int) -> bytes:
    txs = TX_HASHES if txs is None else txs
    return header(**kw) + coinbase() + varint(len(txs)) + b"".join(txs)


_TREE = [
    line.split()
    for line in (Path(__file__).parent / "data" / "monero-tests-tree.txt").read_text().splitlines()
    if line.strip()
]


@pytest.mark.parametrize(("root", "leaves"), _TREE)
def test_tree_hash_monero_vectors(root: str, leaves: str) -> None:
    raw = bytes.fromhex(leaves)
    hashes = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    assert tree_hash(hashes).hex() == root


def test_tree_hash_refuses_empty_and_bad_leaves() -> None:
    with pytest.raises(BlockFormatError):
        tree_hash([])
    with pytest.raises(BlockFormatError):
        tree_hash([b"short"])


def test_parse_fields() -> None:
    blob = block()
    b = parse_block(blob)
    assert (b.major_version, b.minor_version, b.timestamp) == (16, 16, TIMESTAMP)
    assert b.prev_id == PREV
    assert b.nonce == 0x11223344
    assert b.nonce_offset == 39
    assert b.miner_tx == coinbase()
    assert b.miner_tx_offset == 43
    assert b.miner_tx_height == 1234
    assert b.extra == b"\x01" + TX_PUBKEY + b"\x02\x04" + bytes(4)
    assert blob[b.extra_offset : b.extra_offset + len(b.extra)] == b.extra
    assert b.tx_hashes == tuple(TX_HASHES)


def test_nonce_offset_follows_timestamp_width() -> None:
    assert nonce_offset(block(timestamp=5)) == 35
    assert nonce_offset(block()) == 39
    assert parse_block(block(timestamp=5)).nonce_offset == 35


def test_miner_tx_hash_v2() -> None:
    # calculate_transaction_hash: H(H(prefix) || H(rct base) || H(prunable)) where a null
    # RingCT base is the single type byte 0 and a null prunable hash is 32 zero bytes
    expected = keccak256(keccak256(coinbase_prefix()) + keccak256(b"\x00") + bytes(32))
    assert miner_tx_hash(coinbase()) == expected


def test_miner_tx_hash_v1_hashes_whole_blob() -> None:
    tx = coinbase(version=1)
    assert miner_tx_hash(tx) == keccak256(tx)


def test_miner_tx_hash_refuses_trailing_bytes() -> None:
    with pytest.raises(BlockFormatError):
        miner_tx_hash(coinbase() + b"\x00")


def test_hashing_blob_and_block_id() -> None:
    blob = block()
    root = tree_hash([miner_tx_hash(coinbase()), *TX_HASHES])
    hb = header() + root + varint(4)
    assert block_hashing_blob(blob) == hb
    assert hash_block(blob) == keccak256(varint(len(hb)) + hb)


def test_hashing_blob_single_tx_uses_miner_tx_hash_as_root() -> None:
    blob = block(txs=[])
    assert block_hashing_blob(blob) == header() + miner_tx_hash(coinbase()) + b"\x01"


def test_set_nonce_on_block_and_hashing_blob() -> None:
    blob = block()
    changed = set_nonce(blob, 0xDEADBEEF)
    assert changed[39:43] == bytes.fromhex("efbeadde")
    assert changed[:39] == blob[:39] and changed[43:] == blob[43:]
    assert parse_block(changed).nonce == 0xDEADBEEF
    hb = block_hashing_blob(blob)
    assert set_nonce(hb, 7)[39:43] == b"\x07\x00\x00\x00"
    # the nonce is not part of the tree root, so both routes agree
    assert block_hashing_blob(changed) == set_nonce(hb, 0xDEADBEEF)
    with pytest.raises(ValueError):
        set_nonce(blob, 2**32)


def test_client_extra_nonce() -> None:
    pub = bytes(range(32))
    assert client_extra_nonce(pub) == keccak256(pub + b"X")[:4]
    with pytest.raises(ValueError):
        client_extra_nonce(b"short")


def test_replace_extra_nonce_builds_rpc_payment_layout() -> None:
    blob = block()
    reserved = parse_block(blob).extra_offset + 1 + 32 + 2
    data = b"\x01\x02\x03\x04"
    new = replace_extra_nonce(blob, reserved, data)
    assert len(new) == len(blob)
    b = parse_block(new)
    assert b.extra == b"\x01" + TX_PUBKEY + b"\x02\x04" + data
    assert b.miner_tx == coinbase(nonce_data=data)
    pub = bytes(32)
    assert client_template(blob, reserved, pub) == replace_extra_nonce(
        blob, reserved, keccak256(pub + b"\x58")[:4]
    )


@pytest.mark.parametrize("delta", [-1, 1, -3, -40, 200])
def test_replace_extra_nonce_refuses_outside_nonce(delta: int) -> None:
    blob = block()
    reserved = parse_block(blob).extra_offset + 1 + 32 + 2
    with pytest.raises(BlockFormatError):
        replace_extra_nonce(blob, reserved + delta, b"\x00" * 4)


def test_replace_extra_nonce_needs_a_nonce_field() -> None:
    tx = coinbase()
    # rebuild the coinbase with only a pubkey in extra
    extra = b"\x01" + TX_PUBKEY
    no_nonce = tx[: tx.index(b"\x01" + TX_PUBKEY) - 1] + varint(len(extra)) + extra + b"\x00"
    blob = header() + no_nonce + b"\x00"
    parse_block(blob)
    with pytest.raises(BlockFormatError):
        replace_extra_nonce(blob, 80, b"\x00")


def test_every_truncation_is_a_block_format_error() -> None:
    blob = block()
    for n in range(len(blob)):
        with pytest.raises(BlockFormatError):
            parse_block(blob[:n])
    with pytest.raises(BlockFormatError):
        parse_block(blob + b"\x00")


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        (b"\xff" + varint(1234), b"\xfe" + varint(1234)),  # not a gen input
        (b"\x03" + OUT_KEY, b"\x01" + OUT_KEY),  # script-hash output
    ],
)
def test_unsupported_fields(find: bytes, replace: bytes) -> None:
    blob = block()
    assert find in blob
    with pytest.raises(BlockFormatError):
        parse_block(blob.replace(find, replace, 1))


def test_nonzero_rct_type_refused() -> None:
    blob = header() + coinbase_prefix() + b"\x05" + varint(0)
    with pytest.raises(BlockFormatError):
        parse_block(blob)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_other_errors(raw: bytes) -> None:
    with contextlib.suppress(BlockFormatError):
        parse_block(raw)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_mutations_never_raise_other_errors(where: int, value: int) -> None:
    blob = bytearray(block())
    blob[where % len(blob)] = value
    try:
        b = parse_block(bytes(blob))
    except BlockFormatError:
        return
    block_hashing_blob(bytes(blob))
    assert b.nonce_offset == nonce_offset(bytes(blob))
