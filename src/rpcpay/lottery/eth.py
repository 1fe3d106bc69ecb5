"""secp256k1 keys, signatures and addresses as Ethereum uses them.

Signatures are 65 bytes ``r || s || v`` with ``v`` 27 or 28, the layout Ethereum
wallets produce and the EVM's ``ecrecover`` takes. Only the low-``s`` form is
accepted (EIP-2): for every signature there is a second valid one with
``s' = n - s``, and a protocol that tells cheques apart by their signatures would
see two cheques where there is one. We tell cheques apart by their struct hash,
so this is defence in depth, and it makes Python agree with the contract byte for
byte.

libsecp256k1 (through coincurve) does the curve work: one recovery costs about
45 µs, a hundred times less than the pure-Python backend of eth-keys, and a payee
recovers two signers for every cheque.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import coincurve

from rpcpay.wire.keccak import keccak256

__all__ = [
    "ADDRESS_LENGTH",
    "SECP256K1_N",
    "SIGNATURE_LENGTH",
    "EthKey",
    "address_of",
    "checksum_address",
    "recover_signer",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The order of the secp256k1 group."""

HALF_N = SECP256K1_N // 2
SIGNATURE_LENGTH = 65
ADDRESS_LENGTH = 20


def address_of(public_key: coincurve.PublicKey) -> bytes:
    """The 20-byte Ethereum address of a public key: the last 20 bytes of its Keccak-256."""
    return keccak256(public_key.format(compressed=False)[1:])[12:]


def checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case hex, the form people copy and paste (and typos get caught)."""
    # An address is 20 bytes.
    if len(address) != ADDRESS_LENGTH:
        raise ValueError("an address is 20 bytes")
    plain = address.hex()
    mask = keccak256(plain.encode()).hex()[: len(plain)]
    cased = (c.upper() if int(m, 16) >= 8 else c for c, m in zip(plain, mask, strict=True))
    return "0x" + "".join(cased)


@dataclass(frozen=True, slots=True)
class EthKey:
    """A secp256k1 private key and its address.

    The secret stays out of ``repr`` so a logged key does not leak it.
    """

    secret: bytes = field(repr=False)
    address: bytes = field(init=False)

    def __post_init__(self) -> None:
        # A secret is a 32-byte scalar in [1, n).
        if len(self.secret) != 32 or not 0 < int.from_bytes(self.secret, "big") < SECP256K1_N:
            raise ValueError("a secp256k1 secret is 32 bytes in [1, n)")
        public = coincurve.PrivateKey(self.secret).public_key
        object.__setattr__(self, "address", address_of(public))

    @classmethod
    def generate(cls) -> EthKey:
        """A fresh random key (from the OS's CSPRNG, through libsecp256k1)."""
        return cls(coincurve.PrivateKey().secret)

    def sign(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest; returns ``r || s || v`` with low ``s`` and ``v`` in {27, 28}.

        The digest is signed as is (no further hashing): EIP-712 digests are already
        Keccak-256 outputs. libsecp256k1 always returns the low-``s`` form.
        """
        # What is signed is exactly one 32-byte digest.
        if len(digest) != 32:
            raise ValueError("a digest is 32 bytes")
        sig = coincurve.PrivateKey(self.secret).sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])


def recover_signer(digest: bytes, signature: bytes) -> bytes | None:
    """The address that signed ``digest``, or ``None`` when the signature is not one.

    ``None`` covers every way a signature can be unusable: wrong length, ``v`` not
    27 or 28, ``r`` or ``s`` zero or not below ``n``, high ``s``, or no curve point.
    The EVM's ``ecrecover`` returns the zero address in those cases, and the
    contract refuses them the same way.
    """
    # A digest is 32 bytes and a signature 65.
    if len(digest) != 32 or len(signature) != SIGNATURE_LENGTH:
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    # r and s are non-zero scalars, s in the low half, v is 27 or 28.
    if not (0 < r < SECP256K1_N and 0 < s <= HALF_N and v in (27, 28)):
        return None
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v - 27]), digest, hasher=None
        )
    except ValueError:
        # r is not the x coordinate of a curve point.
        return None
    return address_of(public)
