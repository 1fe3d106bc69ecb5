"""Differential tests against the real monerod 0.18 (Debian's package) on loopback.

Each test asks monerod and rpcpay.wire the same question. Fixtures come from tests/conftest.py
(`monerod`: no payment, `paying_monerod`: pay-for-RPC to TEST_ADDRESS).
"""

import http.client
import time
from pathlib import Path
from typing import Any

import pytest
from nacl import bindings

from rpcpay.errors import WireError
from rpcpay.wire.address import decode_address, encode_address
from rpcpay.wire.block import (
    block_hashing_blob,
    client_extra_nonce,
    client_template,
    hash_block,
    miner_tx_hash,
    parse_block,
    set_nonce,
)
from rpcpay.wire.client_id import TIMESTAMP_LEEWAY_US, make_client_id, verify_client_id
from rpcpay.wire.ed25519 import check_key, generate_keypair, generate_signature, hash_to_scalar
from rpcpay.wire.keccak import keccak256
from rpcpay.wire.varint import encode_varint
from tests.support.monerod import TEST_ADDRESS, MonerodProcess, start_monerod

pytestmark = pytest.mark.monerod

INVALID_CLIENT = -15


def now_us() -> int:
    return time.time_ns() // 1000


def access_info(mon: MonerodProcess, client: str) -> dict[str, Any]:
    return mon.json_rpc("rpc_access_info", {"client": client})


def accepted(resp: dict[str, Any]) -> bool:
    """True when monerod took the client id; False when it answered -15."""
    if "error" in resp:
        assert resp["error"]["code"] == INVALID_CLIENT, resp
        assert resp["error"]["message"] == "Invalid client ID"
        return False
    assert resp["result"]["status"] == "OK", resp
    return True


def signed_id(sk: bytes, pub: bytes, ts_text: str) -> str:
    sig = generate_signature(keccak256(ts_text.encode()), pub, sk)
    return pub.hex() + ts_text + sig.hex()


# -- (a) client ids ---------------------------------------------------------------------


def test_our_client_id_is_accepted(paying_monerod: MonerodProcess) -> None:
    sk, _ = generate_keypair()
    cid = make_client_id(sk, now_us())
    assert verify_client_id(cid, now_us()) is not None
    assert accepted(access_info(paying_monerod, cid))


def tamper(cid: str, where: int) -> str:
    """Change one hex digit at ``where``; a changed key must still decode as a point, since
    an undecodable key aborts monerod (see test_invalid_point_key_aborts_monerod)."""
    for digit in "0123456789abcdef":
        if digit == cid[where]:
            continue
        bad = cid[:where] + digit + cid[where + 1 :]
        if where >= 64 or check_key(bytes.fromhex(bad[:64])):
            return bad
    raise AssertionError("no tampering keeps the key a point")


@pytest.mark.parametrize("where", [5, 63, 70, 79, 100, 200, 207])
def test_tampered_client_id_refused_by_both(paying_monerod: MonerodProcess, where: int) -> None:
    sk, _ = generate_keypair()
    bad = tamper(make_client_id(sk, now_us()), where)
    assert verify_client_id(bad, now_us()) is None
    assert not accepted(access_info(paying_monerod, bad))


def test_invalid_point_key_aborts_monerod(tmp_path: Path) -> None:
    # Debian's monerod 0.18 keeps assertions on, and check_signature asserts check_key(pub):
    # one client id whose key is not a point kills the daemon. rpcpay refuses it quietly.
    sk, _ = generate_keypair()
    cid = make_client_id(sk, now_us())
    not_point = (2**255 - 1).to_bytes(32, "little")  # y above p
    assert not check_key(not_point)
    bad = not_point.hex() + cid[64:]
    assert verify_client_id(bad, now_us()) is None
    with start_monerod(tmp_path, payment_address=TEST_ADDRESS, difficulty=5) as mon:
        assert accepted(access_info(mon, cid))
        with pytest.raises((OSError, http.client.HTTPException)):
            access_info(mon, bad)
        mon.process.wait(timeout=20)
        assert mon.process.returncode != 0
        assert "Assertion `check_key(pub)' failed" in mon.log_tail()


