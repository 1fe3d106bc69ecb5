"""Bad input on the lottery rail (issue 9): forged, unsigned, one-wei, unknown-lottery,
duplicate and oversized cheques on ``lottery_pay_cheque`` and on ``/lottery/gossip``.
Each gets a coded refusal and no credit; memory and chain reads stay bounded; junk gossip
never makes an honest cheque look like an overlap; peers are learnt from gossip."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from rpcpay.gateway import cheque_core
from rpcpay.lottery.cheque import Cheque, StampedCheque, encode_stamped
from rpcpay.lottery.eip712 import sign_cheque, sign_stamp
from rpcpay.lottery.gossip import MAX_BATCH, join_batch
from rpcpay.lottery.pacing import PacePolicy
from rpcpay.wallet.keys import ClientKey
from tests.chain.conftest import make_world
from tests.gateway.conftest import ToyBackend, post, rpc
from tests.gateway.test_lottery_payee import (
    PAYER,
    VALUE,
    balance_of,
    hexed,
    kept_count,
    open_lottery,
    pay,
    start_payee,
    until,
)
from tests.support.lottery import pay_params

ZERO_SIG = b"\x00" * 65


async def test_junk_cheques_are_refused_with_codes_and_cost_bounded_reads(
    toy_backend: ToyBackend, tmp_path: Path, monkeypatch: Any
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    monkeypatch.setattr(cheque_core, "UNKNOWN_CACHE", 16)
    try:
        desk = gw.cheques
        assert desk is not None
        terms = open_lottery(w)
        client = ClientKey()
        good = w.cheque(terms, w.alice, 0, VALUE)
        assert (await pay(gw.public_port, client, hexed(w, good)))["result"]["credited"] == 10
        reads: list[bytes] = []
        real = w.chain.lottery
        monkeypatch.setattr(w.chain, "lottery", lambda i, b=None: reads.append(i) or real(i, b))
        unsigned = StampedCheque(
            Cheque(terms.id, w.alice.address, VALUE, VALUE), ZERO_SIG, ZERO_SIG
        )
        unknown = Cheque(b"\x09" * 32, w.alice.address, 0, VALUE)
        unknown_sc = StampedCheque(
            unknown,
            sign_cheque(w.payer, w.domain, unknown),
            sign_stamp(w.stamper, w.domain, unknown),
        )
        cases = {
            "bad_payer_signature": hexed(
                w, w.cheque(terms, w.alice, VALUE, VALUE, payer=w.mallory)
            ),
            "bad_stamp": hexed(w, w.cheque(terms, w.alice, VALUE, VALUE, stamper=w.mallory)),
            "below_minimum": hexed(w, w.cheque(terms, w.alice, VALUE, 1)),
            "duplicate": hexed(w, good),
            "unknown_lottery": hexed(w, unknown_sc),
            "malformed": hexed(w, good) + "00",  # oversized
        }
        # Unsigned: no payer signature to recover at all.
        flood = [*cases.items(), ("bad_payer_signature", encode_stamped(w.domain, unsigned).hex())]
        for _ in range(20):
            for code, cheque_hex in flood:
                answer = await pay(gw.public_port, client, cheque_hex)
                assert answer["error"]["code"] == -40, (code, answer)
                assert answer["error"]["message"].startswith(code + ":"), (code, answer)
        assert await balance_of(gw, client) == 10
        # One unknown id, asked 20 times in one block: one chain read.
        assert reads.count(unknown.lottery) == 1
        # Many made-up ids: one read each, and the cache of unknown ids stays bounded.
        for _ in range(40):
            made_up = Cheque(os.urandom(32), w.alice.address, 0, VALUE)
            sc = StampedCheque(made_up, ZERO_SIG, ZERO_SIG)
            answer = await pay(gw.public_port, client, encode_stamped(w.domain, sc).hex())
            assert answer["error"]["message"].startswith("unknown_lottery:")
        assert len(desk.core.unknown) <= 16
        # Nothing junk was stored.
        assert len(await desk.store.cheques.cheques_of(terms.id)) == 1
        # An account_sig that is not 65 bytes of hex.
        params = pay_params(client, hexed(w, w.cheque(terms, w.alice, 5 * VALUE, VALUE)), PAYER)
        params["account_sig"] = "zz"
        _, answer = await post(gw.public_port, "/json_rpc", rpc("lottery_pay_cheque", params))
        assert answer["error"]["message"].startswith("malformed:"), answer
    finally:
        await gw.close()


async def test_junk_gossip_is_refused_with_codes_never_blocks_honest_cheques_and_is_rate_limited(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        desk = gw.cheques
        assert desk is not None
        terms = open_lottery(w)
        client = ClientKey()
        assert "result" in await pay(
            gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE))
        )
        # Not whole cheques, or more than a batch: 400, nothing looked at.
        wire = encode_stamped(w.domain, w.cheque(terms, w.bob, VALUE, VALUE))
        for body in (wire[:-1], wire * (MAX_BATCH + 1), b""):
            status, answer = await post(gw.public_port, "/lottery/gossip", body)
            assert status == 400, answer
        # Unsigned junk covering tickets the payer will pay us next: kept (unverified) ...
        junk = StampedCheque(Cheque(terms.id, w.bob.address, 2 * VALUE, VALUE), ZERO_SIG, ZERO_SIG)
        foreign = w.cheque(
            terms, w.bob, 9 * VALUE, VALUE, domain=type(w.domain)(7, w.domain.contract)
        )
        batch = [
            encode_stamped(w.domain, junk),
            wire,
            wire,  # duplicate
            encode_stamped(w.domain, w.cheque(terms, w.alice, 4 * VALUE, VALUE)),  # ours
            encode_stamped(type(w.domain)(7, w.domain.contract), foreign),
        ]
        status, answer = await post(gw.public_port, "/lottery/gossip", join_batch(batch))
        assert status == 200, answer
        assert answer["held"] == 2, answer
        assert answer["refused"] == {"duplicate": 1, "ours": 1, "wrong_domain": 1}, answer
        # ... but it never makes the honest cheque an overlap: it is verified and dropped.
        honest = w.cheque(terms, w.alice, 2 * VALUE + 1, VALUE)
        assert (await pay(gw.public_port, client, hexed(w, honest)))["result"]["credited"] == 10
        assert not w.chain.stamper(w.stamper.address).slashed
        # A sender over its rate is told so (429) before its body is read.
        desk.gossip_in._rate = PacePolicy(60, 3, 0.0)
        status, _ = await post(gw.public_port, "/lottery/gossip", join_batch([wire] * 4))
        assert status == 429
    finally:
        await gw.close()


async def test_peers_are_configured_announced_and_learnt_from_gossip(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """Bob has no peers; Alice has Bob configured and announces her URL. When Alice
    gossips a cheque to Bob naming her URL, Bob checks her lottery_info and gossips back
    from then on: gossip is on whenever a gateway has a peer, and the mesh is symmetric."""
    w = make_world()
    bob = await start_payee(w, toy_backend, tmp_path / "bob", w.bob)
    bob_url = f"http://127.0.0.1:{bob.public_port}"
    alice = await start_payee(w, toy_backend, tmp_path / "alice", w.alice, gossip_peers=(bob_url,))
    try:
        assert alice.cheques is not None and bob.cheques is not None
        alice_url = f"http://127.0.0.1:{alice.public_port}"
        alice.cheques.gossip.self_url = alice_url
        alice.cheques.core.settings = replace(alice.cheques.settings, public_url=alice_url)
        _, info = await post(alice.public_port, "/json_rpc", rpc("lottery_info", {}))
        assert info["result"]["gossip_peers"] == [bob_url]
        assert info["result"]["gossip_url"] == alice_url
        assert bob.cheques.gossip.peer_urls() == []
        terms = open_lottery(w)
        client = ClientKey()
        assert "result" in await pay(
            alice.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE))
        )
        await until(
            lambda: bob.cheques is not None and bob.cheques.gossip.peer_urls() == [alice_url]
        )
        # Bob now gossips his cheques to Alice.
        assert "result" in await pay(
            bob.public_port, client, hexed(w, w.cheque(terms, w.bob, VALUE, VALUE))
        )
        desk = alice.cheques
        assert desk is not None
        await until(lambda: kept_count(desk, terms.id, 2))
    finally:
        await alice.close()
        await bob.close()
