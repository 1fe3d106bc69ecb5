"""Differential tests: the gateway in front of a plain monerod vs monerod 0.18 with payment on.

Both peers get the same requests from clients with the same kind of key; their decisions,
error codes, statuses, penalties and prices must agree. Jobs differ (each peer builds its
own template), so each side mines its own nonces.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rpcpay.gateway.server import RunningGateway
from rpcpay.pow.difficulty import check_hash
from rpcpay.pow.randomx import randomx_hash
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire.block import set_nonce
from rpcpay.wire.client_id import make_client_id
from tests.conftest import PAYING_CREDITS, PAYING_DIFFICULTY
from tests.gateway.conftest import Peer, find_nonce
from tests.support.monerod import MonerodProcess

JSON = Any
pytestmark = pytest.mark.monerod


def _strip(answer: JSON) -> JSON:
    """What must agree: errors whole; of results, status and credits."""
    if "error" in answer:
        return {"error": answer["error"]}
    result = answer.get("result", answer)
    return {k: result[k] for k in ("status", "credits") if k in result}


async def test_invalid_client_ids(peers: tuple[Peer, Peer, RunningGateway]) -> None:
    reference, ours, _ = peers
    key = ClientKey()
    valid = key.client_id()
    cases = [
        "",
        "abc",
        valid[:-2],
        valid.upper(),
        "zz" + valid[2:],
        make_client_id(key.secret, int((time.time() - 120) * 1e6)),
        make_client_id(key.secret, int((time.time() + 120) * 1e6)),
    ]
    for client in cases:
        for method in ("rpc_access_info", "rpc_access_submit_nonce"):
            params = {"client": client, "nonce": 1, "cookie": 0}
            assert _strip(await ours.rpc(method, params)) == _strip(
                await reference.rpc(method, params)
            ), (method, client)


async def test_share_refusals_before_any_job(peers: tuple[Peer, Peer, RunningGateway]) -> None:
    reference, ours, _ = peers
    keys = {reference.name: ClientKey(), ours.name: ClientKey()}
    steps = [(0, 11), (0, 11), (77, 12), (0xFFFFFFFF, 13)]
    for cookie, nonce in steps:
        answers = []
        for peer in (reference, ours):
            params = {"client": keys[peer.name].client_id(), "nonce": nonce, "cookie": cookie}
            answers.append(_strip(await peer.rpc("rpc_access_submit_nonce", params)))
        assert answers[0] == answers[1], (cookie, nonce, answers)
    ref_entry = await reference.entry(keys[reference.name])
    our_entry = await ours.entry(keys[ours.name])
    for field in ("balance", "nonces_good", "nonces_stale", "nonces_bad", "nonces_dupe"):
        assert ref_entry[field] == our_entry[field], field


async def test_prices_and_payment_required(peers: tuple[Peer, Peer, RunningGateway]) -> None:
    reference, ours, _ = peers
    hashes = [f"{i:064x}" for i in range(9)]
    key_images = ["%064x" % (i + 1) for i in range(250)]
    calls: list[tuple[str, str, JSON]] = [
        ("rpc", "get_info", {}),
        ("endpoint", "/get_info", {}),
        ("rpc", "get_block_headers_range", {"start_height": 0, "end_height": 19}),
        ("rpc", "get_block_header_by_height", {"height": 1}),
        ("rpc", "get_last_block_header", {}),
        ("rpc", "get_block", {"height": 2}),
        ("rpc", "hard_fork_info", {}),
        ("rpc", "get_fee_estimate", {}),
        ("rpc", "get_output_distribution", {"amounts": [0], "from_height": 0}),
        ("endpoint", "/get_transactions", {"txs_hashes": hashes}),
        ("endpoint", "/is_key_image_spent", {"key_images": key_images}),
        ("endpoint", "/get_outs", {"outputs": [{"amount": 0, "index": i} for i in range(3)]}),
        ("endpoint", "/get_transaction_pool", {}),
        ("endpoint", "/get_transaction_pool_stats", {}),
    ]
    for peer in (reference, ours):
        broke = ClientKey()
        answer = await peer.rpc("get_info", {"client": broke.client_id()})
        assert answer["error"] == {"code": -5, "message": "PAYMENT REQUIRED"}, peer.name
        answer = await peer.endpoint("/get_info", {"client": broke.client_id()})
        assert (answer["status"], answer["credits"]) == ("PAYMENT REQUIRED", 0), peer.name
    keys = {reference.name: ClientKey(), ours.name: ClientKey()}
    for peer in (reference, ours):
        assert await peer.fund(keys[peer.name], 1000) == 1000
    for kind, name, params in calls:
        seen = []
        for peer in (reference, ours):
            body = {**params, "client": keys[peer.name].client_id()}
            answer = await (peer.rpc(name, body) if kind == "rpc" else peer.endpoint(name, body))
            seen.append(_strip(answer))
        assert seen[0] == seen[1], (name, seen)


async def test_replayed_id_and_external_pay(peers: tuple[Peer, Peer, RunningGateway]) -> None:
    reference, ours, _ = peers
    for_peer: dict[str, list[JSON]] = {}
    for peer in (reference, ours):
        key = ClientKey()
        await peer.fund(key, 50)
        client = key.client_id()
        seen = [
            _strip(await peer.rpc("get_block_header_by_height", {"client": client, "height": 1})),
            _strip(await peer.rpc("get_block_header_by_height", {"client": client, "height": 1})),
            _strip(
                await peer.rpc(
                    "rpc_access_pay", {"client": key.client_id(), "paying_for": "x", "payment": 5}
                )
            ),
            _strip(
                await peer.rpc(
                    "rpc_access_pay", {"client": key.client_id(), "paying_for": "x", "payment": 500}
                )
            ),
        ]
        for_peer[peer.name] = seen
    assert for_peer[reference.name] == for_peer[ours.name]
    assert for_peer[ours.name][1] == {"status": "PAYMENT REQUIRED", "credits": 0}


def _bad_nonce(info: JSON) -> int:
    """A nonce whose hash does not meet the share difficulty."""
    seed, blob = bytes.fromhex(info["seed_hash"]), bytes.fromhex(info["hashing_blob"])
    for nonce in range(1000):
        if not check_hash(randomx_hash(seed, set_nonce(blob, nonce)), int(info["diff"])):
            return nonce
    raise AssertionError("no bad nonce in 1000 tries")


async def test_shares_penalties_and_blocks(
    peers: tuple[Peer, Peer, RunningGateway], monerod: MonerodProcess
) -> None:
    reference, ours, gateway = peers
    results: dict[str, list[JSON]] = {}
    for peer in (reference, ours):
        key = ClientKey()
        await peer.fund(key, 2500)
        info = (await peer.rpc("rpc_access_info", {"client": key.client_id()}))["result"]
        assert (info["diff"], info["credits_per_hash_found"], info["credits"]) == (
            PAYING_DIFFICULTY,
            PAYING_CREDITS,
            2500,
        )
        assert len(info["hashing_blob"]) == len(info["hashing_blob"])
        bad = _bad_nonce(info)
        seen = [
            _strip(
                await peer.rpc(
                    "rpc_access_submit_nonce",
                    {"client": key.client_id(), "nonce": bad, "cookie": info["cookie"]},
                )
            )
        ]
        good = find_nonce(info, start=bad + 1)
        if peer is ours:
            height_before = monerod.height()
        seen.append(
            _strip(
                await peer.rpc(
                    "rpc_access_submit_nonce",
                    {"client": key.client_id(), "nonce": good, "cookie": info["cookie"]},
                )
            )
        )
        seen.append(
            _strip(
                await peer.rpc(
                    "rpc_access_submit_nonce",
                    {"client": key.client_id(), "nonce": good, "cookie": info["cookie"]},
                )
            )
        )
        entry = await peer.entry(key)
        seen.append(
            {
                k: entry[k]
                for k in ("balance", "credits_total", "nonces_good", "nonces_bad", "nonces_dupe")
            }
        )
        results[peer.name] = seen
    assert results[reference.name] == results[ours.name]
    # bad: -16 and 20 x 100 penalty; good: +100; duplicate: -17 and another penalty.
    assert results[ours.name][3] == {
        "balance": 0,
        "credits_total": 100,
        "nonces_good": 1,
        "nonces_bad": 1,
        "nonces_dupe": 1,
    }
    # The good share also met the regtest network difficulty (1): it became a real block.
    assert gateway.core.payment.blocks_found == 1
    assert monerod.height() == height_before + 1


async def test_job_shape_matches_monerod(peers: tuple[Peer, Peer, RunningGateway]) -> None:
    reference, ours, _ = peers
    infos = []
    for peer in (reference, ours):
        answer = await peer.rpc("rpc_access_info", {"client": ClientKey().client_id()})
        infos.append(answer["result"])
    ref, mine = infos
    assert set(ref) == set(mine) - {"untrusted"} | ({"untrusted"} & set(ref))
    assert len(ref["hashing_blob"]) == len(mine["hashing_blob"])
    assert ref["hashing_blob"][:2] == mine["hashing_blob"][:2]  # same major version
    assert ref["seed_hash"] == mine["seed_hash"] and ref["seed_height"] == mine["seed_height"]
    assert ref["cookie"] == mine["cookie"] == 1
