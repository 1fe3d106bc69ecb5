"""The gateway as a lottery payee, on the in-process chain: lottery_pay_cheque, every
refusal of issue 5 (no credit on any), durability across restarts, both rails on one
ledger, automatic claims, gossip and automatic fraud proofs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rpcpay.chain import dev_keys
from rpcpay.errors import ChainError
from rpcpay.gateway.cheques import LotterySettings
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.lottery.cheque import (
    Cheque,
    Domain,
    LotteryTerms,
    StampedCheque,
    draw_seed,
    encode_stamped,
    winning_ticket,
)
from rpcpay.lottery.eip712 import cheque_hash, sign_cheque, sign_stamp
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.gossip import GossipSender
from rpcpay.wallet.keys import ClientKey
from tests.chain.conftest import DEPOSIT, World, make_world
from tests.gateway.conftest import ToyBackend, earn_share, gateway_config, post, rpc
from tests.support.lottery import pay_params

PRICE = 10**12  # wei per credit
VALUE = 10 * PRICE  # a cheque worth ten credits
CONFIRMATIONS = 2
MARGIN = 5
PAYER = dev_keys(8)[2]  # make_world's payer


def write_key(path: Path, key: EthKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.secret.hex())
    return path


def lottery_settings(w: World, key_file: Path, **changes: Any) -> LotterySettings:
    settings: dict[str, Any] = {
        "contract": w.chain.contract,
        "key_file": key_file,
        "credit_price_wei": PRICE,
        "min_stamper_deposit": DEPOSIT // 2,
        "reveal_margin": MARGIN,
        "confirmations": CONFIRMATIONS,
        "claim_interval_s": 3600.0,  # tests drive settle_once themselves
        # These tests pay whole prizes at once; pacing has its own tests
        # (test_lottery_pacing.py), so here every cheque fits the bucket.
        "burst_wei": 10**30,
    }
    settings.update(changes)
    return LotterySettings(**settings)


async def start_payee(
    w: World, backend: ToyBackend, data_dir: Path, key: EthKey, **changes: Any
) -> RunningGateway:
    settings = lottery_settings(w, write_key(data_dir / "lottery.key", key), **changes)
    config = gateway_config(backend.url, data_dir, lottery=settings)
    return await start_gateway(config, lottery_chain=w.chain)


def open_lottery(w: World, reveal_in: int = 30, salt: bytes = b"\x01" * 32) -> LotteryTerms:
    terms = w.lottery(reveal_in=reveal_in, salt=salt)
    w.chain.mine(CONFIRMATIONS)  # confirmed for the payee
    return terms


def hexed(w: World, sc: StampedCheque, domain: Domain | None = None) -> str:
    return encode_stamped(domain or w.domain, sc).hex()


async def pay(
    port: int, client: ClientKey, cheque_hex: str, payer: EthKey = PAYER
) -> dict[str, Any]:
    _, answer = await post(
        port, "/json_rpc", rpc("lottery_pay_cheque", pay_params(client, cheque_hex, payer))
    )
    assert isinstance(answer, dict)
    return answer


def balance_of(gateway: RunningGateway, client: ClientKey) -> int:
    # Synchronously, for ``until`` (and after the gateway closed): the ledger file, read on
    # a connection of our own.
    assert gateway.cheques is not None
    store = SqliteLedgerStore(gateway.cheques.store.path)
    try:
        account = store.load(client.public)
    finally:
        store.close()
    return 0 if account is None else account.balance


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_cheque_credits_at_the_price_and_mixes_with_hash_credits(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        terms = open_lottery(w)
        client = ClientKey()
        mined = await earn_share(gw.public_port, client)
        assert mined["result"]["credits"] == 50
        # 10 credits and 999 wei: rounded down, the remainder is not carried.
        answer = await pay(
            gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE + 999))
        )
        result = answer["result"]
        assert result["status"] == "OK" and result["credited"] == 10
        assert result["credits"] == 60 and result["untrusted"] is False
        assert isinstance(result["top_hash"], str) and result["top_hash"]
        # Both rails' credits pay for calls: spend all 60, then the 61st is refused.
        for n in range(60):
            _, call = await post(
                gw.public_port, "/", rpc("eth_call", [], client=client.client_id())
            )
            assert call["credits"] == 59 - n
        _, call = await post(gw.public_port, "/", rpc("eth_call", [], client=client.client_id()))
        assert call["error"]["data"]["status"] == "PAYMENT REQUIRED"
        account = await gw.ledger.get(client.public)
        assert account is not None and account.credits_total == 60
        assert account.credits_used == 60
        # lottery_info tells payers the price and where to pay.
        _, info = await post(gw.public_port, "/json_rpc", rpc("lottery_info", {}))
        assert info["result"]["credit_price_wei"] == str(PRICE)
        assert bytes.fromhex(info["result"]["recipient"][2:]) == w.alice.address
    finally:
        await gw.close()


async def test_every_bad_cheque_is_refused_clearly_and_credits_nothing(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        terms = open_lottery(w)
        soon = open_lottery(w, reveal_in=MARGIN + 1, salt=b"\x02" * 32)
        client = ClientKey()
        good = w.cheque(terms, w.alice, 0, VALUE)
        assert (await pay(gw.public_port, client, hexed(w, good)))["result"]["credited"] == 10
        credited = balance_of(gw, client)
        other_chain = Domain(chain_id=7, contract=w.chain.contract)
        other_contract = Domain(chain_id=w.domain.chain_id, contract=b"\x42" * 20)
        unknown = Cheque(b"\x09" * 32, w.alice.address, 0, VALUE)
        unknown_sc = StampedCheque(
            unknown,
            sign_cheque(w.payer, w.domain, unknown),
            sign_stamp(w.stamper, w.domain, unknown),
        )
        cases: dict[str, str] = {
            # The list: forged, replayed, expired, wrong chain, overlapping.
            "bad_payer_signature": hexed(
                w, w.cheque(terms, w.alice, VALUE, VALUE, payer=w.mallory)
            ),
            "bad_stamp": hexed(w, w.cheque(terms, w.alice, VALUE, VALUE, stamper=w.mallory)),
            "duplicate": hexed(w, good),
            "reveal_too_close": hexed(w, w.cheque(soon, w.alice, 0, VALUE)),
            "wrong_chain": hexed(
                w, w.cheque(terms, w.alice, VALUE, VALUE, domain=other_chain), other_chain
            ),
            "wrong_contract": hexed(
                w, w.cheque(terms, w.alice, VALUE, VALUE, domain=other_contract), other_contract
            ),
            "wrong_recipient": hexed(w, w.cheque(terms, w.bob, VALUE, VALUE)),
            "unknown_lottery": hexed(w, unknown_sc),
            "below_minimum": hexed(w, w.cheque(terms, w.alice, VALUE, PRICE - 1)),
            "range_outside": hexed(w, w.cheque(terms, w.alice, terms.prize - VALUE + 1, VALUE)),
            "malformed": "00" * 273,
        }
        for code, cheque_hex in cases.items():
            answer = await pay(gw.public_port, client, cheque_hex)
            assert "result" not in answer, (code, answer)
            assert answer["error"]["code"] == -40, (code, answer)
            assert answer["error"]["message"].startswith(code + ":"), (code, answer)
            assert "credited" in answer["error"]["message"]
            assert balance_of(gw, client) == credited, code
        # A client id that does not verify is refused as every payment method refuses it.
        _, answer = await post(
            gw.public_port,
            "/json_rpc",
            rpc("lottery_pay_cheque", {"client": "x" * 208, "cheque": hexed(w, good)}),
        )
        assert answer["error"]["code"] == -15
    finally:
        await gw.close()


async def test_young_lottery_and_poor_stamper_are_refused(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(
        w, toy_backend, tmp_path / "gw", w.alice, min_stamper_deposit=DEPOSIT + 1
    )
    try:
        young = w.lottery(reveal_in=30)  # not yet CONFIRMATIONS deep
        client = ClientKey()
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(young, w.alice, 0, VALUE)))
        assert answer["error"]["message"].startswith("unknown_lottery:")
        w.chain.mine(CONFIRMATIONS)
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(young, w.alice, 0, VALUE)))
        assert answer["error"]["message"].startswith("stamper_deposit_low:")
        assert balance_of(gw, client) == 0
    finally:
        await gw.close()


async def test_overlap_is_refused_and_the_stamper_slashed_automatically(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        terms = open_lottery(w)
        client = ClientKey()
        await pay(gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE)))
        before = w.chain.balance(w.alice.address)
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 5, VALUE)))
        assert answer["error"]["message"].startswith("overlap:")
        assert balance_of(gw, client) == 10
        desk = gw.cheques
        assert desk is not None
        await until(lambda: len(desk.proofs) == 1)
        assert w.chain.stamper(w.stamper.address).slashed
        # The recipient proves without a commitment and gets the whistleblower's 10%.
        reward = DEPOSIT * 1_000 // 10_000
        assert w.chain.balance(w.alice.address) == before + reward - desk.proofs[0].fee
        assert w.chain.pool(w.stamper.address) == DEPOSIT * 5_000 // 10_000
        # The caught stamper's cheques are refused from now on.
        fresh = w.cheque(terms, w.alice, 10 * VALUE, VALUE)
        answer = await pay(gw.public_port, client, hexed(w, fresh))
        assert answer["error"]["message"].startswith("stamper_slashed:")
    finally:
        await gw.close()


async def test_credit_survives_restart_and_is_never_doubled(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    data = tmp_path / "gw"
    terms = open_lottery(w)
    client = ClientKey()
    cheque = hexed(w, w.cheque(terms, w.alice, 0, VALUE))
    gw = await start_payee(w, toy_backend, data, w.alice)
    try:
        assert (await pay(gw.public_port, client, cheque))["result"]["credits"] == 10
    finally:
        await gw.close()
    gw = await start_payee(w, toy_backend, data, w.alice)
    try:
        assert balance_of(gw, client) == 10
        answer = await pay(gw.public_port, client, cheque)
        assert answer["error"]["message"].startswith("duplicate:")
        # Also an overlapping cheque: the held range came back from the database.
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 1, VALUE)))
        assert answer["error"]["message"].startswith("overlap:")
        assert balance_of(gw, client) == 10
    finally:
        await gw.close()


async def settle(gw: RunningGateway) -> None:
    assert gw.cheques is not None
    await gw.cheques.settle_once()


async def test_claims_its_win_after_the_reveal_and_closes_losses(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        desk = gw.cheques
        assert desk is not None
        client = ClientKey()
        # Lottery A: the gateway holds every ticket, so it wins. Lottery B: half of them.
        a = open_lottery(w, reveal_in=12, salt=b"\x0a" * 32)
        b = open_lottery(w, reveal_in=12, salt=b"\x0b" * 32)
        half = b.prize // 2
        for sc in (
            w.cheque(a, w.alice, 0, half),
            w.cheque(a, w.alice, half, a.prize - half),
            w.cheque(b, w.alice, 0, half),
        ):
            assert "result" in await pay(gw.public_port, client, hexed(w, sc))
        await settle(gw)  # before the reveal: nothing happens
        assert desk.claims == [] and desk.store.outcomes() == {}
        w.chain.mine(max(a.reveal_block, b.reveal_block) + CONFIRMATIONS - w.chain.block_number())
        before = w.chain.balance(w.alice.address)
        await settle(gw)
        ticket_b = winning_ticket(draw_seed(w.chain.block_hash(b.reveal_block), b.id), b.prize)
        b_wins = ticket_b < half
        assert len(desk.claims) == 1 + b_wins
        fees = sum(r.fee for r in desk.claims)
        assert w.chain.balance(w.alice.address) == before + a.prize + b_wins * b.prize - fees
        outcomes = desk.store.outcomes()
        assert outcomes[a.id] == "claimed"
        assert outcomes[b.id] == ("claimed" if b_wins else "lost")
        lottery_a = w.chain.lottery(a.id)
        assert lottery_a is not None and lottery_a.paid_cheque is not None
        assert lottery_a.paid_cheque in {cheque_hash(sc.cheque) for sc in desk.ours(a.id)}
        # Closed lotteries are not claimed again.
        await settle(gw)
        assert len(desk.claims) == 1 + b_wins
    finally:
        await gw.close()


async def test_a_claim_survives_a_restart(toy_backend: ToyBackend, tmp_path: Path) -> None:
    w = make_world()
    data = tmp_path / "gw"
    terms = open_lottery(w, reveal_in=12)
    gw = await start_payee(w, toy_backend, data, w.alice)
    try:
        sc = w.cheque(terms, w.alice, 0, terms.prize)
        assert "result" in await pay(gw.public_port, ClientKey(), hexed(w, sc))
    finally:
        await gw.close()
    w.chain.mine(terms.reveal_block + CONFIRMATIONS - w.chain.block_number())
    gw = await start_payee(w, toy_backend, data, w.alice)
    try:
        await settle(gw)
        assert gw.cheques is not None and len(gw.cheques.claims) == 1
        lottery = w.chain.lottery(terms.id)
        assert lottery is not None and lottery.paid_cheque == cheque_hash(sc.cheque)
    finally:
        await gw.close()


async def test_gossip_catches_overlapping_stamps_to_two_gateways(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """The stamper stamps the same tickets to Alice's and Bob's gateways. Alice is paid
    first and gossips her cheque; Bob keeps it although he holds no cheque of that
    lottery yet (issue 9: gossip is kept for every lottery, bounded per sender and per
    recipient), so he refuses the overlapping cheque at once, credits nothing, and the
    stamper is slashed. Before issue 9 Bob dropped Alice's cheque and credited his own."""
    w = make_world()
    carol = await start_payee(w, toy_backend, tmp_path / "carol", w.carol)
    bob = await start_payee(w, toy_backend, tmp_path / "bob", w.bob)
    peers = (f"http://127.0.0.1:{carol.public_port}", f"http://127.0.0.1:{bob.public_port}")
    alice = await start_payee(w, toy_backend, tmp_path / "alice", w.alice, gossip_peers=peers)
    assert bob.cheques is not None and alice.cheques is not None and carol.cheques is not None
    bob.cheques.gossip = GossipSender(
        [f"http://127.0.0.1:{carol.public_port}", f"http://127.0.0.1:{alice.public_port}"]
    )
    bob.cheques.gossip.start()
    gateways = (carol, alice, bob)
    try:
        terms = open_lottery(w)
        client = ClientKey()
        assert "result" in await pay(
            alice.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE))
        )
        await until(lambda: alice.cheques is not None and alice.cheques.gossip.pending() == 0)
        answer = await pay(bob.public_port, client, hexed(w, w.cheque(terms, w.bob, 0, VALUE)))
        assert answer["error"]["message"].startswith("overlap:"), answer
        assert balance_of(bob, client) == 0 and balance_of(alice, client) == 10
        await until(lambda: w.chain.stamper(w.stamper.address).slashed)
        desks = [gw.cheques for gw in gateways if gw.cheques is not None]
        await until(lambda: all(not d._filing for d in desks))
        # Exactly one proof went through; Bob found the pair and forwarded both halves.
        assert sum(len(d.proofs) for d in desks) == 1
        assert bob.cheques.fraud.found >= 1
        # The refused cheque is evidence at Bob's, never credited.
        store = bob.cheques.store
        (row,) = store.cheques_with_outcome("evidence") or store.cheques_with_outcome("proven")
        assert row.client is None and row.credits == 0
    finally:
        for gw in gateways:
            await gw.close()


