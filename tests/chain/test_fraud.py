"""Overlap fraud proofs: slashing, the whistleblower, compensation, and no escape by exiting."""

import pytest

from rpcpay.chain import fraud_commitment
from rpcpay.errors import TransactionReverted
from rpcpay.lottery.eip712 import cheque_hash
from tests.chain.conftest import DEPOSIT, PARAMS, PRIZE, World

REWARD = DEPOSIT * PARAMS.whistleblower_bps // 10_000
POOL = DEPOSIT * PARAMS.compensation_bps // 10_000
BURN = DEPOSIT - REWARD - POOL


def test_recipient_proves_overlap_and_is_rewarded(world: World) -> None:
    c = world.chain
    terms = world.lottery()
    a = world.cheque(terms, world.alice, 0, 100)
    b = world.cheque(terms, world.bob, 99, 100)  # shares ticket 99
    before = c.balance(world.alice.address)
    r = c.prove_fraud(world.alice, a, b)
    print(f"gas: prove_fraud {r.gas_used}")
    assert c.balance(world.alice.address) == before + REWARD - r.fee
    s = c.stamper(world.stamper.address)
    assert (s.deposit, s.slashed, s.active) == (0, True, False)
    assert c.pool(world.stamper.address) == POOL
    assert c.burnt() == BURN
    with pytest.raises(TransactionReverted, match="already slashed"):
        c.prove_fraud(world.bob, b, a)
    with pytest.raises(TransactionReverted, match="slashed"):
        c.deposit_stamper(world.stamper, 1)
    with pytest.raises(TransactionReverted, match="stamper not active"):
        world.lottery(salt=b"\x09" * 32)


def test_adjacent_ranges_are_no_fraud(world: World) -> None:
    terms = world.lottery()
    a = world.cheque(terms, world.alice, 0, 100)
    b = world.cheque(terms, world.bob, 100, 100)
    with pytest.raises(TransactionReverted, match="no overlap"):
        world.chain.prove_fraud(world.alice, a, b)
    with pytest.raises(TransactionReverted, match="same cheque"):
        world.chain.prove_fraud(world.alice, a, a)
    assert world.chain.stamper(world.stamper.address).active


def test_ranges_from_different_stampers_are_no_fraud(world: World) -> None:
    other = world.carol
    world.chain.deposit_stamper(other, DEPOSIT)
    terms = world.lottery()
    a = world.cheque(terms, world.alice, 0, 100)
    b = world.cheque(terms, world.bob, 50, 100, stamper=other)
    with pytest.raises(TransactionReverted, match="b not stamped by the lottery's stamper"):
        world.chain.prove_fraud(world.alice, a, b)
    with pytest.raises(TransactionReverted, match="a not stamped by the lottery's stamper"):
        world.chain.prove_fraud(world.alice, b, a)
    # Nor are overlapping cheques of two different lotteries.
    t2 = world.lottery(salt=b"\x02" * 32)
    with pytest.raises(TransactionReverted, match="different lotteries"):
        world.chain.prove_fraud(world.alice, a, world.cheque(t2, world.bob, 0, 100))
    # Nor a range outside the ticket space.
    with pytest.raises(TransactionReverted, match="range"):
        world.chain.prove_fraud(world.alice, a, world.cheque(terms, world.bob, 0, PRIZE + 1))
    assert world.chain.stamper(world.stamper.address).active


def test_outsider_is_rewarded_only_with_an_earlier_commitment(world: World) -> None:
    c = world.chain
    terms = world.lottery()
    a = world.cheque(terms, world.alice, 0, 100)
    b = world.cheque(terms, world.bob, 50, 100)
    commitment = fraud_commitment(
        world.mallory.address, cheque_hash(a.cheque), cheque_hash(b.cheque)
    )
    c.commit_fraud(world.mallory, commitment)
    # A front-runner copies Mallory's proof: it slashes, but pays the copier nothing.
    before = c.balance(world.deployer.address)
    r = c.prove_fraud(world.deployer, a, b)
    assert c.balance(world.deployer.address) == before - r.fee
    assert c.burnt() == BURN + REWARD
    with pytest.raises(TransactionReverted, match="already slashed"):
        c.prove_fraud(world.mallory, a, b)


