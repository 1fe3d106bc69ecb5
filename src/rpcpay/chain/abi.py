"""The settlement contract's ABI as both chains use it: calldata, results, events, reverts.

Both ``InProcessChain`` and ``JsonRpcChain`` talk to the same bytecode, so the
encoding of calls and the decoding of what comes back live here once: the two
chains differ only in how bytes reach the EVM.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_abi.abi import decode, encode

from rpcpay.chain.settlement import ContractParams, LogEntry
from rpcpay.errors import ChainError
from rpcpay.lottery.cheque import Cheque, Domain, LotteryTerms
from rpcpay.lottery.eip712 import domain_separator
from rpcpay.lottery.state import LotteryState, StamperState
from rpcpay.wire.keccak import keccak256

__all__ = [
    "ERROR_SELECTOR",
    "ContractAbi",
    "ContractReads",
    "address_from_abi",
    "check_created_lottery",
    "cheque_tuple",
    "decode_revert",
    "lottery_from_abi",
    "stamper_from_abi",
    "verify_contract",
]

ERROR_SELECTOR = keccak256(b"Error(string)")[:4]
"""What a Vyper ``assert ..., "reason"`` reverts with: ``Error(string)``'s selector."""

_EMPTY_WORD = bytes(32)


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"] == "tuple":
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")"
    return str(item["type"])


class ContractAbi:
    """Selectors, argument types and event topics of the contract, from the artifact's ABI."""

    def __init__(self, abi: Iterable[dict[str, Any]]) -> None:
        self.inputs: dict[str, list[str]] = {}
        self.outputs: dict[str, list[str]] = {}
        self.selectors: dict[str, bytes] = {}
        self.events: dict[str, bytes] = {}
        self.constructor: list[str] = []
        for item in abi:
            if item["type"] == "constructor":
                self.constructor = [_abi_type(i) for i in item["inputs"]]
            elif item["type"] == "event":
                signature = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                self.events[item["name"]] = keccak256(signature.encode())
            elif item["type"] == "function":
                name = item["name"]
                ins = [_abi_type(i) for i in item["inputs"]]
                self.inputs[name] = ins
                self.outputs[name] = [_abi_type(o) for o in item["outputs"]]
                self.selectors[name] = keccak256(f"{name}({','.join(ins)})".encode())[:4]

    def calldata(self, name: str, *args: Any) -> bytes:
        return self.selectors[name] + encode(self.inputs[name], list(args))

    def result(self, name: str, output: bytes) -> tuple[Any, ...]:
        return tuple(decode(self.outputs[name], output))

    def deployment(self, bytecode: bytes, params: ContractParams) -> bytes:
        """Init code and constructor arguments of a new deployment."""
        return bytecode + encode(
            self.constructor,
            [
                params.max_reveal_delay,
                params.redeem_blocks,
                params.proof_grace,
                params.whistleblower_bps,
                params.compensation_bps,
            ],
        )


def cheque_tuple(c: Cheque) -> tuple[bytes, bytes, int, int]:
    """A cheque as the ABI's ``(bytes32,address,uint256,uint256)`` tuple."""
    return (c.lottery, c.recipient, c.start, c.value)


def address_from_abi(value: Any) -> bytes:
    """eth-abi decodes addresses as hex strings."""
    return bytes.fromhex(str(value).removeprefix("0x"))


def decode_revert(output: bytes) -> str | None:
    """The message of an ``Error(string)`` revert; ``None`` for any other revert data."""
    # A Vyper assert with a message reverts with Error(string).
    if output[:4] != ERROR_SELECTOR:
        return None
    try:
        return str(decode(["string"], output[4:])[0])
    except Exception:
        return None


def stamper_from_abi(record: tuple[Any, ...]) -> StamperState:
    deposit, exit_block, slashed = record
    return StamperState(deposit=deposit, exit_block=exit_block, slashed=slashed)


