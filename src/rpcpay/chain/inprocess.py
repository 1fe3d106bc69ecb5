"""``InProcessChain``: the settlement contract on an EVM inside this process (py-evm).

The default chain: nothing to install or run, deterministic, and fast enough to
settle a test's worth of lotteries in milliseconds. It is a real EVM (Cancun rules,
the same bytecode a public chain would run), not a model of the contract, so what
passes here passes there, up to the chain's block-production behaviour.

Each transaction is mined in a block of its own, as anvil's automine does. Gas is
priced at the block's base fee, so every fee is burnt and balances add up exactly:
``sum(balances) + sum(fees) == total funded``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.vm.forks.cancun import CancunVM
from eth.vm.spoof import SpoofTransaction
from eth_keys.datatypes import PrivateKey

from rpcpay.chain.abi import (
    ContractAbi,
    decode_revert,
)
from rpcpay.chain.artifact import ContractArtifact, load_artifact
from rpcpay.chain.contract_calls import ContractCalls
from rpcpay.chain.settlement import ContractParams, LogEntry, Receipt, SettlementChain
from rpcpay.errors import ChainError, TransactionReverted
from rpcpay.lottery.cheque import LotteryTerms
from rpcpay.lottery.eth import EthKey
from rpcpay.wire.keccak import keccak256

__all__ = ["CALL_GAS", "DEPLOY_GAS", "DEV_BALANCE", "InProcessChain", "dev_keys"]

DEV_BALANCE = 10**24
"""What each funded account starts with (a million ether)."""

CALL_GAS = 1_000_000
DEPLOY_GAS = 6_000_000
_ZERO_ADDRESS = bytes(20)


def dev_keys(count: int, label: bytes = b"rpcpay dev key") -> list[EthKey]:
    """Deterministic keys for tests and demos: ``keccak256(label || i)``. Never for real funds."""
    return [EthKey(keccak256(label + i.to_bytes(4, "big"))) for i in range(count)]


def _revert_reason(output: bytes, error: Exception) -> str:
    reason = decode_revert(output)
    if reason is not None:
        return reason
    return str(error) or type(error).__name__


def _logs(computation: Any) -> tuple[LogEntry, ...]:
    return tuple(
        LogEntry(
            address=bytes(address),
            topics=tuple(t.to_bytes(32, "big") for t in topics),
            data=bytes(data),
        )
        for address, topics, data in computation.get_log_entries()
    )


class InProcessChain(ContractCalls):
    """A private chain in memory, with funded accounts, that settles rpcpay lotteries."""

    def __init__(
        self,
        funded: Sequence[EthKey] = (),
        chain_id: int = 1337,
        balance: int = DEV_BALANCE,
        artifact: ContractArtifact | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._chain_id = chain_id
        self._artifact = artifact or load_artifact()
        self._abi = ContractAbi(self._artifact.abi)
        self._contract: bytes | None = None
        klass = MiningChain.configure(
            __name__="RpcpayInProcessChain",
            vm_configuration=((0, CancunVM),),
            chain_id=chain_id,
        )
        genesis_params: dict[str, Any] = {
            "difficulty": 0,
            "gas_limit": 30_000_000,
            "timestamp": 1_700_000_000,
            "nonce": bytes(8),
            "mix_hash": bytes(32),
            "coinbase": _ZERO_ADDRESS,
            "extra_data": b"",
        }
        state = {
            k.address: {"balance": balance, "nonce": 0, "code": b"", "storage": {}} for k in funded
        }
        self._chain = cast(Any, klass).from_genesis(AtomicDB(), genesis_params, state)

    # --- transactions -----------------------------------------------------------
    def send_transaction(
        self, key: EthKey, to: bytes, data: bytes, value: int = 0, gas: int | None = None
    ) -> Receipt:
        """Mine one raw transaction (``to=b""`` creates a contract; ``output`` is its address).

        For tests and tools; the services use the named methods.
        """
        with self._lock:
            chain = self._chain
            vm = chain.get_vm()
            gas_price = chain.header.base_fee_per_gas
            tx = vm.create_unsigned_transaction(
                nonce=vm.state.get_nonce(key.address),
                gas_price=gas_price,
                gas=CALL_GAS if gas is None else gas,
                to=to,
                value=value,
                data=data,
            ).as_signed_transaction(PrivateKey(key.secret))
            try:
                result, receipts, computations = chain.mine_all([tx])
            except Exception as exc:  # py-evm refuses a transaction it cannot include
                raise ChainError(f"transaction not included: {exc}") from exc
            computation = computations[0]
            gas_used = receipts[0].gas_used
            if computation.is_error:
                raise TransactionReverted(
                    _revert_reason(computation.output, computation.error),
                    gas_used,
                    gas_used * gas_price,
                )
            return Receipt(
                tx_hash=tx.hash,
                block_number=result.imported_block.header.block_number,
                gas_used=gas_used,
                fee=gas_used * gas_price,
                output=computation.output if to else computation.msg.storage_address,
                logs=_logs(computation),
            )

    def _check_returned_id(self, receipt: Receipt, terms: LotteryTerms) -> None:
        (returned,) = self._abi.result("create_lottery", receipt.output)
        # In process the return value is visible: it must be the id lottery_id() computes.
        if returned != terms.id:
            raise ValueError("contract computed another lottery id than lottery_id()")

    def deploy(self, key: EthKey, params: ContractParams) -> bytes:
        code = self._abi.deployment(self._artifact.bytecode, params)
        receipt = self.send_transaction(key, b"", code, gas=DEPLOY_GAS)
        self._contract = receipt.output
        return receipt.output

    # --- reads --------------------------------------------------------------------
    def _header(self, block: int | None) -> Any:
        if block is None:
            return self._chain.get_canonical_head()
        try:
            return self._chain.get_canonical_block_header_by_number(block)
        except Exception as exc:
            raise ChainError(f"no block {block}") from exc

    def call_view(self, name: str, *args: Any, block: int | None = None) -> tuple[Any, ...]:
        """Any view function by name (also for tests and tools: ``domain_separator``, ...)."""
        with self._lock:
            header = self._header(block)
            vm = self._chain.get_vm(header)
            unsigned = vm.create_unsigned_transaction(
                nonce=0,
                gas_price=0,
                gas=CALL_GAS,
                to=self.contract,
                value=0,
                data=self._abi.calldata(name, *args),
            )
            try:
                output = self._chain.get_transaction_result(
                    SpoofTransaction(unsigned, from_=_ZERO_ADDRESS), header
                )
            except Exception as exc:
                raise ChainError(f"call {name} failed: {exc}") from exc
            return self._abi.result(name, output)

    def block_number(self) -> int:
        with self._lock:
            return int(self._chain.get_canonical_head().block_number)

    def block_hash(self, number: int) -> bytes:
        with self._lock:
            return bytes(self._header(number).hash)

    def balance(self, address: bytes, block: int | None = None) -> int:
        with self._lock:
            return int(self._chain.get_vm(self._header(block)).state.get_balance(address))

    # --- development ------------------------------------------------------------
    def mine(self, blocks: int = 1) -> int:
        # A block count is never negative.
        if blocks < 0:
            raise ValueError("blocks must be >= 0")
        with self._lock:
            for _ in range(blocks):
                self._chain.mine_block()
            return self.block_number()


def _conforms(chain: InProcessChain) -> SettlementChain:
    """Never called: makes mypy prove that ``InProcessChain`` is a ``SettlementChain``."""
    return chain
