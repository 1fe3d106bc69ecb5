"""monerod's wire formats and crypto, in Python plus libsodium and one small C extension.

Everything here is a fact about monerod 0.18 (checked against its source and, in the tests,
against a running monerod): Keccak (``cn_fast_hash``), Monero's ed25519 Schnorr signatures, the
208-character client id, varints, block blobs and hashing blobs, the per-client extra nonce and
addresses. Nothing here does I/O. The C extension ``_edwards`` holds what every paid call pays
for: Keccak-256, the variable-time ``c*P + r*G`` and a client id's signature check.
"""

from rpcpay.wire.address import (
    MAINNET,
    STAGENET,
    TESTNET,
    Address,
    base58_decode,
    base58_encode,
    decode_address,
    encode_address,
)
from rpcpay.wire.block import (
    Block,
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
from rpcpay.wire.client_id import (
    CLIENT_ID_LENGTH,
    TIMESTAMP_LEEWAY_US,
    ClientAuth,
    make_client_id,
    public_key_hex,
    verify_client_id,
)
from rpcpay.wire.ed25519 import (
    check_signature,
    generate_keypair,
    generate_signature,
    hash_to_scalar,
    random_scalar,
    secret_to_public,
)
from rpcpay.wire.epee import Array as EpeeArray
from rpcpay.wire.epee import Int as EpeeInt
from rpcpay.wire.epee import Section as EpeeSection
from rpcpay.wire.epee import decode as epee_decode
from rpcpay.wire.epee import encode as epee_encode
from rpcpay.wire.keccak import keccak256
from rpcpay.wire.varint import decode_varint, encode_varint

__all__ = [
    "CLIENT_ID_LENGTH",
    "MAINNET",
    "STAGENET",
    "TESTNET",
    "TIMESTAMP_LEEWAY_US",
    "Address",
    "Block",
    "ClientAuth",
    "EpeeArray",
    "EpeeInt",
    "EpeeSection",
    "base58_decode",
    "base58_encode",
    "block_hashing_blob",
    "check_signature",
    "client_extra_nonce",
    "client_template",
    "decode_address",
    "decode_varint",
    "encode_address",
    "encode_varint",
    "epee_decode",
    "epee_encode",
    "generate_keypair",
    "generate_signature",
    "hash_block",
    "hash_to_scalar",
    "keccak256",
    "make_client_id",
    "miner_tx_hash",
    "nonce_offset",
    "parse_block",
    "public_key_hex",
    "random_scalar",
    "replace_extra_nonce",
    "secret_to_public",
    "set_nonce",
    "tree_hash",
    "verify_client_id",
]
