"""The ``SettlementChain`` protocol: everything the lottery services do on chain.

One interface, two implementations: ``InProcessChain`` (an EVM inside this process,
the default, nothing to set up) and ``JsonRpcChain`` (any Ethereum JSON-RPC URL:
anvil in the end-to-end tests, a real chain in production). The payer, the stamper
service and the payee use only this protocol; ``tests/chain`` runs the same suite
against both.

Calls are synchronous: the in-process EVM is CPU-bound and a JSON-RPC client is a
short request. Services on the event loop call it through ``asyncio.to_thread``;
implementations are safe to call from several threads.

Every transaction is mined before the call returns. A transaction the contract
refuses raises ``TransactionReverted`` with the contract's message. In process it is
mined and costs gas; ``JsonRpcChain`` by default simulates each transaction first and
does not send one the contract would refuse (``gas_used == 0``, nothing paid), and a
transaction that reverts anyway once mined (the state changed in between) costs gas.
Reads take ``block``: the state after that block, ``None`` for the newest. Payees
read at ``head - confirmations`` so that a reorg cannot take back what they trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rpcpay.lottery.cheque import Domain, LotteryTerms, StampedCheque
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.state import LotteryState, StamperState
from rpcpay.wire.keccak import keccak256

__all__ = [
    "DEFAULT_PARAMS",
    "ContractParams",
    "LogEntry",
    "Receipt",
    "SettlementChain",
    "fraud_commitment",
]


@dataclass(frozen=True, slots=True)
class ContractParams:
    """The contract's constructor arguments, fixed for its lifetime (in blocks and basis points).

    ``exit_delay`` is derived, never chosen: a stamper that asks to leave at block E
    was named only by lotteries created before E, which reveal by
    ``E + max_reveal_delay`` and can be claimed until ``redeem_blocks`` later; the
    ``proof_grace`` after that leaves time for fraud proofs. Only then can it withdraw.
    """

    max_reveal_delay: int
    redeem_blocks: int
    proof_grace: int
    whistleblower_bps: int
    compensation_bps: int

    def __post_init__(self) -> None:
        # All three windows are at least a block (a zero proof grace would let a stamper
        # withdraw in the block a compensating claim could still slash it).
        if min(self.max_reveal_delay, self.redeem_blocks, self.proof_grace) <= 0:
            raise ValueError("windows must be positive")
        # The two shares are parts of one deposit; the rest is burnt.
        shares = (self.whistleblower_bps, self.compensation_bps)
        if min(shares) < 0 or sum(shares) > 10_000:
            raise ValueError("whistleblower_bps + compensation_bps must be within 0..10000")

    @property
    def exit_delay(self) -> int:
        return self.max_reveal_delay + self.redeem_blocks + self.proof_grace


DEFAULT_PARAMS = ContractParams(
    max_reveal_delay=216_000,  # 30 days of 12-second blocks
    redeem_blocks=7_200,  # 1 day
    proof_grace=7_200,  # 1 day
    whistleblower_bps=1_000,  # 10% of the slashed deposit to whoever proves the fraud
    compensation_bps=5_000,  # 50% kept to compensate cheated recipients; 40% burnt
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event a transaction emitted: the emitting contract, its topics and data."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    """A mined transaction: where, what it cost, and the events it emitted.

    ``output`` is what the function returned (ABI-encoded; for a deployment, the new
    contract's address). A JSON-RPC node does not report return values, so there it
    is empty except for deployments: services read the events in ``logs`` instead
    (``LotteryCreated``, ``Claimed``, ``Compensated``, ``Slashed``, ...).
    """

    tx_hash: bytes
    block_number: int
    gas_used: int
    fee: int  # wei paid for gas by the sender
    output: bytes
    logs: tuple[LogEntry, ...] = ()


def fraud_commitment(whistleblower: bytes, cheque_a: bytes, cheque_b: bytes) -> bytes:
    """``keccak256(abi.encode(whistleblower, hash_a, hash_b))``, for ``commit_fraud``.

    The cheque hashes go in the same order as the cheques will in ``prove_fraud``.
    """
    return keccak256(whistleblower.rjust(32, b"\0") + cheque_a + cheque_b)


class SettlementChain(Protocol):
    """One settlement contract on one chain, and the keys' view of it."""

    @property
    def chain_id(self) -> int: ...

    @property
    def contract(self) -> bytes:
        """The deployed contract's address (``ChainError`` before ``deploy``/attach)."""
        ...

    @property
    def domain(self) -> Domain:
        """The EIP-712 domain cheques for this contract are signed in."""
        ...

    # --- setup ---------------------------------------------------------------
    def deploy(self, key: EthKey, params: ContractParams) -> bytes:
        """Deploy a new contract from ``key`` and use it from now on; returns its address."""
        ...

    def attach(self, contract: bytes) -> None:
        """Use a contract deployed earlier (what services do: the address is configuration)."""
        ...

    # --- reads ---------------------------------------------------------------
    def params(self) -> ContractParams: ...

    def block_number(self) -> int:
        """The newest mined block."""
        ...

    def block_hash(self, number: int) -> bytes:
        """The hash of a mined block (the randomness of a lottery revealing at it)."""
        ...

    def balance(self, address: bytes, block: int | None = None) -> int: ...

    def stamper(self, address: bytes, block: int | None = None) -> StamperState: ...

    def lottery(self, lottery_id: bytes, block: int | None = None) -> LotteryState | None:
        """The lottery's record, ``None`` if it does not exist at that block."""
        ...

    def pool(self, stamper: bytes, block: int | None = None) -> int:
        """What is left for compensation from a slashed stamper's deposit."""
        ...

    def burnt(self, block: int | None = None) -> int:
        """Slashed wei locked in the contract for good."""
        ...

    def compensated(self, cheque_id: bytes, block: int | None = None) -> bool: ...

    # --- transactions ---------------------------------------------------------
    def deposit_stamper(self, key: EthKey, amount: int) -> Receipt: ...

    def request_exit(self, key: EthKey) -> Receipt: ...

    def withdraw_stamper(self, key: EthKey) -> Receipt: ...

    def create_lottery(
        self, key: EthKey, stamper: bytes, prize: int, reveal_block: int, salt: bytes
    ) -> tuple[LotteryTerms, Receipt]: ...

    def draw(self, key: EthKey, lottery_id: bytes) -> Receipt: ...

    def claim(self, key: EthKey, sc: StampedCheque) -> Receipt:
        """Claim a winning cheque; the prize (or compensation) goes to its recipient,
        never to ``key`` unless ``key`` is the recipient."""
        ...

    def commit_fraud(self, key: EthKey, commitment: bytes) -> Receipt: ...

    def prove_fraud(self, key: EthKey, a: StampedCheque, b: StampedCheque) -> Receipt: ...

    def refund(self, key: EthKey, lottery_id: bytes) -> Receipt: ...

    # --- test and development chains only -------------------------------------
    def mine(self, blocks: int = 1) -> int:
        """Mine empty blocks; returns the new head. Real chains raise ``ChainError``."""
        ...