def test_committed_outsider_is_rewarded(world: World) -> None:
    c = world.chain
    terms = world.lottery()
    a = world.cheque(terms, world.alice, 0, 100)
    b = world.cheque(terms, world.bob, 50, 100)
    c.commit_fraud(
        world.mallory,
        fraud_commitment(world.mallory.address, cheque_hash(a.cheque), cheque_hash(b.cheque)),
    )
    before = c.balance(world.mallory.address)
    r = c.prove_fraud(world.mallory, a, b)
    assert c.balance(world.mallory.address) == before + REWARD - r.fee


def test_cheated_recipient_is_compensated_at_claim(world: World) -> None:
    """Payer and stamper sell the whole space twice: the second winner is paid from the deposit."""
    c = world.chain
    terms = world.lottery()
    a = world.cheque(terms, world.alice, 0, PRIZE)
    b = world.cheque(terms, world.bob, 0, PRIZE)
    world.reveal(terms)
    c.claim(world.alice, a)
    bob_before = c.balance(world.bob.address)
    r = c.claim(world.mallory, b)  # whoever sends it, Bob is paid
    print(f"gas: claim that proves fraud and compensates {r.gas_used}")
    assert c.balance(world.bob.address) == bob_before + REWARD + PRIZE
    assert c.stamper(world.stamper.address).slashed
    assert c.pool(world.stamper.address) == POOL - PRIZE
    assert c.compensated(cheque_hash(b.cheque))
    with pytest.raises(TransactionReverted, match="already compensated"):
        c.claim(world.bob, b)
    with pytest.raises(TransactionReverted, match="already claimed"):
        c.claim(world.alice, a)


def test_compensation_after_an_earlier_proof_and_when_the_pool_runs_dry(world: World) -> None:
    c = world.chain
    big = POOL * 2 // 3  # the pool covers one compensation in full, the next only in part
    terms = world.lottery(prize=big)
    a = world.cheque(terms, world.alice, 0, big)
    b = world.cheque(terms, world.bob, 0, big)
    x = world.cheque(terms, world.carol, 0, big)
    c.prove_fraud(world.alice, a, world.cheque(terms, world.mallory, 5, 1))
    assert c.pool(world.stamper.address) == POOL
    world.reveal(terms)
    c.claim(world.alice, a)  # the prize itself
    carol_before = c.balance(world.carol.address)
    c.claim(world.alice, x)  # compensation: already slashed, no reward
    assert c.balance(world.carol.address) == carol_before + big
    left = POOL - big
    bob_before = c.balance(world.bob.address)
    c.claim(world.alice, b)  # the pool pays what is left
    assert c.balance(world.bob.address) == bob_before + left
    assert c.pool(world.stamper.address) == 0
    late = world.cheque(terms, world.mallory, 0, big)
    with pytest.raises(TransactionReverted, match="pool empty"):
        c.claim(world.alice, late)
    assert not c.compensated(cheque_hash(late.cheque))


def test_exit_delay_keeps_a_cheater_slashable(world: World) -> None:
    """The stamper cheats, then asks to leave at once: every window closes before it can."""
    c = world.chain
    terms = world.lottery(reveal_in=PARAMS.max_reveal_delay - 1)
    a = world.cheque(terms, world.alice, 0, PRIZE)
    b = world.cheque(terms, world.bob, 0, PRIZE)
    r = c.request_exit(world.stamper)
    exit_block = r.block_number + PARAMS.exit_delay
    assert terms.reveal_block + PARAMS.redeem_blocks < exit_block
    world.reveal(terms)
    c.claim(world.alice, a)
    # Bob only finds out late: the last block of the redeem window.
    c.mine(terms.reveal_block + PARAMS.redeem_blocks - 1 - c.block_number())
    bob_before = c.balance(world.bob.address)
    c.claim(world.bob, b)
    assert c.balance(world.bob.address) > bob_before + PRIZE // 2
    assert c.stamper(world.stamper.address).slashed
    c.mine(exit_block - c.block_number())
    with pytest.raises(TransactionReverted, match="nothing to withdraw"):
        c.withdraw_stamper(world.stamper)


