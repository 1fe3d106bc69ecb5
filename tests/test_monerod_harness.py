"""Facts about monerod 0.18 (the reference peer) that rpcpay relies on, checked live."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.support.monerod import TEST_ADDRESS, MonerodProcess, start_monerod

pytestmark = pytest.mark.monerod


def _top_hash(mon: MonerodProcess) -> str:
    h: str = mon.post("/get_height")["hash"]
    return h


def test_fixture_chains_have_blocks(
    monerod: MonerodProcess, paying_monerod: MonerodProcess
) -> None:
    # regtest starts at height 1 (genesis); the fixtures mine 20 more.
    assert monerod.height() >= 21
    assert paying_monerod.height() >= 21


def test_generate_blocks_extends_chain(monerod: MonerodProcess) -> None:
    before = monerod.height()
    result = monerod.generate_blocks(2)
    assert len(result["blocks"]) == 2
    assert result["height"] == before + 1
    assert monerod.height() == before + 2
    assert _top_hash(monerod) == result["blocks"][-1]


def test_paying_rpc_access_info_bad_client(paying_monerod: MonerodProcess) -> None:
    resp = paying_monerod.json_rpc("rpc_access_info", {"client": "abc"})
    assert "result" not in resp
    assert resp["error"] == {"code": -15, "message": "Invalid client ID"}


def test_paying_json_rpc_get_info_without_client(paying_monerod: MonerodProcess) -> None:
    resp = paying_monerod.json_rpc("get_info")
    assert "result" not in resp
    assert resp["error"]["code"] == -5
    assert resp["error"]["message"] == "Client signature does not verify for get_info"


def test_paying_get_info_endpoint_without_client(paying_monerod: MonerodProcess) -> None:
    status, body = paying_monerod.post_raw("/get_info", b"{}")
    assert status == 200
    info = json.loads(body)
    assert info["status"] == "Client signature does not verify for get_info"
    assert info["top_hash"] == _top_hash(paying_monerod)
    assert info["credits"] == 0
    assert info["height"] == 0  # the payload is not filled in


def test_paying_get_height_is_free(paying_monerod: MonerodProcess) -> None:
    resp = paying_monerod.post("/get_height")
    assert resp["status"] == "OK"
    assert resp["height"] >= 21


def test_paying_rpc_access_data_entries_and_hashrate(paying_monerod: MonerodProcess) -> None:
    key = secrets.token_hex(32)
    acct = paying_monerod.json_rpc("rpc_access_account", {"client": key, "delta_balance": 500})
    assert acct["result"]["status"] == "OK"
    assert acct["result"]["credits"] == 500

    result = paying_monerod.json_rpc("rpc_access_data")["result"]
    assert result["status"] == "OK"
    assert isinstance(result["hashrate"], int)
    entries = {e["client"]: e for e in result["entries"]}
    entry = entries[key]
    assert entry["balance"] == 500
    for name in (
        "last_update_time",
        "credits_total",
        "credits_used",
        "nonces_good",
        "nonces_stale",
        "nonces_bad",
        "nonces_dupe",
    ):
        assert isinstance(entry[name], int), name

    # Negative deltas saturate at zero.
    acct = paying_monerod.json_rpc("rpc_access_account", {"client": key, "delta_balance": -900})
    assert acct["result"]["credits"] == 0


def test_plain_rpc_access_info_is_ok_with_zero_diff(monerod: MonerodProcess) -> None:
    result = monerod.json_rpc("rpc_access_info", {"client": ""})["result"]
    assert result["status"] == "OK"
    assert result["diff"] == 0
    assert result["credits_per_hash_found"] == 0


def test_plain_get_info_is_free(monerod: MonerodProcess) -> None:
    result = monerod.json_rpc("get_info")["result"]
    assert result["status"] == "OK"
    assert result["height"] == monerod.height()
    assert result["nettype"] == "fakechain"


def test_free_loopback_and_stop(tmp_path: Path) -> None:
    with start_monerod(
        tmp_path, payment_address=TEST_ADDRESS, difficulty=5, allow_free_loopback=True
    ) as mon:
        assert mon.url == f"http://127.0.0.1:{mon.rpc_port}"
        info = mon.post("/get_info")
        assert info["status"] == "OK"
        assert info["height"] == 1
        proc = mon.process
    assert proc.poll() is not None
    mon.stop()  # idempotent