async def test_gossip_is_bounded_per_recipient_and_costs_no_chain_read_without_overlap(
    toy_backend: ToyBackend, tmp_path: Path, monkeypatch: Any
) -> None:
    """Issue 9 changed this: gossip is kept for every lottery (a payee learns of tickets
    before it is paid in that lottery), in memory only, bounded per sender and per
    recipient; a cheque that overlaps nothing costs no chain read and no signature."""
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        ours, theirs = open_lottery(w), open_lottery(w, salt=b"\x02" * 32)
        client = ClientKey()
        assert "result" in await pay(
            gw.public_port, client, hexed(w, w.cheque(ours, w.alice, 0, VALUE))
        )
        desk = gw.cheques
        assert desk is not None
        desk.core.book.per_recipient = 2
        reads: list[bytes] = []
        real = w.chain.lottery
        monkeypatch.setattr(w.chain, "lottery", lambda i, b=None: reads.append(i) or real(i, b))

        def peer_cheques(terms: LotteryTerms, n: int, to: EthKey) -> bytes:
            return b"".join(
                encode_stamped(w.domain, w.cheque(terms, to, (k + 1) * VALUE, VALUE))
                for k in range(n)
            )

        status, answer = await post(
            gw.public_port, "/lottery/gossip", peer_cheques(theirs, 3, w.bob)
        )
        assert status == 200 and answer["held"] == 2, answer
        assert answer["refused"] == {"capped": 1}, answer
        # Another recipient has its own share.
        status, answer = await post(
            gw.public_port, "/lottery/gossip", peer_cheques(ours, 2, w.carol)
        )
        assert status == 200 and answer["held"] == 2, answer
        assert reads == []
        # Gossip lives in memory: the database holds only our own cheque.
        assert desk.store.cheques_of(theirs.id) == []
        assert len(desk.store.cheques_of(ours.id)) == 1
        # A cheque of a made-up lottery that overlaps one kept: one chain read, then cached.
        unknown = Cheque(b"\x09" * 32, w.mallory.address, 0, VALUE)

        def junk(cheque: Cheque) -> bytes:
            return encode_stamped(
                w.domain,
                StampedCheque(
                    cheque,
                    sign_cheque(w.payer, w.domain, cheque),
                    sign_stamp(w.stamper, w.domain, cheque),
                ),
            )

        other = Cheque(b"\x09" * 32, w.deployer.address, 1, VALUE)
        _, answer = await post(gw.public_port, "/lottery/gossip", junk(unknown) + junk(other))
        assert answer["held"] == 1 and answer["refused"] == {"unknown_lottery": 1}, answer
        assert reads == [unknown.lottery]
    finally:
        await gw.close()