@pytest.mark.parametrize("age_s", [120, -120])
def test_stale_or_future_timestamp_refused_by_both(
    paying_monerod: MonerodProcess, age_s: int
) -> None:
    sk, _ = generate_keypair()
    cid = make_client_id(sk, now_us() - age_s * 1_000_000)
    assert verify_client_id(cid, now_us()) is None
    assert not accepted(access_info(paying_monerod, cid))


def test_timestamp_just_inside_window_accepted_by_both(paying_monerod: MonerodProcess) -> None:
    sk, _ = generate_keypair()
    cid = make_client_id(sk, now_us() - TIMESTAMP_LEEWAY_US + 5_000_000)
    assert verify_client_id(cid, now_us()) is not None
    assert accepted(access_info(paying_monerod, cid))


@pytest.mark.parametrize(
    "template",
    ["+{:015x}", " {:015x}", "0x{:014x}", "+0x{:013x}", "{:013x}zzz", "{:016X}", "-{:015x}"],
)
def test_timestamp_spellings_agree(paying_monerod: MonerodProcess, template: str) -> None:
    sk, pub = generate_keypair()
    ts = template.format(now_us())
    assert len(ts) == 16
    cid = signed_id(sk, pub, ts)
    ours = verify_client_id(cid, now_us()) is not None
    assert ours is accepted(access_info(paying_monerod, cid))
    assert ours is (not template.startswith("-"))


def test_upper_case_hex_agrees(paying_monerod: MonerodProcess) -> None:
    sk, _ = generate_keypair()
    cid = make_client_id(sk, now_us())
    upper = cid[:64].upper() + cid[64:80] + cid[80:].upper()
    assert verify_client_id(upper, now_us()) is not None
    assert accepted(access_info(paying_monerod, upper))


@pytest.mark.parametrize("length", [207, 209])
def test_wrong_length_refused_by_both(paying_monerod: MonerodProcess, length: int) -> None:
    sk, _ = generate_keypair()
    cid = (make_client_id(sk, now_us()) + "0")[:length]
    assert verify_client_id(cid, now_us()) is None
    assert not accepted(access_info(paying_monerod, cid))


def test_small_order_key_is_a_deliberate_difference(paying_monerod: MonerodProcess) -> None:
    # With the identity as public key anyone can sign (c*P vanishes). monerod 0.18 accepts
    # such ids; rpcpay refuses them (documented in rpcpay.wire.ed25519).
    identity = bytes.fromhex("01" + "00" * 31)
    ts = f"{now_us():016x}"
    h = keccak256(ts.encode())
    r = (987654321).to_bytes(32, "little")
    comm = bindings.crypto_scalarmult_ed25519_base_noclamp(r)
    c = hash_to_scalar(h + identity + comm)
    cid = identity.hex() + ts + (c + r).hex()
    assert accepted(access_info(paying_monerod, cid))
    assert verify_client_id(cid, now_us()) is None


# -- (b) templates and hashing blobs ----------------------------------------------------


def block_template(mon: MonerodProcess, address: str = TEST_ADDRESS) -> dict[str, Any]:
    resp = mon.json_rpc("get_block_template", {"wallet_address": address, "reserve_size": 4})
    assert "result" in resp, resp
    result: dict[str, Any] = resp["result"]
    return result


def test_hashing_blob_matches_monerod(paying_monerod: MonerodProcess) -> None:
    tpl = block_template(paying_monerod)
    blob = bytes.fromhex(tpl["blocktemplate_blob"])
    hb = block_hashing_blob(blob)
    assert hb.hex() == tpl["blockhashing_blob"]
    b = parse_block(blob)
    assert b.nonce_offset == 39
    assert b.prev_id.hex() == tpl["prev_hash"]
    assert b.miner_tx_height == tpl["height"]
    # the reservation is 4 zero bytes right after the 0x02 0x04 nonce header in extra
    off = tpl["reserved_offset"]
    assert blob[off - 2 : off + 4] == b"\x02\x04" + bytes(4)
    assert b.extra_offset <= off - 2 < off + 4 <= b.extra_offset + len(b.extra)


