"""Block blobs as monerod's ``get_block_template`` returns them, and the hashes mined over them.

A block blob is::

    header   major varint | minor varint | timestamp varint | prev_id 32 B | nonce u32 LE
    miner tx version varint | unlock_time varint
             | vin: count varint, each 0xff (gen) + height varint
             | vout: count varint, each amount varint + 0x02 key 32 B
                                                   or 0x03 key 32 B + view tag 1 B
             | extra: length varint + bytes
             | (version 2) rct type byte, 0 (RCTTypeNull) for a coinbase
    tx hashes count varint + 32 B each

Miners do not hash the block itself but its *hashing blob* (``get_block_hashing_blob``):
the header, the Merkle root (``tree_hash``) of the miner tx hash followed by the other tx
hashes, and a varint of how many hashes went in. The nonce sits at the same offset in both
(39 whenever the timestamp varint is 5 bytes, as it is for any date between 2004 and 2514),
which is why ``set_nonce`` works on either.

Only what a coinbase can contain is parsed; anything else is a ``BlockFormatError`` rather than
a guess, since a mis-parse would make every share a client mines worthless.
"""

from dataclasses import dataclass

from rpcpay.errors import BlockFormatError
from rpcpay.wire.keccak import keccak256
from rpcpay.wire.varint import decode_varint, encode_varint

__all__ = [
    "RPC_PAYMENT_NONCE_KEY",
    "Block",
    "block_hashing_blob",
    "client_extra_nonce",
    "client_template",
    "hash_block",
    "miner_tx_hash",
    "nonce_offset",
    "parse_block",
    "replace_extra_nonce",
    "set_nonce",
    "tree_hash",
]

#: The domain-separation byte monerod appends to a client key (config::HASH_KEY_RPC_PAYMENT_NONCE).
RPC_PAYMENT_NONCE_KEY = 0x58

_HASH = 32
_TXIN_GEN = 0xFF
_TXOUT_TO_KEY = 0x02
_TXOUT_TO_TAGGED_KEY = 0x03
_RCT_TYPE_NULL = 0
_EXTRA_PADDING = 0x00
_EXTRA_PUBKEY = 0x01
_EXTRA_NONCE = 0x02
_EXTRA_MERGE_MINING = 0x03
_EXTRA_ADDITIONAL_PUBKEYS = 0x04
_EXTRA_MINERGATE = 0xDE


@dataclass(frozen=True, slots=True)
class Block:
    """A parsed block blob. Offsets are into the blob that was parsed."""

    major_version: int
    minor_version: int
    timestamp: int
    prev_id: bytes
    nonce: int
    nonce_offset: int
    miner_tx: bytes
    miner_tx_offset: int
    miner_tx_height: int
    extra_offset: int
    extra: bytes
    tx_hashes: tuple[bytes, ...]


def _take(buf: bytes, pos: int, n: int, what: str) -> tuple[bytes, int]:
    """Return ``buf[pos:pos+n]`` and the new position, refusing to read past the end."""
    # a fixed-size field must lie wholly inside the blob
    if pos + n > len(buf):
        raise BlockFormatError(f"truncated {what} at offset {pos}: need {n} bytes")
    return buf[pos : pos + n], pos + n


def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """``decode_varint`` with the field name in the error message."""
    try:
        return decode_varint(buf, pos)
    except BlockFormatError as e:
        raise BlockFormatError(f"bad {what}: {e}") from None


def nonce_offset(blob: bytes) -> int:
    """Offset of the 4-byte nonce in a block blob or a hashing blob (they share the header)."""
    pos = 0
    _, pos = _varint(blob, pos, "major version")
    _, pos = _varint(blob, pos, "minor version")
    _, pos = _varint(blob, pos, "timestamp")
    _, pos = _take(blob, pos, _HASH, "prev_id")
    # the nonce itself must be present
    _take(blob, pos, 4, "nonce")
    return pos


