"""Stamper deposits and the delayed exit."""

import pytest

from rpcpay.errors import TransactionReverted
from tests.chain.conftest import DEPOSIT, PARAMS, World


def test_deposit_top_up_and_state(world: World) -> None:
    with pytest.raises(TransactionReverted, match="no deposit"):
        world.chain.deposit_stamper(world.stamper, 0)
    world.chain.deposit_stamper(world.stamper, 5)
    s = world.chain.stamper(world.stamper.address)
    assert (s.deposit, s.exit_block, s.slashed, s.active) == (DEPOSIT + 5, 0, False, True)
    assert not world.chain.stamper(world.alice.address).active


def test_exit_is_delayed_and_ends_naming(world: World) -> None:
    c = world.chain
    with pytest.raises(TransactionReverted, match="not active"):
        c.request_exit(world.alice)
    with pytest.raises(TransactionReverted, match="exit delay"):
        c.withdraw_stamper(world.stamper)
    r = c.request_exit(world.stamper)
    exit_block = r.block_number + PARAMS.exit_delay
    assert c.stamper(world.stamper.address).exit_block == exit_block
    with pytest.raises(TransactionReverted, match="not active"):
        c.request_exit(world.stamper)
    with pytest.raises(TransactionReverted, match="exiting"):
        c.deposit_stamper(world.stamper, 1)
    with pytest.raises(TransactionReverted, match="stamper not active"):
        world.lottery()
    # The withdrawal mined one block before exit_block is refused; at exit_block it goes through.
    c.mine(exit_block - 2 - c.block_number())
    with pytest.raises(TransactionReverted, match="exit delay"):
        c.withdraw_stamper(world.stamper)
    before = c.balance(world.stamper.address)
    r = c.withdraw_stamper(world.stamper)
    assert r.block_number == exit_block
    assert c.balance(world.stamper.address) == before + DEPOSIT - r.fee
    with pytest.raises(TransactionReverted, match="exit delay"):
        c.withdraw_stamper(world.stamper)
    # It may come back later with a new deposit.
    c.deposit_stamper(world.stamper, 7)
    assert c.stamper(world.stamper.address).active