async def test_stamper_exposure_bounds_the_open_prizes_per_stamper(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """T9: the stamper's deposit burns 40% (0.4 ETH) if slashed, so this gateway holds
    cheques in at most 0.4 ETH of its open prizes; the bound survives a restart."""
    w = make_world()
    data = tmp_path / "gw"
    gw = await start_payee(w, toy_backend, data, w.alice)
    client = ClientKey()

    def lottery(prize: int, salt: int) -> LotteryTerms:
        terms = w.lottery(prize=prize, reveal_in=30, salt=bytes([salt]) * 32)
        w.chain.mine(CONFIRMATIONS)
        return terms

    try:
        # One prize above the burnt share is refused outright.
        whale = lottery(DEPOSIT * 4 // 10 + 1, 1)
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(whale, w.alice, 0, VALUE)))
        assert answer["error"]["message"].startswith("stamper_exposure:"), answer
        # Two prizes of 0.2 ETH fill the bound exactly; more cheques in them are fine.
        first, second = lottery(2 * 10**17, 2), lottery(2 * 10**17, 3)
        for terms in (first, second):
            for k in range(2):
                cheque = w.cheque(terms, w.alice, k * VALUE, VALUE)
                assert "result" in await pay(gw.public_port, client, hexed(w, cheque))
        third = lottery(10**17, 4)
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(third, w.alice, 0, VALUE)))
        assert answer["error"]["message"].startswith("stamper_exposure:"), answer
        assert balance_of(gw, client) == 40
        # Another stamper's lottery is its own exposure.
        w.chain.deposit_stamper(w.carol, DEPOSIT)
        other = w.lottery(prize=10**17, reveal_in=30, salt=b"\x05" * 32, stamper=w.carol)
        w.chain.mine(CONFIRMATIONS)
        cheque = w.cheque(other, w.alice, 0, VALUE, stamper=w.carol)
        assert "result" in await pay(gw.public_port, client, hexed(w, cheque))
    finally:
        await gw.close()
    gw = await start_payee(w, toy_backend, data, w.alice)
    try:
        answer = await pay(gw.public_port, client, hexed(w, w.cheque(third, w.alice, 0, VALUE)))
        assert answer["error"]["message"].startswith("stamper_exposure:"), answer
        assert balance_of(gw, client) == 50
    finally:
        await gw.close()


