"""The proxy's Monero request signing and answer reading (pure functions over bytes)."""

from __future__ import annotations

import json

import pytest

from rpcpay.wallet.proxy_monero import (
    BadRequest,
    check_epee_body,
    check_json_body,
    epee_status,
    json_status,
    sign_epee,
    sign_json,
)
from rpcpay.wire import epee
from rpcpay.wire.epee import Int, Type


def test_json_requests_get_our_client_id() -> None:
    signed = json.loads(sign_json(check_json_body(b'{"txs_hashes": [], "client": "x"}'), "id"))
    assert signed == {"txs_hashes": [], "client": "id"}
    assert check_json_body(b"") == {}
    for bad in (b"[1]", b"{nope"):
        with pytest.raises(BadRequest):
            check_json_body(bad)
    assert json_status(b'{"status": "PAYMENT REQUIRED", "credits": 0}') == "PAYMENT REQUIRED"
    assert json_status(b"[]") is None and json_status(b"\\xff") is None


def test_epee_requests_get_our_client_id_in_sorted_place() -> None:
    request = {"block_ids": b"\\x00" * 32, "prune": True, "start_height": Int(Type.UINT64, 5)}
    body = epee.encode(request)
    signed = epee.decode(sign_epee(body, "c" * 208))
    assert list(signed) == ["block_ids", "client", "prune", "start_height"]
    assert epee.get_string(signed, "client") == b"c" * 208
    resigned = epee.decode(sign_epee(epee.encode(signed), "d" * 208))
    assert epee.get_string(resigned, "client") == b"d" * 208
    with pytest.raises(BadRequest):
        check_epee_body(b"not epee")
    assert epee_status(epee.encode({"status": b"OK"})) == "OK"
    assert epee_status(b"junk") is None
