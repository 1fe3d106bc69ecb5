"""Invariants over random cheques and random settlement orders, on the real contract."""

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.chain import Receipt
from rpcpay.errors import TransactionReverted
from rpcpay.lottery.cheque import holds_ticket, ranges_overlap
from rpcpay.lottery.eip712 import cheque_hash
from tests.chain.conftest import DEPOSIT, PARAMS, MakeWorld

SPACE = 16
# The world factory is a fixture, but each example makes a fresh world with it.
FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
span = st.integers(0, SPACE - 1).flatmap(lambda s: st.tuples(st.just(s), st.integers(1, SPACE - s)))


@FAST
@given(span, span)
def test_contract_accepts_a_fraud_proof_exactly_when_ranges_overlap(
    new_world: MakeWorld, a: tuple[int, int], b: tuple[int, int]
) -> None:
    w = new_world()
    terms = w.lottery(prize=SPACE)
    x, y = w.cheque(terms, w.alice, *a), w.cheque(terms, w.bob, *b)
    try:
        w.chain.prove_fraud(w.alice, x, y)
        proved = True
    except TransactionReverted as exc:
        assert exc.reason == "no overlap"
        proved = False
    assert proved == ranges_overlap(x.cheque, y.cheque)
    assert w.chain.stamper(w.stamper.address).slashed == proved


@FAST
@given(
    cheques=st.lists(st.tuples(span, st.integers(0, 3)), min_size=1, max_size=5),
    proof=st.none() | st.tuples(st.integers(0, 4), st.integers(0, 4)),
    order=st.permutations(range(5)),
    senders=st.lists(st.sampled_from([0, 3, 4, 5, 6]), min_size=5, max_size=5),  # not the payer
)
def test_eth_is_conserved_and_the_payer_pays_at_most_the_prize(
    new_world: MakeWorld,
    cheques: list[tuple[tuple[int, int], int]],
    proof: tuple[int, int] | None,
    order: list[int],
    senders: list[int],
) -> None:
    w = new_world()
    c = w.chain
    people = [w.alice, w.bob, w.carol, w.mallory]
    fees = 0

    def run(f: Callable[[], Receipt]) -> bool:
        nonlocal fees
        try:
            fees += f().fee
            return True
        except TransactionReverted as exc:
            fees += exc.fee
            return False

    payer_start = c.balance(w.payer.address)
    keys = w.keys
    start_total = sum(c.balance(k.address) for k in keys) + c.balance(c.contract)
    terms, r = c.create_lottery(w.payer, w.stamper.address, SPACE, c.block_number() + 6, bytes(32))
    fees += r.fee
    issued = [w.cheque(terms, people[r], s, n) for (s, n), r in cheques]
    if proof is not None and max(proof) < len(issued):
        run(lambda: c.prove_fraud(w.deployer, issued[proof[0]], issued[proof[1]]))
    ticket = w.reveal(terms)
    claims = [i for i in order if i < len(issued)]
    for i, sender in zip(claims, senders, strict=False):
        run(lambda i=i, sender=sender: c.claim(keys[sender], issued[i]))  # type: ignore[misc]
    c.mine(terms.reveal_block + PARAMS.redeem_blocks - c.block_number())
    refunded = run(lambda: c.refund(w.mallory, terms.id))

    # Not a wei created or lost: balances + burnt fees are what we started with.
    assert sum(c.balance(k.address) for k in keys) + c.balance(c.contract) + fees == start_total
    # The contract holds exactly the deposit, the pool and the burnt part.
    s = c.stamper(w.stamper.address)
    assert c.balance(c.contract) == s.deposit + c.pool(w.stamper.address) + c.burnt()
    assert s.deposit + c.pool(w.stamper.address) + c.burnt() <= DEPOSIT
    # The payer loses the prize exactly when some issued cheque won, else gets it back.
    winners = [sc for sc in issued if holds_ticket(sc.cheque, ticket)]
    distinct_winners = {cheque_hash(sc.cheque) for sc in winners}
    assert refunded == (not winners)
    assert c.balance(w.payer.address) == payer_start - r.fee - (SPACE if winners else 0)
    state = c.lottery(terms.id)
    assert state is not None
    if winners:
        assert state.paid_cheque in distinct_winners
    # Two different winning cheques always cost the stamper its deposit.
    if len(distinct_winners) > 1:
        assert s.slashed and s.deposit == 0