async def test_a_cheque_pays_only_the_account_its_payer_named(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice)
    try:
        terms = open_lottery(w)
        client, thief = ClientKey(), ClientKey()
        cheque = hexed(w, w.cheque(terms, w.alice, 0, VALUE))
        attempts = [
            # The payer's signature for the client, replayed with the thief's client id.
            pay_params(thief, cheque, PAYER, account=client.public),
            # The stamper (which saw the cheque first) signs for its own account.
            pay_params(thief, cheque, w.stamper),
            # Anyone on the path, likewise.
            pay_params(thief, cheque, w.mallory),
        ]
        for params in attempts:
            _, answer = await post(gw.public_port, "/json_rpc", rpc("lottery_pay_cheque", params))
            assert answer["error"]["message"].startswith("bad_account_signature:"), answer
        # A missing or malformed account_sig is refused too.
        _, answer = await post(
            gw.public_port,
            "/json_rpc",
            rpc("lottery_pay_cheque", {"client": thief.client_id(), "cheque": cheque}),
        )
        assert answer["error"]["message"].startswith("malformed:"), answer
        assert balance_of(gw, thief) == 0
        desk = gw.cheques
        assert desk is not None and desk.store.cheques_of(terms.id) == []
        # The rightful payer still redeems it, once.
        assert (await pay(gw.public_port, client, cheque))["result"]["credited"] == 10
        assert balance_of(gw, client) == 10 and balance_of(gw, thief) == 0
    finally:
        await gw.close()


