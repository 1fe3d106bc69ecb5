"""What each call costs, in credits: monerod 0.18's table, and price files for other backends.

monerod computes most prices as a double (``count * COST_PER_X``), truncates it to an integer,
and, for the calls guarded by ``CHECK_PAYMENT_MIN1``, charges at least 1. A few calls charge 1
first and the rest once the daemon has counted what it will return (pool transactions); those
carry an ``after`` rule, charged with the same timestamp as the first part.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rpcpay.errors import ConfigError
from rpcpay.gateway.param_checks import bad_number, is_uint
from rpcpay.ledger.account import U64_MAX

JSON = Any

COST_PER_BLOCK: Final = 0.05
COST_PER_TX_RELAY: Final = 100
COST_PER_OUT: Final = 1
COST_PER_TX: Final = 0.5
COST_PER_KEY_IMAGE: Final = 0.01
COST_PER_POOL_HASH: Final = 0.01
COST_PER_TX_POOL_STATS: Final = 0.2
COST_PER_BLOCK_HEADER: Final = 0.1
COST_PER_GET_INFO: Final = 1
COST_PER_OUTPUT_HISTOGRAM: Final = 25000
COST_PER_FULL_OUTPUT_HISTOGRAM: Final = 5000000
COST_PER_OUTPUT_DISTRIBUTION_0: Final = 20
COST_PER_OUTPUT_DISTRIBUTION: Final = 50000
COST_PER_COINBASE_TX_SUM_BLOCK: Final = 2
COST_PER_FEE_ESTIMATE: Final = 1
COST_PER_SYNC_INFO: Final = 2
COST_PER_HARD_FORK_INFO: Final = 1


@dataclass(frozen=True, slots=True)
class AfterCharge:
    """A second charge, made once the upstream answer shows how many items it holds."""

    items_field: str
    per_item: float
    minus: int = 0
    #: >0: the items travel as one binary string of fixed-size items (epee's POD-as-blob)
    blob_item_size: int = 0


@dataclass(frozen=True, slots=True)
class Price:
    """The credits one call costs before it may reach the upstream."""

    rpc: str
    upfront: int
    after: AfterCharge | None = None


class PriceError(ValueError):
    """The request's parameters are not of the shape the price rule needs."""


def truncate(amount: float) -> int:
    """monerod's ``(uint64_t)payment`` cast: truncate toward zero, never negative."""
    return max(0, math.trunc(amount))


def at_least_one(amount: float) -> int:
    """monerod's CHECK_PAYMENT_MIN1: a charged call never costs less than one credit."""
    return max(1, truncate(amount))


def _list_len(params: Mapping[str, JSON], name: str) -> int:
    value = params.get(name, [])
    # A count-priced parameter must be a list, or the price cannot be computed.
    if not isinstance(value, list):
        raise PriceError(f"'{name}' must be a list")
    return len(value)


def _uint(params: Mapping[str, JSON], name: str) -> int:
    value = params.get(name, 0)
    # A numeric parameter must be a u64 integer (bool is not a number here).
    if not is_uint(value, U64_MAX):
        raise PriceError(f"'{name}' must be an integer from 0 to {U64_MAX}")
    return value


def _fixed(rpc: str, amount: int) -> Callable[[Mapping[str, JSON]], Price]:
    return lambda _params: Price(rpc, amount)


def _headers_range(params: Mapping[str, JSON]) -> Price:
    start, end = _uint(params, "start_height"), _uint(params, "end_height")
    # monerod refuses an inverted range before charging.
    if start > end:
        raise PriceError("Invalid start/end heights.")
    return Price("get_block_headers_range", at_least_one((end - start + 1) * COST_PER_BLOCK_HEADER))


def _output_histogram(params: Mapping[str, JSON]) -> Price:
    amounts = _list_len(params, "amounts")
    cost = COST_PER_FULL_OUTPUT_HISTOGRAM if amounts == 0 else COST_PER_OUTPUT_HISTOGRAM * amounts
    return Price("get_output_histogram", at_least_one(cost))


