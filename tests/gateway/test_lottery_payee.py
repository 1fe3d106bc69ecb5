"""The gateway as a lottery payee, on the in-process chain: lottery_pay_cheque, every
refusal of issue 5 (no credit on any), durability across restarts, both rails on one
ledger, automatic claims, gossip and automatic fraud proofs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rpcpay.gateway.cheques import LotterySettings
from rpcpay.gateway.server import RunningGateway, start_gateway
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
from rpcpay.wallet.keys import ClientKey
from tests.chain.conftest import DEPOSIT, World, make_world
from tests.gateway.conftest import ToyBackend, earn_share, gateway_config, post, rpc

PRICE = 10**12  # wei per credit
VALUE = 10 * PRICE  # a cheque worth ten credits
CONFIRMATIONS = 2
MARGIN = 5


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


async def pay(port: int, client: ClientKey, cheque_hex: str) -> dict[str, Any]:
    _, answer = await post(
        port,
        "/json_rpc",
        rpc("lottery_pay_cheque", {"client": client.client_id(), "cheque": cheque_hex}),
    )
    assert isinstance(answer, dict)
    return answer


def balance_of(gateway: RunningGateway, client: ClientKey) -> int:
    account = gateway.ledger.get(client.public)
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
        assert call["result"]["status"] == "PAYMENT REQUIRED"
        account = gw.ledger.get(client.public)
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
    """The stamper stamps the same tickets to Alice's and Bob's gateways; both accept
    (neither knew); Carol's gateway hears both by gossip, commits and proves the fraud."""
    w = make_world()
    carol = await start_payee(w, toy_backend, tmp_path / "carol", w.carol)
    peer = (f"http://127.0.0.1:{carol.public_port}",)
    alice = await start_payee(w, toy_backend, tmp_path / "alice", w.alice, gossip_peers=peer)
    bob = await start_payee(w, toy_backend, tmp_path / "bob", w.bob, gossip_peers=peer)
    gateways = (carol, alice, bob)
    try:
        terms = open_lottery(w)
        client = ClientKey()
        assert "result" in await pay(
            alice.public_port, client, hexed(w, w.cheque(terms, w.alice, 0, VALUE))
        )
        assert "result" in await pay(
            bob.public_port, client, hexed(w, w.cheque(terms, w.bob, 0, VALUE))
        )
        desk = carol.cheques
        assert desk is not None
        before = w.chain.balance(w.carol.address)
        await until(lambda: len(desk.proofs) == 1)
        assert w.chain.stamper(w.stamper.address).slashed
        # Carol committed first, so the whistleblower's share is hers.
        gas = sum(r.fee for r in desk.proofs)
        gained = w.chain.balance(w.carol.address) - before
        assert DEPOSIT // 10 - 10**16 < gained <= DEPOSIT // 10 - gas
    finally:
        for gw in gateways:
            await gw.close()
