"""The 208-character client id that authenticates every paid call (rpc_payment_signature.cpp).

Layout: ``hex(public key, 32 B) || 16 timestamp chars || hex(signature c||r, 64 B)``. The
signature covers Keccak-256 of the 16 timestamp characters *as sent*, so the timestamp text is
hashed raw and only parsed afterwards.

``verify_client_id`` applies monerod's checks in monerod's order:

1. the id is exactly 208 bytes (monerod measures the UTF-8 byte string, not characters);
2. the key and signature decode as hex; epee's decoder accepts upper- and lower-case digits
   and nothing else (no whitespace, unlike ``bytes.fromhex``);
3. the signature verifies;
4. the timestamp parses as ``strtoull(ts, &end, 16)`` does, trailing garbage and all;
5. the timestamp is within ±60 s of ``now_us``.

``verify_client_id`` checks the window before the signature (same verdicts, expired ids cost
no curve work) and runs step 3 with the signature's hex decoding and both Keccak hashes in one C
call (``_edwards.check_client_signature``) on a key prepared once per key:
~32 µs a call against ~64 µs before (bench/client_id_verify.py, 2-core AMD EPYC). The same rules
step by step in Python are ``verify_client_id_reference``, the reference the fast path is tested
against (tests/wire/test_client_id.py).

Deliberate differences from monerod, all on the refusing side: public keys that libsodium
refuses (non-canonical, small-order or outside the prime-order subgroup; see ``ed25519``) are
refused; and the window arithmetic is done on unbounded integers, whereas monerod's unsigned
``now - 60 s`` would wrap for clocks within a minute of the epoch.

Because hex case is accepted, the same key can be spelt several ways: accounts must be keyed by
``ClientAuth.public_key`` (bytes), never by the text of the id.
"""

from dataclasses import dataclass

from rpcpay.wire import _edwards
from rpcpay.wire.ed25519 import (
    check_signature,
    generate_signature,
    prepared_key,
    secret_to_public,
)
from rpcpay.wire.keccak import keccak256

__all__ = [
    "CLIENT_ID_LENGTH",
    "TIMESTAMP_LEEWAY_US",
    "ClientAuth",
    "make_client_id",
    "parse_timestamp",
    "public_key_hex",
    "verify_client_id",
    "verify_client_id_reference",
]

#: Length of a client id: 64 hex (key) + 16 (timestamp) + 128 hex (signature).
CLIENT_ID_LENGTH = 208
#: How far a client's clock may be from ours, either way (monerod's TIMESTAMP_LEEWAY).
TIMESTAMP_LEEWAY_US = 60_000_000

_KEY_END = 64
_TS_END = 80
_U64 = 2**64
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# C-locale isspace(): space, \t, \n, \v, \f, \r
_C_SPACE = frozenset(b" \t\n\v\f\r")


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """A client id that verified: who signed it and the timestamp it carries (µs)."""

    public_key: bytes
    timestamp_us: int


def public_key_hex(auth: ClientAuth) -> str:
    """The canonical (lower-case) 64-hex spelling of the client's key, as monerod logs it."""
    return auth.public_key.hex()


def make_client_id(secret_key: bytes, timestamp_us: int) -> str:
    """Build the client id monerod expects from a secret key and a time in microseconds."""
    # the timestamp must fit the 16 hex digits of %016x
    if not 0 <= timestamp_us < _U64:
        raise ValueError("timestamp_us must be an unsigned 64-bit integer")
    pub = secret_to_public(secret_key)
    ts = b"%016x" % timestamp_us
    sig = generate_signature(keccak256(ts), pub, secret_key)
    return pub.hex() + ts.decode("ascii") + sig.hex()


def _hex_to_bytes(text: bytes) -> bytes | None:
    """Decode hex as epee's ``hex_to_pod``: both cases, no separators, else None."""
    # only hex digits are accepted; bytes.fromhex alone would also skip whitespace
    if not _HEX_DIGITS.issuperset(text):
        return None
    return bytes.fromhex(text.decode("ascii"))


