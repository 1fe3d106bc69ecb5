"""Both chains: Python and the EVM agree on hashes; reads at a block; fees add up."""

import pytest

from rpcpay.chain import InProcessChain
from rpcpay.errors import ChainError, TransactionReverted
from rpcpay.lottery.cheque import Cheque
from rpcpay.lottery.eip712 import cheque_hash, domain_separator
from tests.chain.conftest import PARAMS, PRIZE, World


def test_contract_hashes_agree_with_python(world: World) -> None:
    (sep,) = world.chain.call_view("domain_separator")
    assert sep == domain_separator(world.domain)
    c = Cheque(lottery=b"\x05" * 32, recipient=world.alice.address, start=7, value=2**200)
    (h,) = world.chain.call_view("cheque_hash", (c.lottery, c.recipient, c.start, c.value))
    assert h == cheque_hash(c)


def test_params_round_trip(world: World) -> None:
    assert world.chain.params() == PARAMS
    assert PARAMS.exit_delay == 70


def test_constructor_refuses_shares_above_whole(world: World) -> None:
    bad = type(PARAMS).__new__(type(PARAMS))
    for name in ("max_reveal_delay", "redeem_blocks", "proof_grace"):
        object.__setattr__(bad, name, getattr(PARAMS, name))
    object.__setattr__(bad, "whistleblower_bps", 6_000)
    object.__setattr__(bad, "compensation_bps", 5_000)
    with pytest.raises(TransactionReverted, match="shares above 100%"):
        world.chain.deploy(world.deployer, bad)
    with pytest.raises(ValueError):
        type(PARAMS)(1, 1, 1, 6_000, 5_000)


def test_constructor_refuses_zero_proof_grace(world: World) -> None:
    bad = type(PARAMS).__new__(type(PARAMS))
    for name in ("max_reveal_delay", "redeem_blocks", "whistleblower_bps", "compensation_bps"):
        object.__setattr__(bad, name, getattr(PARAMS, name))
    object.__setattr__(bad, "proof_grace", 0)
    with pytest.raises(TransactionReverted, match="zero proof grace"):
        world.chain.deploy(world.deployer, bad)
    with pytest.raises(ValueError):
        type(PARAMS)(1, 1, 0, 1_000, 5_000)


def test_no_contract_yet() -> None:
    with pytest.raises(ChainError):
        InProcessChain().contract  # noqa: B018


def test_reads_at_a_confirmed_block_do_not_see_young_lotteries(world: World) -> None:
    """The reorg rule: a payee reads at head - confirmations, so a fresh lottery is invisible."""
    terms = world.lottery()
    head = world.chain.block_number()
    assert world.chain.lottery(terms.id) is not None
    assert world.chain.lottery(terms.id, block=head - 1) is None
    world.chain.mine(12)
    confirmed = world.chain.block_number() - 12
    state = world.chain.lottery(terms.id, block=confirmed)
    assert state is not None and state.prize == PRIZE and state.payer == world.payer.address
    # Same for a stamper's deposit.
    assert world.chain.stamper(world.stamper.address, block=1).deposit == 0
    with pytest.raises(ChainError):
        world.chain.lottery(terms.id, block=10**6)


def test_fees_are_burnt_and_balances_add_up(world: World) -> None:
    total = sum(world.chain.balance(k.address) for k in world.keys)
    contract = world.chain.balance(world.chain.contract)
    r = world.chain.deposit_stamper(world.alice, 5)
    after = sum(world.chain.balance(k.address) for k in world.keys)
    assert after == total - 5 - r.fee
    assert world.chain.balance(world.chain.contract) == contract + 5
    assert r.fee > 0 and r.gas_used > 21_000


def test_reverted_transaction_is_mined_and_reports_reason(world: World) -> None:
    head = world.chain.block_number()
    with pytest.raises(TransactionReverted) as info:
        world.chain.deposit_stamper(world.alice, 0)
    assert info.value.reason == "no deposit"
    assert info.value.gas_used > 21_000
    assert world.chain.block_number() == head + 1


def test_plain_transfers_to_the_contract_are_refused(world: World) -> None:
    """No function adds to a lottery after creation: the prize cannot be diluted or topped up."""
    with pytest.raises(TransactionReverted):
        world.chain.send_transaction(world.mallory, world.chain.contract, b"", value=1)


def test_mine_and_block_hashes(world: World) -> None:
    start = world.chain.block_number()
    assert world.chain.mine(3) == start + 3
    hashes = {world.chain.block_hash(n) for n in range(start, start + 4)}
    assert len(hashes) == 4
    with pytest.raises(ValueError):
        world.chain.mine(-1)


def test_receipts_carry_the_contracts_events(world: World) -> None:
    """Services learn what a claim paid from its Claimed event, on either chain."""
    from rpcpay.chain.abi import ContractAbi
    from rpcpay.chain.artifact import load_artifact
    from rpcpay.lottery.eip712 import cheque_hash

    events = ContractAbi(load_artifact().abi).events
    terms = world.lottery(prize=10)
    sc = world.cheque(terms, world.alice, 0, 10)
    world.reveal(terms)
    r = world.chain.claim(world.bob, sc)
    topics = [log.topics[0] for log in r.logs]
    assert topics == [events["Drawn"], events["Claimed"]]
    claimed = r.logs[1]
    assert claimed.address == world.chain.contract
    assert claimed.topics[1:] == (terms.id, world.alice.address.rjust(32, b"\0"))
    assert claimed.data == cheque_hash(sc.cheque) + (10).to_bytes(32, "big")
