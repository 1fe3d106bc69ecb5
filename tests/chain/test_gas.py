"""Gas per operation: each is one transaction, and none may creep past its budget.

The budgets are about 25% above what Vyper 0.4.3 produces today (docs/lottery.md lists
the measured figures); a change that blows one is a change to review.
"""

from rpcpay.chain import Receipt
from tests.chain.conftest import PRIZE, World

BUDGET = {
    "deposit_stamper": 62_000,
    "create_lottery": 160_000,
    "draw": 74_000,
    "claim": 128_000,
    "claim_after_draw": 100_000,
    "prove_fraud": 143_000,
    "claim_compensated": 203_000,
    "refund": 82_000,
    "request_exit": 62_000,
}


def run_gas_scenario(world: World) -> dict[str, Receipt]:
    """One transaction of each kind, in an order that makes each possible; what the budgets
    (and bench/lottery_gas.py) measure."""
    c = world.chain
    gas: dict[str, Receipt] = {}
    gas["deposit_stamper"] = c.deposit_stamper(world.carol, 10**18)
    t1, gas["create_lottery"] = c.create_lottery(
        world.payer, world.stamper.address, PRIZE, c.block_number() + 5, b"\x01" * 32
    )
    t2, _ = c.create_lottery(
        world.payer, world.stamper.address, PRIZE, c.block_number() + 5, b"\x02" * 32
    )
    t4, _ = c.create_lottery(
        world.payer, world.stamper.address, PRIZE, c.block_number() + 2, b"\x04" * 32
    )
    win1 = world.cheque(t1, world.alice, 0, PRIZE)
    win2 = world.cheque(t2, world.alice, 0, PRIZE)
    world.reveal(t2)
    gas["claim"] = c.claim(world.alice, win1)  # draws too
    gas["draw"] = c.draw(world.bob, t2.id)
    gas["claim_after_draw"] = c.claim(world.alice, win2)
    gas["claim_compensated"] = c.claim(world.bob, world.cheque(t1, world.bob, 0, PRIZE))
    t3, _ = c.create_lottery(
        world.payer, world.carol.address, PRIZE, c.block_number() + 5, b"\x03" * 32
    )
    a = world.cheque(t3, world.alice, 0, 10, stamper=world.carol)
    b = world.cheque(t3, world.bob, 5, 10, stamper=world.carol)
    gas["prove_fraud"] = c.prove_fraud(world.alice, a, b)
    c.mine(t4.reveal_block + c.params().redeem_blocks - c.block_number())
    gas["refund"] = c.refund(world.payer, t4.id)
    c.deposit_stamper(world.mallory, 1)
    gas["request_exit"] = c.request_exit(world.mallory)
    return gas


def test_gas_budget(world: World) -> None:
    for name, receipt in run_gas_scenario(world).items():
        print(f"gas {name}: {receipt.gas_used}")
        assert 21_000 < receipt.gas_used <= BUDGET[name], name
