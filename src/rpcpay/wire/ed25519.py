"""Monero's Schnorr signatures on ed25519 (``crypto.cpp`` generate/check_signature).

This is not RFC 8032 Ed25519: Monero signs a 32-byte prefix hash with
``c = Hs(hash || pub || k*G)`` and ``r = k - c*sk``, where ``Hs`` is Keccak-256 reduced mod L,
and the signature is the 64 bytes ``c || r``. Signing uses libsodium (through PyNaCl), because
it handles the secret. Checking needs only ``c*P + r*G`` on public values, which our small C
extension ``rpcpay.wire._edwards`` computes in variable time, as monerod does (wNAF windows, a
static table for G): ~27 µs with the key prepared, ~31 µs from its encoding, where libsodium's
whole Ed25519 verify takes ~39 µs and its constant-time multiply (which also re-checks the key
on every call) far more. libsodium still decides, once per key, whether the key is acceptable;
that verdict and our decoded table of the key are cached together (``prepared_key``), so
``check_signature`` costs ~30 µs a call (~58 µs before these changes; bench/client_id_verify.py).

Differences from monerod, all deliberate and all on the refusing side:
libsodium only accepts public keys that are canonical, not of small order and in the prime-order
subgroup, while monerod's ``ge_frombytes_vartime`` accepts any point that decodes. Keys outside
the prime-order subgroup never come from ``secret_to_public``; a small-order key can be "signed"
for by anyone, so refusing those keys only refuses ids an honest wallet never makes.
``check_key`` mirrors monerod's own decoding rule exactly, for callers (addresses) that need it.
"""

from functools import lru_cache

from nacl import bindings as _nacl

from rpcpay.errors import WireError
from rpcpay.wire import _edwards
from rpcpay.wire.keccak import keccak256

__all__ = [
    "L",
    "check_key",
    "check_signature",
    "generate_keypair",
    "generate_signature",
    "hash_to_scalar",
    "is_canonical_scalar",
    "prepared_key",
    "random_scalar",
    "secret_to_public",
]

#: Order of the ed25519 prime-order subgroup.
L = 2**252 + 27742317777372353535851937790883648493

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_IDENTITY = b"\x01" + b"\x00" * 31
_ZERO = b"\x00" * 32


def is_canonical_scalar(s: bytes) -> bool:
    """True when ``s`` is 32 bytes encoding an integer below L (monerod's ``sc_check``)."""
    return len(s) == 32 and int.from_bytes(s, "little") < L


def hash_to_scalar(data: bytes) -> bytes:
    """Keccak-256 of ``data`` reduced mod L (monerod's ``hash_to_scalar``).

    Python's integers reduce a 32-byte digest in ~0.3 µs, a quarter of a call into libsodium's
    ``crypto_core_ed25519_scalar_reduce`` (tests/wire/test_ed25519.py checks they agree).
    """
    return (int.from_bytes(keccak256(data), "little") % L).to_bytes(32, "little")


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar below L.

    64 random bytes reduced mod L have negligible bias, which is what libsodium does too;
    zero is re-drawn because monerod never uses a zero nonce or key.
    """
    while True:
        s = bytes(_nacl.crypto_core_ed25519_scalar_reduce(_nacl.randombytes(64)))
        if s != _ZERO:
            return s


def secret_to_public(sk: bytes) -> bytes:
    """The public key ``sk*G``; raises ``WireError`` for a non-canonical or zero secret.

    monerod's ``secret_key_to_public_key`` refuses secrets that are not below L; zero is refused
    as well because its public key would be the identity, which anybody can sign for.
    """
    # a secret must be a canonical scalar, as monerod's sc_check demands
    if not is_canonical_scalar(sk):
        raise WireError("secret key is not a canonical 32-byte scalar")
    # a zero secret gives the identity point, whose signatures anybody can forge
    if sk == _ZERO:
        raise WireError("secret key is zero")
    return bytes(_nacl.crypto_scalarmult_ed25519_base_noclamp(sk))


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh ``(secret, public)`` key pair."""
    sk = random_scalar()
    return sk, secret_to_public(sk)