async def test_a_cheque_worth_more_than_an_account_holds_is_refused(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    w = make_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice, credit_price_wei=1)
    try:
        whale = w.keys[7]
        w.chain.deposit_stamper(whale, 100 * DEPOSIT)  # burns 40 ETH: covers a 38 ETH prize
        terms = w.lottery(prize=2**65 + 10**18, reveal_in=30, stamper=whale)
        w.chain.mine(CONFIRMATIONS)
        client = ClientKey()
        # 2**64 credits at 1 wei each: one more than a u64 balance holds.
        big = w.cheque(terms, w.alice, 0, 2**64, stamper=whale)
        answer = await pay(gw.public_port, client, hexed(w, big))
        assert answer["error"]["message"].startswith("too_large:"), answer
        assert balance_of(gw, client) == 0
        # The largest that fits is credited; then even 1 more credit is too large.
        fits = w.cheque(terms, w.alice, 2**64, 2**64 - 1, stamper=whale)
        assert (await pay(gw.public_port, client, hexed(w, fits)))["result"]["credited"] == (
            2**64 - 1
        )
        more = w.cheque(terms, w.alice, 2**65 - 1, 1, stamper=whale)
        answer = await pay(gw.public_port, client, hexed(w, more))
        assert answer["error"]["message"].startswith("too_large:"), answer
        assert balance_of(gw, client) == 2**64 - 1
    finally:
        await gw.close()


