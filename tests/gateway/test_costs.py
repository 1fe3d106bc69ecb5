"""monerod's price table: truncation, the at-least-one rule, two-step charges, price files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.errors import ConfigError
from rpcpay.gateway.costs import (
    MONERO_JSON_ENDPOINT_PRICES,
    MONERO_JSON_RPC_PRICES,
    AfterCharge,
    PriceError,
    after_charge_amount,
    at_least_one,
    load_price_list,
    parse_price_list,
    truncate,
)


@pytest.mark.parametrize(
    ("method", "params", "cost", "rpc"),
    [
        ("get_info", {}, 1, "get_info"),
        ("get_last_block_header", {}, 1, "get_last_block_header"),
        ("getblockheaderbyheight", {"height": 3}, 1, "get_block_header_by_height"),
        (
            "get_block_headers_range",
            {"start_height": 0, "end_height": 9},
            1,
            "get_block_headers_range",
        ),
        (
            "get_block_headers_range",
            {"start_height": 0, "end_height": 19},
            2,
            "get_block_headers_range",
        ),
        ("get_block", {"height": 1}, 1, "get_block"),
        ("hard_fork_info", {}, 1, "hard_fork_info"),
        ("get_output_histogram", {"amounts": []}, 5_000_000, "get_output_histogram"),
        ("get_output_histogram", {"amounts": [0, 1]}, 50_000, "get_output_histogram"),
        ("get_coinbase_tx_sum", {"height": 0, "count": 7}, 14, "get_coinbase_tx_sum"),
        ("get_coinbase_tx_sum", {"height": 0, "count": 0}, 1, "get_coinbase_tx_sum"),
        ("get_fee_estimate", {}, 1, "get_base_fee_estimate"),
        ("relay_tx", {"txids": ["a", "b"]}, 200, "relay_tx"),
        ("sync_info", {}, 2, "sync_info"),
        ("get_output_distribution", {"amounts": [0]}, 20, "get_output_distribution"),
        ("get_output_distribution", {"amounts": [0, 5]}, 50_020, "get_output_distribution"),
    ],
)
def test_json_rpc_prices_match_monerod(
    method: str, params: dict[str, object], cost: int, rpc: str
) -> None:
    price = MONERO_JSON_RPC_PRICES[method](params)
    assert (price.upfront, price.rpc) == (cost, rpc)


@pytest.mark.parametrize(
    ("path", "params", "cost"),
    [
        ("/get_info", {}, 1),
        ("/get_transactions", {"txs_hashes": ["00"] * 3}, 1),
        ("/get_transactions", {"txs_hashes": ["00"] * 9}, 4),
        ("/is_key_image_spent", {"key_images": ["00"] * 150}, 1),
        ("/is_key_image_spent", {"key_images": ["00"] * 250}, 2),
        ("/send_raw_transaction", {"tx_as_hex": "00"}, 100),
        ("/get_outs", {"outputs": [{}] * 11}, 11),
        ("/get_outs", {"outputs": []}, 1),
        ("/get_transaction_pool_stats", {}, 1),
        ("/get_transaction_pool", {}, 1),
    ],
)
def test_json_endpoint_prices_match_monerod(
    path: str, params: dict[str, object], cost: int
) -> None:
    assert MONERO_JSON_ENDPOINT_PRICES[path](params).upfront == cost


def test_pool_charges_the_rest_after_counting() -> None:
    price = MONERO_JSON_ENDPOINT_PRICES["/get_transaction_pool"]({})
    assert price.after is not None
    # 1 up front, then 0.5 per pool transaction, truncated: 3 txs -> 1 more.
    assert after_charge_amount(price.after, {"transactions": [{}] * 3}) == 1
    assert after_charge_amount(price.after, {"transactions": [{}]}) == 0
    assert after_charge_amount(price.after, {}) == 0


def test_backlog_totals_at_least_one() -> None:
    rule = AfterCharge("backlog", 0.2, minus=1)
    # monerod charges max(1, trunc(0.2 n)) in one go; we charge 1 then the rest.
    for n in range(0, 40):
        assert 1 + after_charge_amount(rule, {"backlog": [0] * n}) == at_least_one(0.2 * n)


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_truncation_is_monerods_cast(amount: float) -> None:
    assert truncate(amount) == int(amount)
    assert at_least_one(amount) == max(1, int(amount))


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("get_block_headers_range", {"start_height": 5, "end_height": 4}),
        ("get_block_headers_range", {"start_height": -1, "end_height": 4}),
        ("get_block_headers_range", {"start_height": "0", "end_height": 4}),
        ("get_output_histogram", {"amounts": "all"}),
        ("get_output_distribution", {"amounts": [-1]}),
        ("relay_tx", {"txids": {"a": 1}}),
        ("get_coinbase_tx_sum", {"count": True}),
    ],
)
def test_malformed_params_are_refused_before_pricing(
    method: str, params: dict[str, object]
) -> None:
    with pytest.raises(PriceError):
        MONERO_JSON_RPC_PRICES[method](params)


def test_price_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"default": 3, "methods": {"eth_getLogs": 20, "net_version": 0}}))
    prices = load_price_list(path)
    assert prices.price("eth_getLogs").upfront == 20
    assert prices.price("net_version").upfront == 0
    assert prices.price("eth_call").upfront == 3


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"default": -1},
        {"default": "1"},
        {"methods": []},
        {"methods": {"x": 1.5}},
        {"defualt": 1},
        {"default": True},
    ],
)
def test_bad_price_files_get_clear_errors(document: object) -> None:
    with pytest.raises(ConfigError, match="price file"):
        parse_price_list(document)


def test_unreadable_price_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="price file"):
        load_price_list(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_price_list(broken)


@given(st.binary(max_size=300))
def test_json_codec_keeps_binary_strings_byte_exact(blob: bytes) -> None:
    from rpcpay.gateway.jsoncodec import decode_json, encode_json

    # epee writes raw bytes inside strings; a relay must hand them on unchanged in meaning.
    raw = b'{"distribution": "' + blob.replace(b"\\", b"").replace(b'"', b"") + b'"}'
    document = decode_json(raw)
    again = decode_json(encode_json(document))
    assert again == document
    assert again["distribution"].encode("latin-1") == blob.replace(b"\\", b"").replace(b'"', b"")


@given(st.text(max_size=40))
def test_json_codec_escapes_what_latin1_cannot_carry(text: str) -> None:
    from rpcpay.gateway.jsoncodec import decode_json, encode_json

    # Characters above U+00FF (from \u escapes in a request) go back out as JSON escapes.
    raw = json.dumps({"id": text}).encode()
    assert decode_json(encode_json(decode_json(raw))) == {"id": text}
