"""Settlement on an Ethereum chain for the stamped-lottery rail (docs/lottery.md).

- ``contracts/stamped_lottery.vy``: the contract (Vyper 0.4.3), with its compiled JSON.
- ``artifact``: loads the shipped ABI and bytecode; regenerates them (dev only).
- ``settlement``: the ``SettlementChain`` protocol the services use, ``ContractParams``,
  ``Receipt``.
- ``inprocess``: ``InProcessChain``, the embedded default on py-evm.
"""

from rpcpay.chain.artifact import ContractArtifact, load_artifact
from rpcpay.chain.inprocess import InProcessChain, dev_keys
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
    "Receipt",
    "SettlementChain",
    "dev_keys",
    "fraud_commitment",
    "load_artifact",
]
