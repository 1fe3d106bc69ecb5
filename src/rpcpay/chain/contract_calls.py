"""The protocol's transactions, written once over ``send_transaction``.

``InProcessChain`` and ``JsonRpcChain`` differ only in how a signed transaction reaches
the EVM and how its receipt comes back; what each named call encodes, and what a lottery's
creation must prove, is the same contract on both, so it lives here once.
"""

from __future__ import annotations

from typing import Any

from rpcpay.chain.abi import (
    ContractAbi,
    ContractReads,
    check_created_lottery,
    cheque_tuple,
    verify_contract,
)
from rpcpay.chain.settlement import Receipt
from rpcpay.errors import ChainError
from rpcpay.lottery.cheque import Domain, LotteryTerms, StampedCheque
from rpcpay.lottery.eth import EthKey

__all__ = ["ContractCalls"]


class ContractCalls(ContractReads):
    """Named contract transactions over a chain's ``send_transaction``.

    A chain supplies ``_abi``, ``_contract``, ``_chain_id``, ``call_view`` and
    ``send_transaction``; everything else of ``SettlementChain``'s contract surface is here.
    """

    _abi: ContractAbi
    _contract: bytes | None
    _chain_id: int

    @property
    def chain_id(self) -> int:
        return self._chain_id

    @property
    def contract(self) -> bytes:
        # Nothing can be called before a contract is deployed or attached.
        if self._contract is None:
            raise ChainError("no settlement contract deployed or attached")
        return self._contract

    @property
    def domain(self) -> Domain:
        return Domain(chain_id=self._chain_id, contract=self.contract)

    def send_transaction(
        self, key: EthKey, to: bytes, data: bytes, value: int = 0, gas: int | None = None
    ) -> Receipt:
        """Mine one transaction and return its receipt (each chain supplies this)."""
        raise NotImplementedError

    def _transact(self, key: EthKey, name: str, *args: Any, value: int = 0) -> Receipt:
        return self.send_transaction(
            key, self.contract, self._abi.calldata(name, *args), value=value
        )

    def _check_returned_id(self, receipt: Receipt, terms: LotteryTerms) -> None:
        """Where the chain reports return values, the id ``create_lottery`` returned must be
        ``terms.id``; a JSON-RPC node reports none, and the event is checked anyway."""

    def attach(self, contract: bytes) -> None:
        """Use a contract deployed earlier (``ChainError`` if it is not a settlement contract
        for this chain id at that address)."""
        previous, self._contract = self._contract, contract
        try:
            verify_contract(self, self.domain)
        except ChainError:
            self._contract = previous
            raise

    def deposit_stamper(self, key: EthKey, amount: int) -> Receipt:
        return self._transact(key, "deposit_stamper", value=amount)

    def request_exit(self, key: EthKey) -> Receipt:
        return self._transact(key, "request_exit")

    def withdraw_stamper(self, key: EthKey) -> Receipt:
        return self._transact(key, "withdraw_stamper")

    def create_lottery(
        self, key: EthKey, stamper: bytes, prize: int, reveal_block: int, salt: bytes
    ) -> tuple[LotteryTerms, Receipt]:
        receipt = self._transact(key, "create_lottery", stamper, reveal_block, salt, value=prize)
        terms = LotteryTerms(
            payer=key.address, stamper=stamper, prize=prize, reveal_block=reveal_block, salt=salt
        )
        # The contract logged (and, where visible, returned) the id lottery_id() computes.
        try:
            self._check_returned_id(receipt, terms)
            check_created_lottery(self._abi, self.contract, receipt.logs, terms)
        except ValueError as exc:
            raise ChainError(str(exc)) from exc
        return terms, receipt

    def draw(self, key: EthKey, lottery_id: bytes) -> Receipt:
        return self._transact(key, "draw", lottery_id)

    def claim(self, key: EthKey, sc: StampedCheque) -> Receipt:
        return self._transact(key, "claim", cheque_tuple(sc.cheque), sc.payer_sig, sc.stamp_sig)

    def commit_fraud(self, key: EthKey, commitment: bytes) -> Receipt:
        return self._transact(key, "commit_fraud", commitment)

    def prove_fraud(self, key: EthKey, a: StampedCheque, b: StampedCheque) -> Receipt:
        a_args = (cheque_tuple(a.cheque), a.stamp_sig)
        b_args = (cheque_tuple(b.cheque), b.stamp_sig)
        return self._transact(key, "prove_fraud", *a_args, *b_args)

    def refund(self, key: EthKey, lottery_id: bytes) -> Receipt:
        return self._transact(key, "refund", lottery_id)