def _output_distribution(params: Mapping[str, JSON]) -> Price:
    amounts = params.get("amounts", [])
    # Amounts must be a list of non-negative integers.
    if not isinstance(amounts, list) or not all(
        isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in amounts
    ):
        raise PriceError("'amounts' must be a list of non-negative integers")
    zero = sum(1 for a in amounts if a == 0)
    cost = (
        zero * COST_PER_OUTPUT_DISTRIBUTION_0 + (len(amounts) - zero) * COST_PER_OUTPUT_DISTRIBUTION
    )
    return Price("get_output_distribution", at_least_one(cost))


PriceRule = Callable[[Mapping[str, JSON]], Price]

_HEADER = at_least_one(COST_PER_BLOCK_HEADER)

#: Charged JSON-RPC methods on /json_rpc, with every alias monerod maps.
_JSON_RPC_RULES: Final[Mapping[str, PriceRule]] = {
    "get_info": _fixed("get_info", at_least_one(COST_PER_GET_INFO)),
    "get_last_block_header": _fixed("get_last_block_header", _HEADER),
    "getlastblockheader": _fixed("get_last_block_header", _HEADER),
    "get_block_header_by_hash": _fixed("get_block_header_by_hash", _HEADER),
    "getblockheaderbyhash": _fixed("get_block_header_by_hash", _HEADER),
    "get_block_header_by_height": _fixed("get_block_header_by_height", _HEADER),
    "getblockheaderbyheight": _fixed("get_block_header_by_height", _HEADER),
    "get_block_headers_range": _headers_range,
    "getblockheadersrange": _headers_range,
    "get_block": _fixed("get_block", at_least_one(COST_PER_BLOCK)),
    "getblock": _fixed("get_block", at_least_one(COST_PER_BLOCK)),
    "hard_fork_info": _fixed("hard_fork_info", COST_PER_HARD_FORK_INFO),
    "get_output_histogram": _output_histogram,
    "get_coinbase_tx_sum": lambda p: Price(
        "get_coinbase_tx_sum", at_least_one(COST_PER_COINBASE_TX_SUM_BLOCK * _uint(p, "count"))
    ),
    "get_fee_estimate": _fixed("get_base_fee_estimate", COST_PER_FEE_ESTIMATE),
    "relay_tx": lambda p: Price(
        "relay_tx", at_least_one(COST_PER_TX_RELAY * _list_len(p, "txids"))
    ),
    "sync_info": _fixed("sync_info", COST_PER_SYNC_INFO),
    "get_txpool_backlog": lambda _p: Price(
        "get_txpool_backlog", 1, AfterCharge("backlog", COST_PER_TX_POOL_STATS, minus=1)
    ),
    "get_output_distribution": _output_distribution,
}


def _checked(method: str, rule: PriceRule) -> PriceRule:
    """``rule`` behind the u64 checks of ``method``'s numbers, and refusing a price no u64
    balance could ever pay (monerod would wrap it)."""

    def price(params: Mapping[str, JSON]) -> Price:
        problem = bad_number(method, params)
        # Every number must fit its monerod field before anything is priced.
        if problem is not None:
            raise PriceError(problem)
        result = rule(params)
        # A price is a u64 amount of credits.
        if result.upfront > U64_MAX:
            raise PriceError(f"the call would cost more than {U64_MAX} credits")
        return result

    return price


#: Charged JSON-RPC methods on /json_rpc, numbers checked before pricing.
MONERO_JSON_RPC_PRICES: Final[Mapping[str, PriceRule]] = {
    name: _checked(name, rule) for name, rule in _JSON_RPC_RULES.items()
}

#: JSON-RPC methods monerod serves free on a restricted port.
MONERO_FREE_JSON_RPC: Final = frozenset(
    {
        "get_block_count",
        "getblockcount",
        "on_get_block_hash",
        "on_getblockhash",
        "get_block_template",
        "getblocktemplate",
        "get_miner_data",
        "submit_block",
        "submitblock",
        "get_version",
        "add_aux_pow",
    }
)

