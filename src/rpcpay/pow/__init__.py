"""Proof of work: RandomX through ctypes, monerod's share check, a non-blocking verifier.

- ``randomx``: the binding on Debian's ``librandomx.so.0`` (caches, datasets, VMs).
- ``difficulty``: ``check_hash`` — ``int.from_bytes(hash, "little") * difficulty < 2**256``.
- ``verifier``: ``ShareVerifier``, worker threads that hash shares off the event loop.

Importing this package never loads the library; the first RandomX object does, and raises
``rpcpay.errors.PowError`` if librandomx0 is missing.
"""

from rpcpay.pow.difficulty import check_hash, max_valid_hash
from rpcpay.pow.randomx import (
    HASH_SIZE,
    RandomXCache,
    RandomXDataset,
    RandomXFlags,
    RandomXVM,
    randomx_hash,
    recommended_flags,
)
from rpcpay.pow.verifier import ShareVerifier, VerifierStats

__all__ = [
    "HASH_SIZE",
    "RandomXCache",
    "RandomXDataset",
    "RandomXFlags",
    "RandomXVM",
    "ShareVerifier",
    "VerifierStats",
    "check_hash",
    "max_valid_hash",
    "randomx_hash",
    "recommended_flags",
]
