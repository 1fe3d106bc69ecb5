"""Creating, drawing, claiming and refunding lotteries, with every adversarial claim."""

import pytest

from rpcpay.chain import ContractParams, InProcessChain
from rpcpay.errors import ChainRpcError, TransactionReverted
from rpcpay.lottery.cheque import Cheque, Domain, StampedCheque, draw_seed, winning_ticket
from rpcpay.lottery.eip712 import cheque_hash, sign_cheque, sign_stamp
from rpcpay.lottery.eth import SECP256K1_N
from tests.chain.conftest import PARAMS, PRIZE, MakeWorld, World, split_three, winner_of


def test_create_lottery_checks(world: World, new_world: MakeWorld) -> None:
    c = world.chain
    # (stamper, prize, reveal block relative to the block the transaction is mined in)
    cases = [
        ((world.stamper.address, 0, 1), "prize"),
        ((world.stamper.address, PRIZE, 0), "reveal in the past"),
        ((world.stamper.address, PRIZE, 1 + PARAMS.max_reveal_delay), "reveal too far"),
        ((world.alice.address, PRIZE, 5), "stamper not active"),
    ]
    for (stamper, prize, reveal), reason in cases:
        mined_in = c.block_number() + 1
        with pytest.raises(TransactionReverted, match=reason):
            c.create_lottery(world.payer, stamper, prize, mined_in + reveal, b"\0" * 32)
    # The furthest reveal allowed.
    c.create_lottery(
        world.payer, world.stamper.address, PRIZE,
        c.block_number() + 1 + PARAMS.max_reveal_delay, b"\0" * 32,
    )  # fmt: skip
    terms = world.lottery()
    with pytest.raises(TransactionReverted, match="lottery exists"):
        c.create_lottery(world.payer, terms.stamper, PRIZE, terms.reveal_block, terms.salt)
    rich = new_world(balance=2**130)
    reveal = rich.chain.block_number() + 5
    # anvil's transaction pool refuses a transaction whose value plus gas reaches 2**128 wei
    # (more ether than exists) before the contract sees it; on py-evm (in process, or served
    # by `rpcpay chain`) the contract does.
    py_evm = isinstance(rich.chain, InProcessChain) or str(
        rich.chain.rpc("web3_clientVersion", [])
    ).startswith("rpcpay-devnode")
    if py_evm:
        too_big, largest = pytest.raises(TransactionReverted, match="prize"), 2**128 - 1
    else:
        too_big, largest = pytest.raises(ChainRpcError, match="Insufficient funds"), 2**127
    with too_big:
        rich.chain.create_lottery(rich.payer, rich.stamper.address, 2**128, reveal, b"\2" * 32)
    rich.chain.create_lottery(rich.payer, rich.stamper.address, largest, reveal, b"\2" * 32)


def test_winning_cheque_pays_the_whole_prize_once(world: World) -> None:
    terms = world.lottery()
    cheques = split_three(world, terms)
    ticket = world.reveal(terms)
    win = winner_of(cheques, ticket)
    recipient = win.cheque.recipient
    before = world.chain.balance(recipient)
    r = world.chain.claim(world.deployer, win)  # anyone may send it
    assert world.chain.balance(recipient) == before + PRIZE
    state = world.chain.lottery(terms.id)
    assert state is not None and state.paid_cheque == cheque_hash(win.cheque)
    assert state.seed == draw_seed(world.chain.block_hash(terms.reveal_block), terms.id)
    print(f"gas: claim (with draw) {r.gas_used}")
    # Double claim.
    with pytest.raises(TransactionReverted, match="already claimed"):
        world.chain.claim(world.deployer, win)
    # Losing cheques.
    for sc in cheques:
        if sc is not win:
            with pytest.raises(TransactionReverted, match="not a winning cheque"):
                world.chain.claim(world.deployer, sc)


def test_front_running_a_claim_pays_the_recipient_not_the_sender(world: World) -> None:
    terms = world.lottery()
    cheques = split_three(world, terms)
    win = winner_of(cheques, world.reveal(terms))
    recipient = win.cheque.recipient
    mallory_before = world.chain.balance(world.mallory.address)
    recipient_before = world.chain.balance(recipient)
    r = world.chain.claim(world.mallory, win)  # Mallory copied the claim from the mempool
    assert world.chain.balance(world.mallory.address) == mallory_before - r.fee
    assert world.chain.balance(recipient) == recipient_before + PRIZE