#: Charged JSON endpoints (HTTP paths).
_JSON_ENDPOINT_RULES: Final[Mapping[str, PriceRule]] = {
    "/get_info": _fixed("get_info", at_least_one(COST_PER_GET_INFO)),
    "/getinfo": _fixed("get_info", at_least_one(COST_PER_GET_INFO)),
    "/get_transactions": lambda p: Price(
        "get_transactions", at_least_one(COST_PER_TX * _list_len(p, "txs_hashes"))
    ),
    "/gettransactions": lambda p: Price(
        "get_transactions", at_least_one(COST_PER_TX * _list_len(p, "txs_hashes"))
    ),
    "/is_key_image_spent": lambda p: Price(
        "is_key_image_spent", at_least_one(COST_PER_KEY_IMAGE * _list_len(p, "key_images"))
    ),
    "/send_raw_transaction": _fixed("send_raw_tx", at_least_one(COST_PER_TX_RELAY)),
    "/sendrawtransaction": _fixed("send_raw_tx", at_least_one(COST_PER_TX_RELAY)),
    "/get_outs": lambda p: Price("get_outs", at_least_one(COST_PER_OUT * _list_len(p, "outputs"))),
    "/get_transaction_pool": lambda _p: Price(
        "get_transaction_pool", 1, AfterCharge("transactions", COST_PER_TX)
    ),
    "/get_transaction_pool_hashes": lambda _p: Price(
        "get_transaction_pool_hashes", 1, AfterCharge("tx_hashes", COST_PER_POOL_HASH)
    ),
    # JSON despite its name (monerod 0.18 maps it with MAP_URI_AUTO_JON2); wallets use it.
    "/get_transaction_pool_hashes.bin": lambda _p: Price(
        "get_transaction_pool_hashes",
        1,
        AfterCharge("tx_hashes", COST_PER_POOL_HASH, blob_item_size=32),
    ),
    "/get_transaction_pool_stats": _fixed(
        "get_transaction_pool_stats", at_least_one(COST_PER_TX_POOL_STATS)
    ),
}

#: Charged JSON endpoints, numbers checked before pricing.
MONERO_JSON_ENDPOINT_PRICES: Final[Mapping[str, PriceRule]] = {
    path: _checked(path, rule) for path, rule in _JSON_ENDPOINT_RULES.items()
}

#: JSON endpoints monerod serves free on a restricted port.
MONERO_FREE_JSON_ENDPOINTS: Final = frozenset(
    {"/get_height", "/getheight", "/get_alt_blocks_hashes", "/get_public_nodes", "/get_limit"}
)


def after_charge_amount(rule: AfterCharge, answer: Mapping[str, JSON]) -> int:
    """The second part of a two-step price, from the items the upstream returned."""
    items = answer.get(rule.items_field)
    if rule.blob_item_size:
        count = len(items) // rule.blob_item_size if isinstance(items, str) else 0
    else:
        count = len(items) if isinstance(items, list) else 0
    return max(0, truncate(count * rule.per_item) - rule.minus)


@dataclass(frozen=True, slots=True)
class PriceList:
    """Per-method prices for a backend that is not monerod (an Ethereum node, say).

    Loaded from a JSON file::

        {"default": 1, "methods": {"eth_getLogs": 20, "web3_clientVersion": 0}}

    A price of 0 makes a method free; ``default`` prices every method not listed.
    """

    default: int
    methods: Mapping[str, int]

    def price(self, method: str) -> Price:
        """The price of one call of ``method``."""
        return Price(method, self.methods.get(method, self.default))


def _check_price(name: str, value: JSON) -> int:
    # A price is a non-negative integer number of credits.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ConfigError(f"price file: {name} must be a non-negative integer, got {value!r}")
    return value


def parse_price_list(document: JSON) -> PriceList:
    """Validate a decoded price file."""
    # The document is an object with only the known keys.
    if not isinstance(document, dict):
        raise ConfigError("price file: the top level must be a JSON object")
    unknown = set(document) - {"default", "methods"}
    if unknown:
        raise ConfigError(f"price file: unknown keys {sorted(unknown)}")
    default = _check_price("default", document.get("default", 1))
    methods = document.get("methods", {})
    # Method prices are an object of name -> price.
    if not isinstance(methods, dict):
        raise ConfigError("price file: 'methods' must be an object")
    return PriceList(default, {str(k): _check_price(f"methods.{k}", v) for k, v in methods.items()})


def load_price_list(path: Path) -> PriceList:
    """Read and validate a price file, with a clear error for every way it can be wrong."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"price file {path}: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"price file {path}: not valid JSON ({exc})") from exc
    return parse_price_list(document)