def lottery_from_abi(lottery_id: bytes, record: tuple[Any, ...]) -> LotteryState | None:
    """The lottery a ``lotteries(id)`` read returned; ``None`` for the all-zero record."""
    payer, stamper, prize, reveal, seed, paid, refunded = record
    # A lottery never has a zero prize; a zero record is an id nobody created.
    if prize == 0:
        return None
    return LotteryState(
        id=lottery_id,
        payer=address_from_abi(payer),
        stamper=address_from_abi(stamper),
        prize=prize,
        reveal_block=reveal,
        seed=None if seed == _EMPTY_WORD else bytes(seed),
        paid_cheque=None if paid == _EMPTY_WORD else bytes(paid),
        refunded=refunded,
    )


def check_created_lottery(
    abi: ContractAbi, contract: bytes, logs: Iterable[LogEntry], terms: LotteryTerms
) -> None:
    """Raise ``ValueError`` unless the contract logged ``LotteryCreated`` for ``terms.id``.

    The contract computes the id itself; a mismatch with ``lottery_id()`` would mean
    Python and the contract disagree about which lottery a cheque names.
    """
    topic = abi.events["LotteryCreated"]
    for entry in logs:
        # The event is the contract's own, and names the lottery in its first topic.
        if entry.address == contract and entry.topics[:1] == (topic,):
            if entry.topics[1:2] == (terms.id,):
                return
            raise ValueError("contract computed another lottery id than lottery_id()")
    raise ValueError("create_lottery logged no LotteryCreated event")


class ContractReads:
    """The protocol's reads, written once over ``call_view`` (each chain supplies that)."""

    def call_view(self, name: str, *args: Any, block: int | None = None) -> tuple[Any, ...]:
        """Any view function by name, at ``block`` (``None``: the newest)."""
        raise NotImplementedError

    def params(self) -> ContractParams:
        exit_delay = self.call_view("EXIT_DELAY")[0]
        max_reveal = self.call_view("MAX_REVEAL_DELAY")[0]
        redeem = self.call_view("REDEEM_BLOCKS")[0]
        return ContractParams(
            max_reveal_delay=max_reveal,
            redeem_blocks=redeem,
            proof_grace=exit_delay - max_reveal - redeem,
            whistleblower_bps=self.call_view("WHISTLEBLOWER_BPS")[0],
            compensation_bps=self.call_view("COMPENSATION_BPS")[0],
        )

    def stamper(self, address: bytes, block: int | None = None) -> StamperState:
        return stamper_from_abi(self.call_view("stampers", address, block=block)[0])

    def lottery(self, lottery_id: bytes, block: int | None = None) -> LotteryState | None:
        return lottery_from_abi(lottery_id, self.call_view("lotteries", lottery_id, block=block)[0])

    def pool(self, stamper: bytes, block: int | None = None) -> int:
        return int(self.call_view("pools", stamper, block=block)[0])

    def burnt(self, block: int | None = None) -> int:
        return int(self.call_view("burnt", block=block)[0])

    def compensated(self, cheque_id: bytes, block: int | None = None) -> bool:
        return bool(self.call_view("compensated", cheque_id, block=block)[0])


def verify_contract(reads: ContractReads, domain: Domain) -> None:
    """Raise ``ChainError`` unless ``domain.contract`` is a settlement contract we can use.

    The contract's own EIP-712 domain separator must be the one Python computes for
    this chain id and address: then it is this contract's ABI at this address, and
    every signature made here is valid there. (A contract of the same ABI but other
    code would still pass; the address is configuration the operator vouches for.)
    """
    try:
        (separator,) = reads.call_view("domain_separator")
    except Exception as exc:
        raise ChainError(f"no settlement contract at 0x{domain.contract.hex()}: {exc}") from exc
    # The contract signs in the same domain as this chain id and address.
    if separator != domain_separator(domain):
        raise ChainError(
            f"contract at 0x{domain.contract.hex()} has another EIP-712 domain "
            f"(wrong chain id {domain.chain_id}?)"
        )
