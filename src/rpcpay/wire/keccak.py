"""Keccak-256 as Monero's ``cn_fast_hash``.

Monero hashes with the *original* Keccak submission (padding byte 0x01), not NIST SHA3-256
(padding 0x06). The two give different digests for every input, so using ``hashlib.sha3_256``
here would silently break every signature, block id and address checksum.

The digest comes from the C extension ``rpcpay.wire._edwards`` (~0.7 µs for a short input on
the 2-core AMD EPYC), not pycryptodome's ``keccak.new`` (~4.5 µs a call: most of it is building
and freeing the hash object), because a client-id check hashes twice on every paid call.
tests/wire/test_keccak.py checks it against Monero's vectors and, differentially, pycryptodome.
"""

from rpcpay.wire import _edwards

__all__ = ["keccak256"]


def keccak256(data: bytes | bytearray | memoryview) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Monero's ``cn_fast_hash``)."""
    return _edwards.keccak256(data)
