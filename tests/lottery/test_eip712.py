"""Cheque and stamp digests against a generic EIP-712 encoder, checked on the EIP's example."""

from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.lottery.cheque import Cheque, Domain
from rpcpay.lottery.eip712 import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    cheque_digest,
    recover_payer,
    recover_stamper,
    sign_cheque,
    sign_stamp,
    stamp_digest,
)
from rpcpay.lottery.eth import EthKey
from rpcpay.wire.keccak import keccak256
from tests.lottery import eip712_ref as ref

CHEQUE_TYPES: ref.Types = {
    "Cheque": [
        ("lottery", "bytes32"),
        ("recipient", "address"),
        ("start", "uint256"),
        ("value", "uint256"),
    ],
}
STAMP_TYPES: ref.Types = {"Stamp": [("cheque", "Cheque")], **CHEQUE_TYPES}


def test_reference_encoder_on_the_eips_mail_example() -> None:
    types: ref.Types = {
        "Person": [("name", "string"), ("wallet", "address")],
        "Mail": [("from", "Person"), ("to", "Person"), ("contents", "string")],
    }
    domain = {
        "name": "Ether Mail",
        "version": "1",
        "chainId": 1,
        "verifyingContract": bytes.fromhex("CcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"),
    }
    mail = {
        "from": {
            "name": "Cow",
            "wallet": bytes.fromhex("CD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"),
        },
        "to": {"name": "Bob", "wallet": bytes.fromhex("bBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB")},
        "contents": "Hello, Bob!",
    }
    assert ref.encode_type("Mail", types) == (
        "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
    )
    assert ref.digest(domain, "Mail", types, mail).hex() == (
        "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    )


cheques = st.builds(
    Cheque,
    lottery=st.binary(min_size=32, max_size=32),
    recipient=st.binary(min_size=20, max_size=20),
    start=st.integers(0, 2**256 - 1),
    value=st.integers(0, 2**256 - 1),
)
domains = st.builds(
    Domain, chain_id=st.integers(0, 2**64 - 1), contract=st.binary(min_size=20, max_size=20)
)


def _ref_domain(d: Domain) -> dict[str, object]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": d.chain_id,
        "verifyingContract": d.contract,
    }


def _ref_cheque(c: Cheque) -> dict[str, object]:
    return {"lottery": c.lottery, "recipient": c.recipient, "start": c.start, "value": c.value}


@settings(max_examples=100, deadline=None)
@given(cheques, domains)
def test_digests_match_the_reference(c: Cheque, d: Domain) -> None:
    assert cheque_digest(d, c) == ref.digest(_ref_domain(d), "Cheque", CHEQUE_TYPES, _ref_cheque(c))
    assert stamp_digest(d, c) == ref.digest(
        _ref_domain(d), "Stamp", STAMP_TYPES, {"cheque": _ref_cheque(c)}
    )
    # A stamp is never a cheque signature: the two digests differ.
    assert cheque_digest(d, c) != stamp_digest(d, c)


def test_signature_binds_domain_and_every_field() -> None:
    payer, stamper = EthKey.generate(), EthKey.generate()
    d = Domain(chain_id=1337, contract=b"\x11" * 20)
    c = Cheque(lottery=keccak256(b"l"), recipient=b"\x22" * 20, start=10, value=5)
    psig, ssig = sign_cheque(payer, d, c), sign_stamp(stamper, d, c)
    assert recover_payer(d, c, psig) == payer.address
    assert recover_stamper(d, c, ssig) == stamper.address
    # A stamp is not a payer signature and vice versa.
    assert recover_payer(d, c, ssig) != stamper.address
    assert recover_stamper(d, c, psig) != payer.address
    others = [
        (Domain(chain_id=1, contract=d.contract), c),
        (Domain(chain_id=d.chain_id, contract=b"\x12" * 20), c),
        (d, Cheque(lottery=keccak256(b"m"), recipient=c.recipient, start=10, value=5)),
        (d, Cheque(lottery=c.lottery, recipient=b"\x23" * 20, start=10, value=5)),
        (d, Cheque(lottery=c.lottery, recipient=c.recipient, start=11, value=5)),
        (d, Cheque(lottery=c.lottery, recipient=c.recipient, start=10, value=6)),
    ]
    for od, oc in others:
        assert recover_payer(od, oc, psig) != payer.address
        assert recover_stamper(od, oc, ssig) != stamper.address


@settings(max_examples=30, deadline=None)
@given(cheques, domains)
def test_digests_is_the_three_hashes_at_once(c: Cheque, d: Domain) -> None:
    from rpcpay.lottery.eip712 import cheque_hash, digests

    assert digests(d, c) == (cheque_hash(c), cheque_digest(d, c), stamp_digest(d, c))


CREDIT_TYPES: ref.Types = {"Credit": [("cheque", "bytes32"), ("account", "bytes32")]}


@settings(max_examples=50, deadline=None)
@given(cheques, domains, st.binary(min_size=32, max_size=32))
def test_credit_digest_matches_the_reference(c: Cheque, d: Domain, account: bytes) -> None:
    from rpcpay.lottery.eip712 import cheque_hash, credit_digest

    message = {"cheque": cheque_hash(c), "account": account}
    assert credit_digest(d, c, account) == ref.digest(
        _ref_domain(d), "Credit", CREDIT_TYPES, message
    )
    # A credit signature is neither a cheque signature nor a stamp.
    assert credit_digest(d, c, account) not in (cheque_digest(d, c), stamp_digest(d, c))


def test_credit_signature_binds_cheque_and_account() -> None:
    from rpcpay.lottery.eip712 import recover_credit, sign_credit

    payer = EthKey.generate()
    d = Domain(chain_id=1337, contract=b"\x11" * 20)
    c = Cheque(lottery=keccak256(b"l"), recipient=b"\x22" * 20, start=10, value=5)
    account = b"\x33" * 32
    sig = sign_credit(payer, d, c, account)
    assert recover_credit(d, c, account, sig) == payer.address
    # Another account, another cheque, or a short account is not what the payer signed.
    assert recover_credit(d, c, b"\x34" * 32, sig) != payer.address
    assert recover_credit(d, Cheque(c.lottery, c.recipient, 11, 5), account, sig) != payer.address
    assert recover_credit(d, c, account[:31], sig) is None
