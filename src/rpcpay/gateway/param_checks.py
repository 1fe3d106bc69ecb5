"""The numeric parameters of monerod's priced calls, checked before any price is computed.

monerod parses params with epee into ``uint64_t`` (or ``uint8_t``) fields and refuses the
request before charging when a number does not fit; the gateway must refuse the same input
*before* pricing, or a price computed from an out-of-range number (``start_height`` 2^80,
say) would overflow u64 deep in the ledger. Every number named here must be an integer in
its field's range: no bool, float, string or null. A parameter that is absent keeps
monerod's default and is not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

from rpcpay.ledger.account import U64_MAX

JSON = Any

U8_MAX: Final = 2**8 - 1

_U64: Final = U64_MAX

#: Per method or path, as the price tables key them (aliases too): numeric fields and their
#: largest value (monerod 0.18's core_rpc_server_commands_defs.h).
NUMBERS: Final[Mapping[str, Mapping[str, int]]] = {
    "get_block_header_by_height": {"height": _U64},
    "getblockheaderbyheight": {"height": _U64},
    "get_block_headers_range": {"start_height": _U64, "end_height": _U64},
    "getblockheadersrange": {"start_height": _U64, "end_height": _U64},
    "get_block": {"height": _U64},
    "getblock": {"height": _U64},
    "hard_fork_info": {"version": U8_MAX},
    "get_output_histogram": {"min_count": _U64, "max_count": _U64, "recent_cutoff": _U64},
    "get_coinbase_tx_sum": {"height": _U64, "count": _U64},
    "get_fee_estimate": {"grace_blocks": _U64},
    "get_output_distribution": {"from_height": _U64, "to_height": _U64},
}

#: Per method: fields that are lists of u64 numbers.
NUMBER_LISTS: Final[Mapping[str, tuple[str, ...]]] = {
    "get_output_histogram": ("amounts",),
    "get_output_distribution": ("amounts",),
}

#: Per path: fields that are lists of objects with u64 numbers.
OBJECT_LISTS: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    "/get_outs": ("outputs", ("amount", "index")),
}


def is_uint(value: JSON, limit: int) -> TypeGuard[int]:
    """An integer (not a bool) in ``0..limit``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def bad_number(method: str, params: Mapping[str, JSON]) -> str | None:
    """The first numeric parameter of ``method`` (a JSON-RPC method or a JSON endpoint's
    path) that does not fit its field, with why; None when every one fits or is absent."""
    for name, limit in NUMBERS.get(method, {}).items():
        # A present number must fit its unsigned field.
        if name in params and not is_uint(params[name], limit):
            return f"'{name}' must be an integer from 0 to {limit}"
    for name in NUMBER_LISTS.get(method, ()):
        value = params.get(name, [])
        # A list of amounts holds u64 numbers only.
        if isinstance(value, list) and not all(is_uint(v, U64_MAX) for v in value):
            return f"'{name}' must be a list of integers from 0 to {U64_MAX}"
    if method in OBJECT_LISTS:
        name, fields = OBJECT_LISTS[method]
        value = params.get(name, [])
        # Each object's numbers are u64.
        if isinstance(value, list) and not all(
            isinstance(item, dict) and all(is_uint(item[f], U64_MAX) for f in fields if f in item)
            for item in value
        ):
            return f"'{name}' must be a list of objects whose {', '.join(fields)} are u64"
    return None
