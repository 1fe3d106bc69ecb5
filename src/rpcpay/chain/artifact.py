"""The settlement contract as shipped: its Vyper source and the compiled artifact beside it.

The package ships ``contracts/stamped_lottery.vy`` and ``contracts/stamped_lottery.json``
(ABI and deployment bytecode). Services load the JSON and never need the compiler,
which keeps Vyper (and the pycryptodome < 4 it pins) out of the runtime dependencies.
The JSON records the SHA-256 of the source it was compiled from; loading refuses an
artifact whose source has changed since, so a stale build cannot be deployed.

Regenerate after editing the contract (needs the ``dev`` extra)::

    python -m rpcpay.chain.build
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from rpcpay.errors import ChainError

__all__ = [
    "CONTRACT_NAME",
    "EVM_VERSION",
    "VYPER_VERSION",
    "ContractArtifact",
    "compile_artifact",
    "load_artifact",
]

CONTRACT_NAME = "stamped_lottery"
VYPER_VERSION = "0.4.3"
"""The compiler the shipped bytecode comes from (also pinned in the source's pragma)."""
EVM_VERSION = "cancun"
"""Cancun: what py-evm, anvil and every major chain run; nothing newer is needed."""


@dataclass(frozen=True, slots=True)
class ContractArtifact:
    """What it takes to deploy and call the contract."""

    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    source_sha256: str
    vyper_version: str


def _source() -> bytes:
    return resources.files("rpcpay.chain").joinpath(f"contracts/{CONTRACT_NAME}.vy").read_bytes()


def load_artifact() -> ContractArtifact:
    """The shipped artifact; raises ``ChainError`` if it is missing or older than its source."""
    try:
        raw = resources.files("rpcpay.chain").joinpath(f"contracts/{CONTRACT_NAME}.json")
        data = json.loads(raw.read_text())
    except (OSError, ValueError) as exc:
        raise ChainError(f"contract artifact unreadable: {exc}") from exc
    # The artifact was compiled from the source that ships beside it.
    digest = hashlib.sha256(_source()).hexdigest()
    if data["source_sha256"] != digest:
        raise ChainError("contract artifact is stale: run python -m rpcpay.chain.build")
    return ContractArtifact(
        abi=tuple(data["abi"]),
        bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
        source_sha256=digest,
        vyper_version=data["vyper_version"],
    )


def compile_artifact() -> dict[str, Any]:
    """Compile the shipped source with the pinned Vyper (dev only); returns the JSON's content."""
    import vyper
    from vyper.compiler import compile_code

    # The bytecode must come from the pinned compiler, or it is not the reviewed build.
    if not vyper.__version__.startswith(VYPER_VERSION):
        raise ChainError(f"vyper {VYPER_VERSION} required, found {vyper.__version__}")
    source = _source()
    out = compile_code(source.decode(), output_formats=["abi", "bytecode"])
    return {
        "contract": CONTRACT_NAME,
        "vyper_version": VYPER_VERSION,
        "evm_version": EVM_VERSION,
        "source_sha256": hashlib.sha256(source).hexdigest(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
    }