def test_fraud_proof_during_grace_then_none_after_withdrawal(world: World) -> None:
    c = world.chain
    terms = world.lottery(reveal_in=PARAMS.max_reveal_delay - 1)
    a = world.cheque(terms, world.alice, 0, 100)
    b = world.cheque(terms, world.bob, 50, 100)
    exit_block = c.request_exit(world.stamper).block_number + PARAMS.exit_delay
    # Past the redeem window, inside the proof grace: still slashable.
    c.mine(terms.reveal_block + PARAMS.redeem_blocks + 1 - c.block_number())
    assert c.block_number() < exit_block - 1
    c.prove_fraud(world.alice, a, b)
    assert c.stamper(world.stamper.address).slashed


def test_honest_exit_then_proof_finds_nothing(world: World) -> None:
    c = world.chain
    terms = world.lottery()
    a = world.cheque(terms, world.alice, 0, 100)
    b = world.cheque(terms, world.bob, 50, 100)
    exit_block = c.request_exit(world.stamper).block_number + PARAMS.exit_delay
    c.mine(exit_block - 1 - c.block_number())
    c.withdraw_stamper(world.stamper)
    with pytest.raises(TransactionReverted, match="nothing to slash"):
        c.prove_fraud(world.alice, a, b)


def test_payer_and_stamper_steal_a_won_prize_for_only_the_burnt_share() -> None:
    """docs/lottery.md §9 T9: once R is mined the winning ticket is public. The stamper
    stamps it to the payer's own addresses, which claim the prize at R + 1 and then drain
    the pool (as their own whistleblower) before the honest winner's claim. The coalition
    loses only the burnt share of the deposit instead of the prize: it gains
    ``prize - burnt`` over paying honestly, so a payee must hold no more open prizes with
    one stamper than its burnt share (the ``stamper_exposure`` refusal)."""
    from tests.chain.conftest import make_world

    w = make_world()  # the in-process chain
    c = w.chain
    prize = POOL  # a prize the pool covers in full: above the burnt share, so theft pays
    terms = w.lottery(prize=prize)
    honest = w.cheque(terms, w.alice, 0, prize)  # Alice holds every ticket: she must win
    coalition = [w.payer, w.stamper, w.mallory, w.carol]
    before = sum(c.balance(k.address) for k in coalition)
    ticket = w.reveal(terms)  # the block R is mined: the winner is public
    fees = 0
    # The stamper stamps the winning ticket to the payer's sybils; the first claims the prize.
    stolen = w.cheque(terms, w.mallory, ticket, 1)
    fees += c.claim(w.mallory, stolen).fee
    # The second claims "compensation": it slashes the stamper with itself as whistleblower
    # and takes the pool.
    drain = w.cheque(terms, w.carol, ticket, 1)
    fees += c.claim(w.carol, drain).fee
    assert c.pool(w.stamper.address) == 0
    # Alice, who was paid the winning ticket, gets neither the prize nor compensation.
    with pytest.raises(TransactionReverted, match="pool empty"):
        c.claim(w.alice, honest)
    after = sum(c.balance(k.address) for k in coalition)
    received = after - before + fees
    assert received == prize + REWARD + POOL
    # The prize was locked before ``before``: paying honestly, the coalition would get back
    # only its deposit (withdrawn after the exit delay); cheating, it gets the above instead.
    gain = received - DEPOSIT
    assert gain == prize - BURN > 0  # the prize minus the burnt share
    assert c.burnt() == BURN