def generate_signature(prefix_hash: bytes, pub: bytes, sec: bytes) -> bytes:
    """Sign ``prefix_hash`` as monerod's ``generate_signature`` does; returns ``c || r``.

    Like monerod, a draw giving ``c == 0`` or ``r == 0`` is retried: ``check_signature``
    refuses a zero ``c``, and a zero ``r`` would reveal the key relation.
    """
    # the prefix hash is a 32-byte Keccak digest
    if len(prefix_hash) != 32:
        raise WireError("prefix hash must be 32 bytes")
    # the public key must belong to the secret, or the signature can never verify
    if secret_to_public(sec) != pub:
        raise WireError("public key does not match secret key")
    while True:
        k = random_scalar()
        comm = bytes(_nacl.crypto_scalarmult_ed25519_base_noclamp(k))
        c = hash_to_scalar(prefix_hash + pub + comm)
        if c == _ZERO:
            continue
        c_sec = _nacl.crypto_core_ed25519_scalar_mul(c, sec)
        r = bytes(_nacl.crypto_core_ed25519_scalar_sub(k, c_sec))
        if r == _ZERO:
            continue
        return c + r


@lru_cache(maxsize=4096)
def prepared_key(pub: bytes) -> bytes | None:
    """The key ready for ``_edwards``'s prepared functions, or None when refused.

    Once per key (clients sign every call with the same key): libsodium's check (canonical, not
    small order, prime-order subgroup; it costs as much as a multiply) and our decode and table
    of odd multiples (~3 µs a call saved). About 1.4 KB per cached key.
    """
    # the public key must be a canonical point of the prime-order subgroup (libsodium's rule)
    if not _nacl.crypto_core_ed25519_is_valid_point(pub):
        return None
    # a key that passed libsodium always decodes; None would mean it does not
    return _edwards.prepare_point(pub)


def check_signature(prefix_hash: bytes, pub: bytes, sig: bytes) -> bool:
    """Verify ``sig`` (``c || r``) over ``prefix_hash`` with monerod's ``check_signature`` rules.

    Never raises: any malformed input, refused point or degenerate result is simply ``False``.
    """
    # lengths are fixed by the wire format; anything else cannot be a signature
    if len(prefix_hash) != 32 or len(pub) != 32 or len(sig) != 64:
        return False
    c, r = sig[:32], sig[32:]
    # both scalars must be canonical (below L), as monerod's sc_check requires
    if not (is_canonical_scalar(c) and is_canonical_scalar(r)):
        return False
    # c = 0 would make the public key irrelevant, so monerod refuses it
    if c == _ZERO:
        return False
    # the key must pass libsodium's check and decode (see prepared_key)
    prepared = prepared_key(pub)
    if prepared is None:
        return False
    comm = _edwards.double_scalarmult_prepared(c, prepared, r)
    # an identity commitment is refused by monerod (it would make c free to choose)
    if comm == _IDENTITY:
        return False
    return hash_to_scalar(prefix_hash + pub + comm) == c


def _sqrt_ratio(u: int, v: int) -> int | None:
    """A square root of u/v mod p, or None when there is none (ref10's decoding step)."""
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    vxx = (v * x * x) % _P
    if vxx == u % _P:
        return x
    if vxx == (-u) % _P:
        return (x * _SQRT_M1) % _P
    return None


def check_key(key: bytes) -> bool:
    """True when ``key`` decodes as a curve point under monerod's ``ge_frombytes_vartime``.

    That is looser than libsodium: small-order and mixed-order points pass. monerod uses it
    for address keys, so address decoding mirrors it here with plain integer arithmetic
    (only run on addresses, never per call, so speed does not matter).
    """
    # a key is exactly 32 bytes
    if len(key) != 32:
        return False
    y = int.from_bytes(key, "little") & (2**255 - 1)
    # y must be reduced below p (monerod's "canonical" check)
    if y >= _P:
        return False
    yy = y * y % _P
    x = _sqrt_ratio(yy - 1, _D * yy + 1)
    # x^2 = (y^2 - 1) / (d y^2 + 1) must have a square root
    if x is None:
        return False
    # x = 0 has only one sign, so a set sign bit is an invalid encoding
    return not (x == 0 and key[31] >> 7)
