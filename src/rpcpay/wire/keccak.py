"""Keccak-256 as Monero's ``cn_fast_hash``.

Monero hashes with the *original* Keccak submission (padding byte 0x01), not NIST SHA3-256
(padding 0x06). The two give different digests for every input, so using ``hashlib.sha3_256``
here would silently break every signature, block id and address checksum.
"""

from Crypto.Hash import keccak as _keccak

__all__ = ["keccak256"]


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Monero's ``cn_fast_hash``)."""
    return bytes(_keccak.new(data=data, digest_bits=256).digest())