def test_claim_window(world: World) -> None:
    terms = world.lottery()
    cheques = split_three(world, terms)
    with pytest.raises(TransactionReverted, match="not revealed"):
        world.chain.claim(world.alice, cheques[0])
    ticket = world.reveal(terms)
    world.chain.draw(world.alice, terms.id)
    # The claim would be mined in block reveal + redeem_blocks + 1: one too late.
    world.chain.mine(terms.reveal_block + PARAMS.redeem_blocks - world.chain.block_number())
    late = winner_of(cheques, ticket)
    with pytest.raises(TransactionReverted, match="redeem window over"):
        world.chain.claim(world.alice, late)


def test_claim_in_last_block_of_window(world: World) -> None:
    terms = world.lottery()
    cheques = split_three(world, terms)
    ticket = world.reveal(terms)
    # The claim is mined in block reveal + redeem_blocks: the last one allowed.
    world.chain.mine(terms.reveal_block + PARAMS.redeem_blocks - 1 - world.chain.block_number())
    r = world.chain.claim(world.alice, winner_of(cheques, ticket))
    assert r.block_number == terms.reveal_block + PARAMS.redeem_blocks


def test_forged_signatures(world: World) -> None:
    terms = world.lottery(prize=10)
    # Mallory signs as payer, or as stamper, over the whole space: whoever wins, it is refused.
    forged_payer = world.cheque(terms, world.mallory, 0, 10, payer=world.mallory)
    forged_stamp = world.cheque(terms, world.mallory, 0, 10, stamper=world.mallory)
    self_stamped = world.cheque(terms, world.mallory, 0, 10, stamper=world.payer)
    world.reveal(terms)
    with pytest.raises(TransactionReverted, match="not the payer's cheque"):
        world.chain.claim(world.mallory, forged_payer)
    for sc in (forged_stamp, self_stamped):
        with pytest.raises(TransactionReverted, match="not stamped by the lottery's stamper"):
            world.chain.claim(world.mallory, sc)
    good = world.cheque(terms, world.alice, 0, 10)
    # A malleated (high-s) copy of a valid signature.
    s = int.from_bytes(good.payer_sig[32:64], "big")
    high = (
        good.payer_sig[:32]
        + (SECP256K1_N - s).to_bytes(32, "big")
        + bytes([55 - good.payer_sig[64]])
    )
    with pytest.raises(TransactionReverted, match="non-canonical signature"):
        world.chain.claim(world.alice, StampedCheque(good.cheque, high, good.stamp_sig))
    with pytest.raises(TransactionReverted, match="bad signature"):
        world.chain.claim(
            world.alice,
            StampedCheque(good.cheque, bytes(32) + b"\x01" * 32 + b"\x1b", good.stamp_sig),
        )
    world.chain.claim(world.alice, good)


def test_replay_into_another_lottery_recipient_chain_or_contract(world: World) -> None:
    t1 = world.lottery(prize=10, salt=b"\x01" * 32)
    t2 = world.lottery(prize=10, salt=b"\x02" * 32)
    good = world.cheque(t1, world.alice, 0, 10)
    moved_lottery = StampedCheque(
        Cheque(t2.id, good.cheque.recipient, 0, 10), good.payer_sig, good.stamp_sig
    )
    moved_recipient = StampedCheque(
        Cheque(t1.id, world.mallory.address, 0, 10), good.payer_sig, good.stamp_sig
    )
    other_chain = world.cheque(t1, world.alice, 0, 10, domain=Domain(1, world.chain.contract))
    # A second deployment on the same chain: a different verifying contract.
    first = world.chain.contract
    second = world.chain.deploy(world.deployer, PARAMS)
    world.chain.attach(first)
    assert second != first
    other_contract = world.cheque(t1, world.alice, 0, 10, domain=Domain(1337, second))
    world.reveal(t2)
    for sc in (moved_lottery, moved_recipient, other_chain, other_contract):
        with pytest.raises(TransactionReverted, match="not the payer's cheque"):
            world.chain.claim(world.alice, sc)
    world.chain.claim(world.alice, good)


def test_cheque_from_another_chain_id_is_refused_there(new_world: MakeWorld) -> None:
    """The same keys, contract address and lottery on chain 1337 and chain 7: no replay."""
    a, b = new_world(chain_id=1337), new_world(chain_id=7)
    assert a.chain.contract == b.chain.contract  # same deployer, same nonce
    ta, tb = a.lottery(prize=10), b.lottery(prize=10)
    assert ta.id == tb.id
    sc = a.cheque(ta, a.alice, 0, 10)
    b.reveal(tb)
    with pytest.raises(TransactionReverted, match="not the payer's cheque"):
        b.chain.claim(b.alice, sc)