def test_client_template_is_consistent(paying_monerod: MonerodProcess) -> None:
    tpl = block_template(paying_monerod)
    blob = bytes.fromhex(tpl["blocktemplate_blob"])
    _, pub = generate_keypair()
    mine = client_template(blob, tpl["reserved_offset"], pub)
    b = parse_block(mine)
    # rpc_payment.cpp's layout: tx pubkey field, then 0x02 0x04 and the client's 4 bytes
    assert len(b.extra) == 1 + 32 + 2 + 4
    assert b.extra[0] == 0x01
    assert b.extra[33:] == b"\x02\x04" + client_extra_nonce(pub)
    hb = block_hashing_blob(mine)
    assert hb[:39] == bytes.fromhex(tpl["blockhashing_blob"])[:39]
    assert hb != bytes.fromhex(tpl["blockhashing_blob"])
    assert hash_block(mine) == keccak256(encode_varint(len(hb)) + hb)


def test_rpc_access_info_hashing_blob_shape(paying_monerod: MonerodProcess) -> None:
    sk, _ = generate_keypair()
    resp = access_info(paying_monerod, make_client_id(sk, now_us()))
    info = resp["result"]
    hb = bytes.fromhex(info["hashing_blob"])
    # header (nonce at 39), tree root, varint(1): one miner tx, no pool txs
    assert len(hb) == 39 + 4 + 32 + 1
    assert hb[7:39].hex() == info["top_hash"]
    assert hb[-1] == 1
    assert set_nonce(hb, 0x01020304)[39:43] == b"\x04\x03\x02\x01"


def test_monerod_accepts_our_client_block(tmp_path: Path) -> None:
    # fixed difficulty 1: every nonce is a valid block, so monerod checks everything else
    with start_monerod(tmp_path) as mon:
        mon.generate_blocks(2)
        tpl = block_template(mon)
        blob = bytes.fromhex(tpl["blocktemplate_blob"])
        _, pub = generate_keypair()
        mine = set_nonce(client_template(blob, tpl["reserved_offset"], pub), 0xCAFE)
        resp = mon.post(
            "/json_rpc",
            {"jsonrpc": "2.0", "id": "0", "method": "submit_block", "params": [mine.hex()]},
        )
        assert resp.get("result", {}).get("status") == "OK", resp
        got = mon.json_rpc("get_block", {"height": tpl["height"]})["result"]
        assert got["blob"] == mine.hex()
        assert got["block_header"]["hash"] == hash_block(mine).hex()
        assert got["block_header"]["nonce"] == 0xCAFE


# -- (c) block ids ----------------------------------------------------------------------


def test_hash_block_matches_monerod(monerod: MonerodProcess) -> None:
    height = monerod.height()
    assert height >= 3
    for h in [0, 1, 2, height - 1]:
        got = monerod.json_rpc("get_block", {"height": h})["result"]
        blob = bytes.fromhex(got["blob"])
        b = parse_block(blob)
        assert hash_block(blob).hex() == got["block_header"]["hash"]
        assert miner_tx_hash(b.miner_tx).hex() == got["miner_tx_hash"]
        assert b.major_version == got["block_header"]["major_version"]
        assert b.nonce == got["block_header"]["nonce"]
        assert b.timestamp == got["block_header"]["timestamp"]
        assert b.miner_tx_height == h


# -- (d) addresses ----------------------------------------------------------------------


def test_address_monerod_accepts_decodes(paying_monerod: MonerodProcess) -> None:
    block_template(paying_monerod, TEST_ADDRESS)  # monerod accepts it
    addr = decode_address(TEST_ADDRESS)
    assert addr.prefix == 18


def test_address_we_encode_is_accepted(paying_monerod: MonerodProcess) -> None:
    _, spend = generate_keypair()
    _, view = generate_keypair()
    tpl = block_template(paying_monerod, encode_address(spend, view, 18))
    assert "blocktemplate_blob" in tpl


def test_bad_checksum_refused_by_both(paying_monerod: MonerodProcess) -> None:
    i = 50
    bad = TEST_ADDRESS[:i] + ("2" if TEST_ADDRESS[i] != "2" else "3") + TEST_ADDRESS[i + 1 :]
    resp = paying_monerod.json_rpc("get_block_template", {"wallet_address": bad, "reserve_size": 4})
    assert "error" in resp
    with pytest.raises(WireError, match=r"checksum|base58"):
        decode_address(bad)