@dataclass(frozen=True, slots=True)
class _TxLayout:
    """Where the parts of a coinbase transaction are, relative to its first byte."""

    version: int
    height: int
    extra_offset: int
    extra_length: int
    prefix_end: int
    end: int


def _parse_miner_tx(buf: bytes, start: int) -> _TxLayout:
    """Walk a coinbase transaction starting at ``buf[start]``; offsets are absolute."""
    pos = start
    version, pos = _varint(buf, pos, "miner tx version")
    # only transaction versions 1 and 2 exist
    if version not in (1, 2):
        raise BlockFormatError(f"unsupported miner tx version {version}")
    _, pos = _varint(buf, pos, "unlock time")
    n_in, pos = _varint(buf, pos, "input count")
    # a coinbase has exactly one input, the generating one
    if n_in != 1:
        raise BlockFormatError(f"miner tx has {n_in} inputs, expected 1")
    tag, pos = _take(buf, pos, 1, "input tag")
    # that input must be txin_gen
    if tag[0] != _TXIN_GEN:
        raise BlockFormatError(f"miner tx input tag 0x{tag[0]:02x} is not txin_gen (0xff)")
    height, pos = _varint(buf, pos, "coinbase height")
    n_out, pos = _varint(buf, pos, "output count")
    for _ in range(n_out):
        _, pos = _varint(buf, pos, "output amount")
        tag, pos = _take(buf, pos, 1, "output tag")
        if tag[0] == _TXOUT_TO_KEY:
            _, pos = _take(buf, pos, _HASH, "output key")
        elif tag[0] == _TXOUT_TO_TAGGED_KEY:
            _, pos = _take(buf, pos, _HASH + 1, "tagged output key")
        else:
            # script outputs were never used on the chain; anything else is garbage
            raise BlockFormatError(f"unsupported output tag 0x{tag[0]:02x} at offset {pos - 1}")
    extra_len, pos = _varint(buf, pos, "extra length")
    extra_offset = pos
    _, pos = _take(buf, pos, extra_len, "extra")
    prefix_end = pos
    if version >= 2:
        rct, pos = _take(buf, pos, 1, "rct type")
        # a coinbase carries no ring signatures: its RingCT type is RCTTypeNull
        if rct[0] != _RCT_TYPE_NULL:
            raise BlockFormatError(f"miner tx rct type {rct[0]} is not RCTTypeNull (0)")
    # (a version-1 coinbase has no signatures: txin_gen signs nothing)
    return _TxLayout(version, height, extra_offset, extra_len, prefix_end, pos)


def parse_block(blob: bytes) -> Block:
    """Parse a block blob; raises ``BlockFormatError`` on anything it cannot account for."""
    pos = 0
    major, pos = _varint(blob, pos, "major version")
    minor, pos = _varint(blob, pos, "minor version")
    timestamp, pos = _varint(blob, pos, "timestamp")
    prev_id, pos = _take(blob, pos, _HASH, "prev_id")
    nonce_off = pos
    nonce_bytes, pos = _take(blob, pos, 4, "nonce")
    tx_start = pos
    layout = _parse_miner_tx(blob, tx_start)
    pos = layout.end
    count, pos = _varint(blob, pos, "tx hash count")
    # the declared hashes must fit in what is left, checked before allocating anything
    if count * _HASH != len(blob) - pos:
        raise BlockFormatError(
            f"{count} tx hashes need {count * _HASH} bytes, {len(blob) - pos} remain"
        )
    hashes = tuple(blob[pos + i * _HASH : pos + (i + 1) * _HASH] for i in range(count))
    return Block(
        major_version=major,
        minor_version=minor,
        timestamp=timestamp,
        prev_id=prev_id,
        nonce=int.from_bytes(nonce_bytes, "little"),
        nonce_offset=nonce_off,
        miner_tx=blob[tx_start : layout.end],
        miner_tx_offset=tx_start,
        miner_tx_height=layout.height,
        extra_offset=layout.extra_offset,
        extra=blob[layout.extra_offset : layout.extra_offset + layout.extra_length],
        tx_hashes=hashes,
    )


