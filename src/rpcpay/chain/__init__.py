"""Settlement on an Ethereum chain for the stamped-lottery rail (docs/lottery.md).

- ``contracts/stamped_lottery.vy``: the contract (Vyper 0.4.3), with its compiled JSON.
- ``artifact``: loads the shipped ABI and bytecode; regenerates them (dev only).
- ``settlement``: the ``SettlementChain`` protocol the services use, ``ContractParams``,
  ``Receipt``.
- ``inprocess``: ``InProcessChain``, the embedded default on py-evm.
- ``jsonrpc``: ``JsonRpcChain``, the same over any Ethereum JSON-RPC node (anvil, geth,
  a provider), with ``transaction`` (local EIP-1559 signing) and ``abi`` (the calls and
  events both chains share).
"""

from rpcpay.chain.artifact import ContractArtifact, load_artifact
from rpcpay.chain.inprocess import InProcessChain, dev_keys
from rpcpay.chain.jsonrpc import JsonRpcChain
from rpcpay.chain.settlement import (
    DEFAULT_PARAMS,
    ContractParams,
    Receipt,
    SettlementChain,
    fraud_commitment,
)

__all__ = [
    "DEFAULT_PARAMS",
    "ContractArtifact",
    "ContractParams",
    "InProcessChain",
    "JsonRpcChain",
    "Receipt",
    "SettlementChain",
    "dev_keys",
    "fraud_commitment",
    "load_artifact",
]