def parse_timestamp(ts: bytes) -> int:
    """Parse ``ts`` as glibc's ``strtoull(ts, &end, 16)`` does (monerod ignores ``end``).

    Leading C-locale whitespace, one optional sign and an optional ``0x``/``0X`` are skipped,
    then the longest run of hex digits is read; whatever follows is ignored. A ``-`` negates
    modulo 2**64. No digits at all gives 0; a NUL ends the string as in C. Sixteen bytes can
    never overflow, so the ERANGE case of monerod's check cannot arise.
    """
    ts = ts.split(b"\x00", 1)[0]
    i, n = 0, len(ts)
    while i < n and ts[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and ts[i] in b"+-":
        negative = ts[i] == ord("-")
        i += 1
    if ts[i : i + 2] in (b"0x", b"0X") and i + 2 < n and ts[i + 2] in _HEX_DIGITS:
        i += 2
    j = i
    while j < n and ts[j] in _HEX_DIGITS:
        j += 1
    value = int(ts[i:j], 16) if j > i else 0
    return (-value) % _U64 if negative else value


def _as_bytes(client: str | bytes) -> bytes | None:
    """The id as the bytes monerod received; None for text no byte string can be."""
    if isinstance(client, str):
        try:
            return client.encode("utf-8")
        except UnicodeEncodeError:
            # lone surrogates cannot come from a byte string monerod could have received
            return None
    return client


def _in_window(ts: int, now_us: int) -> bool:
    """Whether ``ts`` is within the leeway of now, in the future or the past."""
    return now_us - TIMESTAMP_LEEWAY_US <= ts <= now_us + TIMESTAMP_LEEWAY_US


def verify_client_id(client: str | bytes, now_us: int) -> ClientAuth | None:
    """Check a client id as monerod does; ``None`` means monerod would refuse it.

    Never raises, whatever the input: this runs on untrusted text on every paid call. Refuses
    and accepts exactly what ``verify_client_id_reference`` does (tests/wire/test_client_id.py
    checks that differentially); the signature step runs in C on a key prepared once per key.
    """
    raw = _as_bytes(client)
    # monerod checks the byte length first
    if raw is None or len(raw) != CLIENT_ID_LENGTH:
        return None
    # the public key must be 64 hex digits
    pub = _hex_to_bytes(raw[:_KEY_END])
    if pub is None:
        return None
    ts = parse_timestamp(raw[_KEY_END:_TS_END])
    # The timestamp must be within the leeway of now. monerod checks this after the signature;
    # checking it first refuses the same ids, but refuses expired ones without the curve work.
    if not _in_window(ts, now_us):
        return None
    # the key must pass libsodium's check and decode (cached per key)
    prepared = prepared_key(pub)
    if prepared is None:
        return None
    # the signature must be 128 hex digits and verify over the raw timestamp text
    if not _edwards.check_client_signature(raw, prepared):
        return None
    return ClientAuth(public_key=pub, timestamp_us=ts)


def verify_client_id_reference(client: str | bytes, now_us: int) -> ClientAuth | None:
    """``verify_client_id`` step by step in Python, with ``ed25519.check_signature``: the
    reference the fast path is tested against (and the readable statement of the rules)."""
    raw = _as_bytes(client)
    # monerod checks the byte length first
    if raw is None or len(raw) != CLIENT_ID_LENGTH:
        return None
    # the public key must be 64 hex digits
    pub = _hex_to_bytes(raw[:_KEY_END])
    if pub is None:
        return None
    # the signature must be 128 hex digits
    sig = _hex_to_bytes(raw[_TS_END:])
    if sig is None:
        return None
    ts_text = raw[_KEY_END:_TS_END]
    ts = parse_timestamp(ts_text)
    # the timestamp must be within the leeway of now (checked before the signature, see above)
    if not _in_window(ts, now_us):
        return None
    # the signature must verify over the raw timestamp text
    if not check_signature(keccak256(ts_text), pub, sig):
        return None
    return ClientAuth(public_key=pub, timestamp_us=ts)