def miner_tx_hash(miner_tx: bytes) -> bytes:
    """The transaction id of a coinbase blob (``calculate_transaction_hash``).

    Version 1 hashes the whole blob. Version 2 hashes three hashes: the prefix, the RingCT
    base (for RCTTypeNull just the type byte 0) and the prunable part, which for
    RCTTypeNull is defined as 32 zero bytes rather than a hash of nothing.
    """
    layout = _parse_miner_tx(miner_tx, 0)
    # the blob must be exactly one transaction
    if layout.end != len(miner_tx):
        raise BlockFormatError(f"{len(miner_tx) - layout.end} stray bytes after miner tx")
    if layout.version == 1:
        return keccak256(miner_tx)
    prefix_hash = keccak256(miner_tx[: layout.prefix_end])
    base_hash = keccak256(miner_tx[layout.prefix_end :])
    return keccak256(prefix_hash + base_hash + bytes(_HASH))


def tree_hash(hashes: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Monero's Merkle root (``tree-hash.c``).

    Not a plain binary tree: with ``count`` leaves and ``cnt`` the largest power of two below
    ``count`` (for count ≥ 3), the first ``2*cnt - count`` leaves pass up unchanged and the
    rest are hashed in pairs, giving exactly ``cnt`` nodes, which are then halved pairwise.
    """
    count = len(hashes)
    # an empty tree has no root; a block always has at least its miner tx
    if count == 0:
        raise BlockFormatError("tree hash of no hashes")
    # every leaf is a 32-byte hash
    if any(len(h) != _HASH for h in hashes):
        raise BlockFormatError("tree hash leaves must be 32 bytes")
    if count == 1:
        return bytes(hashes[0])
    if count == 2:
        return keccak256(hashes[0] + hashes[1])
    cnt = 1 << ((count - 1).bit_length() - 1)
    kept = 2 * cnt - count
    nodes = list(hashes[:kept])
    nodes += [keccak256(hashes[i] + hashes[i + 1]) for i in range(kept, count, 2)]
    while len(nodes) > 2:
        nodes = [keccak256(nodes[i] + nodes[i + 1]) for i in range(0, len(nodes), 2)]
    return keccak256(nodes[0] + nodes[1])


def block_hashing_blob(blob: bytes) -> bytes:
    """The blob miners hash: header ‖ tree root of (miner tx, txs…) ‖ varint(number of txs)."""
    block = parse_block(blob)
    root = tree_hash([miner_tx_hash(block.miner_tx), *block.tx_hashes])
    return blob[: block.nonce_offset + 4] + root + encode_varint(1 + len(block.tx_hashes))


def hash_block(blob: bytes) -> bytes:
    """The block id: Keccak-256 of the hashing blob *as a serialized string*.

    ``get_object_hash`` serializes the hashing blob, which prefixes its length as a varint,
    so the id is ``keccak(varint(len) ‖ hashing blob)``. (Mainnet block 202612 has a
    hard-coded id in monerod; it is irrelevant to fresh templates and ignored here.)
    """
    hb = block_hashing_blob(blob)
    return keccak256(encode_varint(len(hb)) + hb)


def set_nonce(blob: bytes, nonce: int) -> bytes:
    """Return ``blob`` (block or hashing blob) with its nonce set to ``nonce`` (u32 LE)."""
    # the nonce field is a uint32
    if not 0 <= nonce < 2**32:
        raise ValueError(f"nonce out of range: {nonce}")
    off = nonce_offset(blob)
    return blob[:off] + nonce.to_bytes(4, "little") + blob[off + 4 :]


def client_extra_nonce(public_key: bytes) -> bytes:
    """The 4 extra-nonce bytes monerod gives a client: keccak256(key ‖ 0x58)[:4].

    Every client thus mines a different block (a different miner tx, so a different tree
    root), so shares cannot be replayed across clients.
    """
    # a client key is 32 bytes
    if len(public_key) != _HASH:
        raise ValueError("public key must be 32 bytes")
    return keccak256(public_key + bytes([RPC_PAYMENT_NONCE_KEY]))[:4]


def _nonce_field_span(extra: bytes) -> tuple[int, int]:
    """Locate the extra-nonce field's data in a tx extra: ``(start, end)`` relative to extra.

    Walks the tx_extra fields monerod knows (tx_extra.h): padding, tx pubkey, nonce,
    merge-mining tag, additional pubkeys and the MinerGate tag.
    """
    pos = 0
    found: tuple[int, int] | None = None
    while pos < len(extra):
        tag = extra[pos]
        pos += 1
        if tag == _EXTRA_PADDING:
            # padding runs to the end of extra and must be all zero
            if any(extra[pos:]):
                raise BlockFormatError("non-zero bytes in tx extra padding")
            pos = len(extra)
        elif tag == _EXTRA_PUBKEY:
            _, pos = _take(extra, pos, _HASH, "tx pubkey in extra")
        elif tag == _EXTRA_NONCE:
            size, pos = _take(extra, pos, 1, "extra nonce size")
            # only one nonce field: monerod's template has exactly one
            if found is not None:
                raise BlockFormatError("two extra nonce fields in tx extra")
            _, end = _take(extra, pos, size[0], "extra nonce")
            found = (pos, end)
            pos = end
        elif tag in (_EXTRA_MERGE_MINING, _EXTRA_MINERGATE):
            size_v, pos = _varint(extra, pos, "extra field size")
            _, pos = _take(extra, pos, size_v, "extra field")
        elif tag == _EXTRA_ADDITIONAL_PUBKEYS:
            n, pos = _varint(extra, pos, "additional pubkey count")
            _, pos = _take(extra, pos, n * _HASH, "additional pubkeys")
        else:
            raise BlockFormatError(f"unknown tx extra tag 0x{tag:02x}")
    # the template must have reserved a nonce field for us to fill
    if found is None:
        raise BlockFormatError("no extra nonce field in miner tx extra")
    return found


def replace_extra_nonce(blob: bytes, reserved_offset: int, data: bytes) -> bytes:
    """Overwrite the bytes reserved in the miner tx's extra nonce with ``data``.

    ``get_block_template`` with ``reserve_size=n`` builds the coinbase extra as
    ``0x01 ‖ tx pubkey (32) ‖ 0x02 ‖ n ‖ n zero bytes`` (``construct_miner_tx`` adds the
    pubkey then the nonce, and ``sort_tx_extra`` keeps that order) and sets
    ``reserved_offset`` to just past ``0x02 ‖ n``. rpc_payment.cpp's ``get_info`` instead asks
    for nonce ``42424242``, removes the nonce field and appends a new one with the client's 4
    bytes, giving ``0x01 ‖ pubkey ‖ 0x02 ‖ 0x04 ‖ client nonce``: byte for byte what filling a
    4-byte reservation here produces. The length never changes, so no offset moves.
    """
    block = parse_block(blob)
    start, end = _nonce_field_span(block.extra)
    start += block.extra_offset
    end += block.extra_offset
    # the reservation must lie inside the extra nonce field's data
    if not (start <= reserved_offset and reserved_offset + len(data) <= end):
        raise BlockFormatError(
            f"reserved range {reserved_offset}+{len(data)} is outside the extra nonce "
            f"field at {start}..{end}"
        )
    return blob[:reserved_offset] + data + blob[reserved_offset + len(data) :]


def client_template(blob: bytes, reserved_offset: int, public_key: bytes) -> bytes:
    """The block monerod's rpc payment code would make for this client from a template."""
    return replace_extra_nonce(blob, reserved_offset, client_extra_nonce(public_key))