async def test_overlap_evidence_is_stored_at_once_and_proven_after_a_restart(
    toy_backend: ToyBackend, tmp_path: Path, monkeypatch: Any
) -> None:
    w = make_world()
    data = tmp_path / "gw"
    gw = await start_payee(w, toy_backend, data, w.alice)
    terms = open_lottery(w)
    client = ClientKey()
    overlapping = w.cheque(terms, w.alice, 5, VALUE)

    def unreachable(*_args: object) -> object:
        raise ChainError("node unreachable")

    try:
        assert "result" in await pay(
            gw.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE))
        )
        with monkeypatch.context() as patch:
            patch.setattr(w.chain, "prove_fraud", unreachable)
            answer = await pay(gw.public_port, client, hexed(w, overlapping))
            assert answer["error"]["message"].startswith("overlap:")
            desk = gw.cheques
            assert desk is not None
            # The refused cheque is evidence (no client, no credit) before any proof.
            (row,) = desk.store.cheques_with_outcome("evidence")
            assert row.cheque_id == cheque_hash(overlapping.cheque) and row.client is None
            assert row.credits == 0 and balance_of(gw, client) == 10
            await until(lambda: not desk._filing)
            assert desk.proofs == [] and not w.chain.stamper(w.stamper.address).slashed
    finally:
        await gw.close()
    # After a restart the claim loop files the proof from the stored evidence.
    gw = await start_payee(w, toy_backend, data, w.alice)
    try:
        desk = gw.cheques
        assert desk is not None
        await desk.settle_once()
        await until(lambda: len(desk.proofs) == 1)
        assert w.chain.stamper(w.stamper.address).slashed
        await until(lambda: desk.store.cheques_with_outcome("evidence") == [])
        assert [r.cheque_id for r in desk.store.cheques_with_outcome("proven")] == [
            cheque_hash(overlapping.cheque)
        ]
        assert balance_of(gw, client) == 10
    finally:
        await gw.close()
