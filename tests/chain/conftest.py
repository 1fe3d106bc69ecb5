"""A fresh chain with the contract deployed, and helpers to issue cheques.

Every test that takes ``world`` or ``new_world`` runs three times: on the in-process EVM,
on the same EVM served by ``rpcpay chain`` (``chain.devnode``) over JSON-RPC, and on anvil
over JSON-RPC (marked ``anvil``), with the same assertions. That is the
``SettlementChain`` conformance suite: whatever passes in process passes on a real
node. ``JsonRpcChain`` runs here with ``preflight=False``, sending even transactions
the contract refuses, so that refusals are mined and paid for exactly as in process
(``tests/chain/test_jsonrpc.py`` covers the default, simulating mode).

On anvil, making a world resets that chain id's anvil to its genesis (``evm_revert``),
so a test holds at most one world per chain id at a time.
"""

# A fixture shared with tests/lottery: listed so that ruff sees it used.
__all__ = ["anvil_pool"]

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from rpcpay.chain import ContractParams, InProcessChain, dev_keys
from rpcpay.chain.inprocess import DEV_BALANCE
from rpcpay.chain.jsonrpc import JsonRpcChain
from rpcpay.lottery.cheque import Cheque, Domain, LotteryTerms, StampedCheque
from rpcpay.lottery.eip712 import sign_cheque, sign_stamp
from rpcpay.lottery.eth import EthKey
from tests.support.anvil import AnvilPool, anvil_pool

PARAMS = ContractParams(
    max_reveal_delay=40, redeem_blocks=20, proof_grace=10, whistleblower_bps=1_000,
    compensation_bps=5_000,
)  # fmt: skip
DEPOSIT = 10**18
PRIZE = 10**17


@dataclass
class World:
    chain: InProcessChain | JsonRpcChain
    deployer: EthKey
    stamper: EthKey
    payer: EthKey
    alice: EthKey
    bob: EthKey
    carol: EthKey
    mallory: EthKey
    keys: list[EthKey]

    @property
    def domain(self) -> Domain:
        return self.chain.domain

    def lottery(
        self,
        prize: int = PRIZE,
        reveal_in: int = 10,
        salt: bytes = b"\x01" * 32,
        payer: EthKey | None = None,
        stamper: EthKey | None = None,
    ) -> LotteryTerms:
        head = self.chain.block_number()
        terms, _ = self.chain.create_lottery(
            payer or self.payer,
            (stamper or self.stamper).address,
            prize,
            head + 1 + reveal_in,
            salt,
        )
        return terms

    def cheque(
        self,
        terms: LotteryTerms,
        recipient: EthKey,
        start: int,
        value: int,
        payer: EthKey | None = None,
        stamper: EthKey | None = None,
        domain: Domain | None = None,
    ) -> StampedCheque:
        c = Cheque(lottery=terms.id, recipient=recipient.address, start=start, value=value)
        d = domain or self.domain
        return StampedCheque(
            cheque=c,
            payer_sig=sign_cheque(payer or self.payer, d, c),
            stamp_sig=sign_stamp(stamper or self.stamper, d, c),
        )

    def reveal(self, terms: LotteryTerms) -> int:
        """Mine past the reveal block; returns the winning ticket (computed in Python)."""
        from rpcpay.lottery.cheque import draw_seed, winning_ticket

        self.chain.mine(max(0, terms.reveal_block + 1 - self.chain.block_number()))
        seed = draw_seed(self.chain.block_hash(terms.reveal_block), terms.id)
        return winning_ticket(seed, terms.prize)


class MakeWorld(Protocol):
    def __call__(
        self, params: ContractParams = ..., chain_id: int = ..., balance: int = ...
    ) -> World: ...


def _populate(
    chain: InProcessChain | JsonRpcChain, keys: list[EthKey], params: ContractParams
) -> World:
    deployer, stamper, payer, alice, bob, carol, mallory, _ = keys
    chain.deploy(deployer, params)
    chain.deposit_stamper(stamper, DEPOSIT)
    return World(chain, deployer, stamper, payer, alice, bob, carol, mallory, keys)


def make_world(
    params: ContractParams = PARAMS, chain_id: int = 1337, balance: int = DEV_BALANCE
) -> World:
    """A world on a new in-process chain."""
    keys = dev_keys(8)
    chain = InProcessChain(funded=keys, chain_id=chain_id, balance=balance)
    return _populate(chain, keys, params)


def anvil_world(
    pool: AnvilPool,
    params: ContractParams = PARAMS,
    chain_id: int = 1337,
    balance: int = DEV_BALANCE,
) -> World:
    """A world on a fresh anvil (reached through ``JsonRpcChain``, ``preflight=False``)."""
    node = pool.fresh(chain_id)
    keys = dev_keys(8)
    for key in keys:
        node.set_balance(key.address, balance)
    chain = JsonRpcChain(node.url, chain_id=chain_id, preflight=False, poll_interval=0.001)
    return _populate(chain, keys, params)


def devnode_world(
    stack: contextlib.ExitStack,
    params: ContractParams = PARAMS,
    chain_id: int = 1337,
    balance: int = DEV_BALANCE,
) -> World:
    """A world on a fresh ``rpcpay chain`` devnode (its py-evm over JSON-RPC, on loopback),
    reached through ``JsonRpcChain`` with ``preflight=False``; it stops with ``stack``."""
    from rpcpay.chain.devnode import DevNodeConfig, serve_in_thread

    config = DevNodeConfig(port=0, chain_id=chain_id, keys=8, balance=balance, deploy=False)
    _, url = stack.enter_context(serve_in_thread(config))
    chain = JsonRpcChain(url, chain_id=chain_id, preflight=False, poll_interval=0.001)
    stack.callback(chain.close)
    return _populate(chain, dev_keys(8), params)


@pytest.fixture(params=["inprocess", "devnode", pytest.param("anvil", marks=pytest.mark.anvil)])
def new_world(request: pytest.FixtureRequest) -> Iterator[MakeWorld]:
    """Makes worlds on the in-process chain, on the devnode (``rpcpay chain``), or on anvil."""
    if request.param == "inprocess":
        yield make_world
        return
    if request.param == "devnode":
        with contextlib.ExitStack() as stack:
            yield functools.partial(devnode_world, stack)
        return
    pool: AnvilPool = request.getfixturevalue("anvil_pool")
    yield functools.partial(anvil_world, pool)


@pytest.fixture
def world(new_world: MakeWorld) -> Iterator[World]:
    yield new_world()


def split_three(w: World, terms: LotteryTerms) -> list[StampedCheque]:
    """Alice, Bob and Carol get the whole ticket space between them, so one of them wins."""
    third = terms.prize // 3
    return [
        w.cheque(terms, w.alice, 0, third),
        w.cheque(terms, w.bob, third, third),
        w.cheque(terms, w.carol, 2 * third, terms.prize - 2 * third),
    ]


def winner_of(cheques: list[StampedCheque], ticket: int) -> StampedCheque:
    (win,) = [sc for sc in cheques if sc.cheque.start <= ticket < sc.cheque.end]
    return win
