"""secp256k1 signing, recovery and addresses against known Ethereum values."""

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.lottery.eth import SECP256K1_N, EthKey, checksum_address, recover_signer
from rpcpay.wire.keccak import keccak256


def test_address_of_known_key() -> None:
    # The well-known first anvil/hardhat development account.
    key = EthKey(bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"))
    assert checksum_address(key.address) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_eip55_vector() -> None:
    # From EIP-55's test cases.
    addr = bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
    assert checksum_address(addr) == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_sign_then_recover(digest: bytes) -> None:
    key = EthKey.generate()
    sig = key.sign(digest)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert recover_signer(digest, sig) == key.address


def test_signature_is_low_s_and_high_s_is_refused() -> None:
    key = EthKey.generate()
    digest = keccak256(b"cheque")
    sig = key.sign(digest)
    s = int.from_bytes(sig[32:64], "big")
    assert s <= SECP256K1_N // 2
    # The malleated twin is a valid ECDSA signature of the same key, but refused.
    flipped = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    twin = coincurve.PublicKey.from_signature_and_message(
        flipped[:64] + bytes([flipped[64] - 27]), digest, hasher=None
    )
    assert twin.format() == coincurve.PrivateKey(key.secret).public_key.format()
    assert recover_signer(digest, flipped) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:64],  # short
        lambda s: s + b"\0",  # long
        lambda s: s[:64] + bytes([0]),  # v = 0
        lambda s: s[:64] + bytes([29]),  # v = 29
        lambda s: bytes(32) + s[32:],  # r = 0
        lambda s: s[:32] + bytes(32) + s[64:],  # s = 0
        lambda s: SECP256K1_N.to_bytes(32, "big") + s[32:],  # r = n
    ],
)
def test_malformed_signatures_recover_nobody(mutate) -> None:  # type: ignore[no-untyped-def]
    digest = keccak256(b"x")
    assert recover_signer(digest, mutate(EthKey.generate().sign(digest))) is None


def test_other_digest_recovers_another_address() -> None:
    key = EthKey.generate()
    sig = key.sign(keccak256(b"a"))
    assert recover_signer(keccak256(b"b"), sig) not in (None, key.address)


def test_key_validation_and_repr() -> None:
    with pytest.raises(ValueError):
        EthKey(bytes(32))
    with pytest.raises(ValueError):
        EthKey(SECP256K1_N.to_bytes(32, "big"))
    with pytest.raises(ValueError):
        EthKey(b"\1" * 31)
    key = EthKey(b"\1" * 32)
    assert (b"\1" * 32).hex() not in repr(key)
    with pytest.raises(ValueError):
        key.sign(b"short")
