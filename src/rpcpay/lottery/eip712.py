"""EIP-712 typed-data hashing and signing of cheques and stamps.

Both signatures are over EIP-712 digests, ``keccak256(0x1901 || domainSeparator ||
hashStruct(message))``, with the domain ``EIP712Domain(string name,string
version,uint256 chainId,address verifyingContract)``. The domain makes a
signature valid on one chain and one contract only; the struct hash names the
lottery and the recipient. A wallet that speaks ``eth_signTypedData_v4`` shows a
person what they sign, and the contract recomputes the same digests.

The payer's ``Credit(bytes32 cheque,bytes32 account)`` binds a cheque (its struct hash)
to the client account (the 32-byte client public key) it pays for, so nobody who sees
the cheque on its way can redeem it to another account. The contract never sees it.

The stamp signs the cheque itself (``Stamp(Cheque cheque)``), so a stamp cannot
be moved to another cheque, and two stamps are a fraud proof exactly when their
cheques' ranges overlap.
"""

from __future__ import annotations

from functools import lru_cache

from rpcpay.lottery.cheque import Cheque, Domain
from rpcpay.lottery.eth import EthKey, recover_signer
from rpcpay.wire.keccak import keccak256

__all__ = [
    "CHEQUE_TYPE",
    "CREDIT_TYPE",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "STAMP_TYPE",
    "cheque_digest",
    "cheque_hash",
    "credit_digest",
    "digests",
    "domain_separator",
    "recover_credit",
    "recover_payer",
    "recover_stamper",
    "sign_cheque",
    "sign_credit",
    "sign_stamp",
    "stamp_digest",
]

DOMAIN_NAME = "rpcpay stamped lottery"
DOMAIN_VERSION = "1"
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
CHEQUE_TYPE = "Cheque(bytes32 lottery,address recipient,uint256 start,uint256 value)"
STAMP_TYPE = "Stamp(Cheque cheque)" + CHEQUE_TYPE
CREDIT_TYPE = "Credit(bytes32 cheque,bytes32 account)"

_DOMAIN_TYPEHASH = keccak256(DOMAIN_TYPE.encode())
_CHEQUE_TYPEHASH = keccak256(CHEQUE_TYPE.encode())
_STAMP_TYPEHASH = keccak256(STAMP_TYPE.encode())
_CREDIT_TYPEHASH = keccak256(CREDIT_TYPE.encode())
_NAME_HASH = keccak256(DOMAIN_NAME.encode())
_VERSION_HASH = keccak256(DOMAIN_VERSION.encode())


@lru_cache(maxsize=64)
def domain_separator(domain: Domain) -> bytes:
    """``hashStruct(EIP712Domain)`` for this chain and contract (cached: a payee has one)."""
    return keccak256(
        _DOMAIN_TYPEHASH
        + _NAME_HASH
        + _VERSION_HASH
        + domain.chain_id.to_bytes(32, "big")
        + domain.contract.rjust(32, b"\0")
    )


def cheque_hash(cheque: Cheque) -> bytes:
    """``hashStruct(Cheque)``: the cheque's identity, unique across lotteries and recipients."""
    return keccak256(
        _CHEQUE_TYPEHASH
        + cheque.lottery
        + cheque.recipient.rjust(32, b"\0")
        + cheque.start.to_bytes(32, "big")
        + cheque.value.to_bytes(32, "big")
    )


def _digest(domain: Domain, struct_hash: bytes) -> bytes:
    return keccak256(b"\x19\x01" + domain_separator(domain) + struct_hash)


def digests(domain: Domain, cheque: Cheque) -> tuple[bytes, bytes, bytes]:
    """``(cheque_hash, cheque_digest, stamp_digest)``, hashing the cheque once (payee hot path)."""
    h = cheque_hash(cheque)
    return h, _digest(domain, h), _digest(domain, keccak256(_STAMP_TYPEHASH + h))


def cheque_digest(domain: Domain, cheque: Cheque) -> bytes:
    """What the payer signs."""
    return _digest(domain, cheque_hash(cheque))


def stamp_digest(domain: Domain, cheque: Cheque) -> bytes:
    """What the stamper signs: ``hashStruct(Stamp(cheque))``."""
    return _digest(domain, keccak256(_STAMP_TYPEHASH + cheque_hash(cheque)))


def sign_cheque(key: EthKey, domain: Domain, cheque: Cheque) -> bytes:
    """The payer's signature on a cheque."""
    return key.sign(cheque_digest(domain, cheque))


def sign_stamp(key: EthKey, domain: Domain, cheque: Cheque) -> bytes:
    """The stamper's signature on a cheque."""
    return key.sign(stamp_digest(domain, cheque))


def recover_payer(domain: Domain, cheque: Cheque, signature: bytes) -> bytes | None:
    """Who signed the cheque as payer (``None``: not a signature)."""
    return recover_signer(cheque_digest(domain, cheque), signature)


def recover_stamper(domain: Domain, cheque: Cheque, signature: bytes) -> bytes | None:
    """Who stamped the cheque (``None``: not a signature)."""
    return recover_signer(stamp_digest(domain, cheque), signature)


def credit_digest(domain: Domain, cheque: Cheque, account: bytes) -> bytes:
    """What the payer signs to say which client account ``cheque`` pays for."""
    # The account is a 32-byte client public key, encoded as bytes32.
    if len(account) != 32:
        raise ValueError("an account is a 32-byte client public key")
    return _digest(domain, keccak256(_CREDIT_TYPEHASH + cheque_hash(cheque) + account))


def sign_credit(key: EthKey, domain: Domain, cheque: Cheque, account: bytes) -> bytes:
    """The payer's signature that ``cheque`` pays for the client ``account``."""
    return key.sign(credit_digest(domain, cheque, account))


def recover_credit(
    domain: Domain, cheque: Cheque, account: bytes, signature: bytes
) -> bytes | None:
    """Who signed ``Credit(cheque, account)`` (``None``: not a signature, or no account)."""
    if len(account) != 32:
        return None
    return recover_signer(credit_digest(domain, cheque, account), signature)
