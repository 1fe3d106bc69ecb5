"""Prices and limits of monerod 0.18's epee binary endpoints (``*.bin``).

The numbers are monerod's (``rpc_payment_costs.h``) and so is the arithmetic: a double
product truncated to an integer, at least 1 for the calls guarded by ``CHECK_PAYMENT_MIN1``.
/get_blocks.bin and /get_hashes.bin charge 1 first and the rest, with the same timestamp,
once the answer shows how many blocks or hashes it holds; the handler does that part.

The public listener is monerod's *restricted* RPC, so monerod's restricted limits apply
before anything is charged (monerod charges /get_outs.bin first and then refuses; we don't).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from rpcpay.gateway.costs import (
    COST_PER_BLOCK,
    COST_PER_OUT,
    COST_PER_OUTPUT_DISTRIBUTION,
    COST_PER_OUTPUT_DISTRIBUTION_0,
    PriceError,
    at_least_one,
    truncate,
)
from rpcpay.wire.epee import Array, Int, Section, Type

COST_PER_OUTPUT_INDEXES: Final = 1
COST_PER_BLOCK_HASH: Final = 0.002
#: monerod's cap on blocks per /get_blocks.bin answer (COMMAND_RPC_GET_BLOCKS_FAST_MAX_BLOCK_COUNT).
MAX_BLOCKS_PER_ANSWER: Final = 1000
#: Restricted RPC: most heights per /get_blocks_by_height.bin (RESTRICTED_BLOCK_COUNT).
RESTRICTED_BLOCK_COUNT: Final = 1000
#: Restricted RPC: most outputs per /get_outs.bin (MAX_RESTRICTED_GLOBAL_FAKE_OUTS_COUNT).
RESTRICTED_OUTS_COUNT: Final = 5000
HASH_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class BinaryRule:
    """How one binary endpoint is charged.

    ``rpc`` is monerod's tracker name, which its refusals quote ("Client signature does not
    verify for get_blocks"); ``refused_u64`` are the integer fields monerod still writes
    (as 0) in a refused answer; ``limit`` returns a refusal status, or None to go on.
    """

    rpc: str
    price: Callable[[Section], int]
    refused_u64: tuple[str, ...] = ()
    limit: Callable[[Section], str | None] = lambda _request: None


def array_len(request: Section, name: str) -> int:
    """Elements in array field ``name`` (0 when absent, as epee leaves an empty vector)."""
    value = request.get(name)
    if value is None:
        return 0
    # A counted field must be an array, or the price cannot be computed.
    if not isinstance(value, Array):
        raise PriceError(f"'{name}' must be an array")
    return len(value.items)


def hash_list(request: Section, name: str) -> list[bytes]:
    """A list of 32-byte hashes sent as one blob (epee's POD-as-blob containers)."""
    value = request.get(name, b"")
    # The blob is a string whose length is a whole number of hashes.
    if not isinstance(value, bytes) or len(value) % HASH_SIZE:
        raise PriceError(f"'{name}' must be a blob of 32-byte hashes")
    return [value[i : i + HASH_SIZE] for i in range(0, len(value), HASH_SIZE)]


def uint_field(request: Section, name: str) -> int:
    """An unsigned integer field, 0 when absent (epee's default)."""
    value = request.get(name)
    if value is None:
        return 0
    # Heights and counts are unsigned integers of any width.
    if not isinstance(value, Int) or value.value < 0:
        raise PriceError(f"'{name}' must be an unsigned integer")
    return value.value


def uint_array(request: Section, name: str) -> list[int]:
    """An array of unsigned integers (e.g. ``heights``, ``amounts``)."""
    value = request.get(name)
    if value is None:
        return []
    # Only an array of unsigned integers is a list of heights or amounts.
    if not isinstance(value, Array) or not all(
        isinstance(item, Int) and item.value >= 0 for item in value.items
    ):
        raise PriceError(f"'{name}' must be an array of unsigned integers")
    return [item.value for item in value.items if isinstance(item, Int)]


def max_blocks_for(credits: int) -> int:
    """monerod's cap on one /get_blocks.bin answer: as many blocks as the credits left
    after the first charge pay for (``credits / COST_PER_BLOCK`` as a double), at most 1000."""
    return min(MAX_BLOCKS_PER_ANSWER, int(credits / COST_PER_BLOCK))


def blocks_cost(count: int) -> int:
    """The second /get_blocks.bin charge, for ``count`` blocks delivered."""
    return truncate(count * COST_PER_BLOCK)


def hashes_cost(count: int) -> int:
    """The second /get_hashes.bin charge, for ``count`` hashes delivered."""
    return truncate(count * COST_PER_BLOCK_HASH)


def _get_blocks_price(request: Section) -> int:
    # The request must carry well-formed hashes even though the price is fixed.
    hash_list(request, "block_ids")
    uint_field(request, "start_height")
    return 1


def _get_hashes_price(request: Section) -> int:
    hash_list(request, "block_ids")
    uint_field(request, "start_height")
    return 1


def _blocks_by_height_price(request: Section) -> int:
    return at_least_one(len(uint_array(request, "heights")) * COST_PER_BLOCK)


def _blocks_by_height_limit(request: Section) -> str | None:
    # Restricted RPC serves at most RESTRICTED_BLOCK_COUNT heights per call.
    if len(uint_array(request, "heights")) > RESTRICTED_BLOCK_COUNT:
        return "Too many blocks requested in restricted mode"
    return None


def _o_indexes_price(request: Section) -> int:
    txid = request.get("txid", b"")
    # The transaction id is one 32-byte blob.
    if not isinstance(txid, bytes) or len(txid) != HASH_SIZE:
        raise PriceError("'txid' must be a 32-byte blob")
    return at_least_one(COST_PER_OUTPUT_INDEXES)


def _outs_price(request: Section) -> int:
    return at_least_one(array_len(request, "outputs") * COST_PER_OUT)


def _outs_limit(request: Section) -> str | None:
    # Restricted RPC serves at most RESTRICTED_OUTS_COUNT outputs per call.
    if array_len(request, "outputs") > RESTRICTED_OUTS_COUNT:
        return "Too many outs requested"
    return None


def _distribution_price(request: Section) -> int:
    amounts = uint_array(request, "amounts")
    zero = sum(1 for amount in amounts if amount == 0)
    return at_least_one(
        zero * COST_PER_OUTPUT_DISTRIBUTION_0 + (len(amounts) - zero) * COST_PER_OUTPUT_DISTRIBUTION
    )


_GET_BLOCKS = BinaryRule("get_blocks", _get_blocks_price, ("current_height", "start_height"))
_BY_HEIGHT = BinaryRule(
    "get_blocks_by_height", _blocks_by_height_price, (), _blocks_by_height_limit
)
_GET_HASHES = BinaryRule("get_hashes", _get_hashes_price, ("current_height", "start_height"))

#: Every binary endpoint monerod 0.18 serves, with its aliases.
BINARY_RULES: Final[Mapping[str, BinaryRule]] = {
    "/get_blocks.bin": _GET_BLOCKS,
    "/getblocks.bin": _GET_BLOCKS,
    "/get_blocks_by_height.bin": _BY_HEIGHT,
    "/getblocks_by_height.bin": _BY_HEIGHT,
    "/get_hashes.bin": _GET_HASHES,
    "/gethashes.bin": _GET_HASHES,
    "/get_o_indexes.bin": BinaryRule("get_indexes", _o_indexes_price),
    "/get_outs.bin": BinaryRule("get_outs_bin", _outs_price, (), _outs_limit),
    "/get_output_distribution.bin": BinaryRule("get_output_distribution_bin", _distribution_price),
}

GET_BLOCKS_PATHS: Final = frozenset({"/get_blocks.bin", "/getblocks.bin"})
GET_HASHES_PATHS: Final = frozenset({"/get_hashes.bin", "/gethashes.bin"})
GET_OUTS_PATH: Final = "/get_outs.bin"


def refused_answer(rule: BinaryRule, status: str, credits: int, top_hash: str) -> Section:
    """The answer monerod gives when it refuses a binary call: its zeroed integer fields,
    status, credits and top hash, sorted by name as epee writes them."""
    fields: Section = {name: Int(Type.UINT64, 0) for name in rule.refused_u64}
    fields["credits"] = Int(Type.UINT64, credits)
    fields["status"] = status.encode()
    fields["top_hash"] = top_hash.encode()
    fields["untrusted"] = False
    return dict(sorted(fields.items()))