def test_range_outside_the_ticket_space(world: World) -> None:
    terms = world.lottery(prize=10)
    world.reveal(terms)
    for start, value in ((0, 0), (0, 11), (10, 1), (2**256 - 1, 1)):
        with pytest.raises(TransactionReverted, match="range"):
            world.chain.claim(world.alice, world.cheque(terms, world.alice, start, value))


def test_refund_after_the_window_only_and_once(world: World) -> None:
    terms = world.lottery()
    world.cheque(terms, world.alice, 0, 1)  # a cheque that (almost surely) loses
    with pytest.raises(TransactionReverted, match="redeem window open"):
        world.chain.refund(world.payer, terms.id)
    world.chain.mine(terms.reveal_block + PARAMS.redeem_blocks - 1 - world.chain.block_number())
    with pytest.raises(TransactionReverted, match="redeem window open"):
        world.chain.refund(world.payer, terms.id)  # mined in the window's last block
    before = world.chain.balance(world.payer.address)
    r = world.chain.refund(world.mallory, terms.id)  # anyone may trigger it; the payer is paid
    assert world.chain.balance(world.payer.address) == before + PRIZE
    assert r.gas_used > 21_000
    with pytest.raises(TransactionReverted, match="settled"):
        world.chain.refund(world.payer, terms.id)
    with pytest.raises(TransactionReverted, match="no lottery"):
        world.chain.refund(world.payer, b"\x09" * 32)


def test_no_refund_after_a_claim(world: World) -> None:
    terms = world.lottery(prize=10)
    sc = world.cheque(terms, world.alice, 0, 10)
    world.reveal(terms)
    world.chain.claim(world.alice, sc)
    world.chain.mine(PARAMS.redeem_blocks)
    with pytest.raises(TransactionReverted, match="settled"):
        world.chain.refund(world.payer, terms.id)


def test_draw_needs_the_reveal_hash_within_256_blocks(new_world: MakeWorld) -> None:
    w = new_world(ContractParams(400, 400, 10, 1_000, 5_000))
    early, late = w.lottery(prize=10, salt=b"\x01" * 32), w.lottery(prize=10, salt=b"\x02" * 32)
    with pytest.raises(TransactionReverted, match="not revealed"):
        w.chain.draw(w.alice, early.id)
    ticket = w.reveal(early)
    w.chain.draw(w.alice, early.id)
    w.chain.draw(w.bob, early.id)  # a second draw changes nothing
    state = w.chain.lottery(early.id)
    assert state is not None and state.seed is not None
    assert winning_ticket(state.seed, 10) == ticket
    w.chain.mine(300)
    # Drawn in time: still claimable long after the hash left the EVM's window.
    w.chain.claim(w.alice, w.cheque(early, w.alice, 0, 10))
    # Never drawn: the randomness is gone, nobody wins, the payer gets it back later.
    with pytest.raises(TransactionReverted, match="reveal hash expired"):
        w.chain.claim(w.alice, w.cheque(late, w.alice, 0, 10))
    w.chain.mine(late.reveal_block + 400 - w.chain.block_number())
    w.chain.refund(w.payer, late.id)


class _Rejector:
    """Init code for a contract whose every call reverts (runtime: PUSH0 PUSH0 REVERT)."""

    RUNTIME = bytes.fromhex("5f5ffd")
    INIT = bytes.fromhex("6003600c5f3960035ff3") + RUNTIME  # codecopy(0, 12, 3); return(0, 3)


def test_claim_is_all_or_nothing(world: World) -> None:
    """Livepeer #657: a claim must never pay part of the prize and burn the cheque.

    Here the prize is fixed at creation and nothing can add to or take from it;
    and if the payment itself fails, the whole claim reverts and the cheque stays
    claimable (nothing is marked paid).
    """
    r = world.chain.send_transaction(world.deployer, b"", _Rejector.INIT, gas=200_000)
    rejector = r.output
    terms = world.lottery(prize=10)
    c = world.cheque(terms, world.alice, 0, 10)
    rc = Cheque(terms.id, rejector, 0, 10)
    stuck = StampedCheque(
        rc, sign_cheque(world.payer, world.domain, rc), sign_stamp(world.stamper, world.domain, rc)
    )
    world.reveal(terms)
    with pytest.raises(TransactionReverted):
        world.chain.claim(world.alice, stuck)
    state = world.chain.lottery(terms.id)
    assert state is not None and state.paid_cheque is None
    # Dust: another lottery of the same payer settling first changes nothing here.
    other = world.lottery(prize=1, salt=b"\x05" * 32)
    world.reveal(other)
    world.chain.claim(world.bob, world.cheque(other, world.bob, 0, 1))
    before = world.chain.balance(world.alice.address)
    world.chain.claim(world.bob, c)
    assert world.chain.balance(world.alice.address) == before + 10
