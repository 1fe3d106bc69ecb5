"""Issue 9's attacks, replayed against real payees (``start_gateway``) on the in-process
chain: one set of tickets stamped to k gateways, gossip blinding, and the honest payer
that must never wait."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rpcpay.chain import InProcessChain
from rpcpay.chain.inprocess import DEV_BALANCE, dev_keys
from rpcpay.gateway.server import RunningGateway
from rpcpay.lottery.cheque import Cheque, StampedCheque, encode_stamped
from rpcpay.lottery.eip712 import sign_cheque, sign_stamp
from rpcpay.lottery.gossip import join_batch
from rpcpay.lottery.pacing import (
    DEFAULT_BURST_WEI,
    DEFAULT_RATE_WEI_PER_MINUTE,
    PacePolicy,
    credit_bound,
)
from rpcpay.wallet.keys import ClientKey
from tests.chain.conftest import DEPOSIT, PARAMS, PRIZE, World, _populate
from tests.gateway.conftest import ToyBackend, post
from tests.gateway.test_lottery_payee import (
    CONFIRMATIONS,
    balance_of,
    hexed,
    none_pending,
    pay,
    start_payee,
    until,
)

PRICE = 10**9  # the default credit price: 1 gwei
HOLD = 1.5  # seconds; the gossip delay on loopback is far below HOLD / 3
DELAY = HOLD / 3
K_MAX = 8


def big_world() -> tuple[World, list[Any], list[Any]]:
    """The usual world, 8 gateway keys and 8 stamper keys, all funded."""
    keys = dev_keys(8 + 2 * K_MAX)
    chain = InProcessChain(funded=keys, chain_id=1337, balance=DEV_BALANCE)
    w = _populate(chain, keys[:8], PARAMS)
    return w, keys[8 : 8 + K_MAX], keys[8 + K_MAX :]


def pacing(**changes: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "credit_price_wei": PRICE,
        "hold_s": HOLD,
        "burst_wei": DEFAULT_BURST_WEI,
        "rate_wei_per_minute": DEFAULT_RATE_WEI_PER_MINUTE,
    }
    settings.update(changes)
    return settings


async def test_tickets_stamped_to_k_gateways_buy_at_most_the_bound(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """A colluding payer and stamper stamp the whole space [0, P) to k gateways (a burst
    first, which each credits at once, then the rest, which each holds). Before issue 9
    each gateway credited P: k x P of service for one prize, and at R + 1 a sybil took
    the prize back. Now the total is at most P
    + credit_bound(k): the held cheques are withheld once gossip shows the overlap."""
    w, gateway_keys, stamper_keys = big_world()
    ports: list[int] = []
    gateways: list[RunningGateway] = []
    try:
        for i, key in enumerate(gateway_keys):
            gw = await start_payee(
                w, toy_backend, tmp_path / f"gw{i}", key, **pacing(public_url=None)
            )
            gateways.append(gw)
            ports.append(gw.public_port)
        # A full mesh of gossip.
        for i, gw in enumerate(gateways):
            assert gw.cheques is not None
            for j, port in enumerate(ports):
                if i != j:
                    gw.cheques.gossip.add_peer(f"http://127.0.0.1:{port}")
        pace = PacePolicy(DEFAULT_RATE_WEI_PER_MINUTE, DEFAULT_BURST_WEI, HOLD)
        burst = pace.burst_wei
        for k in range(1, K_MAX + 1):
            stamper = stamper_keys[k - 1]
            w.chain.deposit_stamper(stamper, DEPOSIT)
            terms = w.lottery(prize=PRIZE, reveal_in=30, salt=bytes([k]) * 32, stamper=stamper)
            w.chain.mine(CONFIRMATIONS)
            targets = list(zip(gateways[:k], gateway_keys[:k], strict=True))
            clients = [ClientKey() for _ in targets]
            # The burst, to all k at once: each credits it before any gossip arrives.
            first = await asyncio.gather(
                *(
                    pay(
                        gw.public_port,
                        client,
                        hexed(w, w.cheque(terms, key, 0, burst, stamper=stamper)),
                    )
                    for (gw, key), client in zip(targets, clients, strict=True)
                )
            )
            # Then the rest of the space, to all k: more than any bucket holds.
            rest = await asyncio.gather(
                *(
                    pay(
                        gw.public_port,
                        client,
                        hexed(w, w.cheque(terms, key, burst, PRIZE - burst, stamper=stamper)),
                    )
                    for (gw, key), client in zip(targets, clients, strict=True)
                )
            )
            await asyncio.sleep(HOLD * 2)
            desks = [gw.cheques for gw, _ in targets if gw.cheques is not None]
            await until(
                lambda ds=desks: all(not d.intake._timers and not d.intake.tasks for d in ds)
            )
            credited = (
                sum(
                    [
                        await balance_of(gw, client)
                        for (gw, _), client in zip(targets, clients, strict=True)
                    ]
                )
                * PRICE
            )
            bound = PRIZE + credit_bound(k, 1, pace, DELAY)
            assert credited <= bound, (k, credited, bound, first, rest)
            if k >= 2:
                # Every held cheque was withheld: only the bursts were credited.
                assert credited <= credit_bound(k, 1, pace, DELAY), (k, credited)
                assert all([await none_pending(d) for d in desks])
                await until(lambda s=stamper: w.chain.stamper(s.address).slashed)
            # The old rule's k x P is far above the new bound from k = 2 on.
            assert k == 1 or credited < k * PRIZE // 100
            if k == K_MAX:
                # At R + 1 a sybil of the coalition claims the prize with a fresh stamp of
                # the winning ticket; what the gateways credited does not change.
                ticket = w.reveal(terms)
                sybil = w.cheque(terms, w.mallory, ticket, 1, stamper=stamper)
                w.chain.claim(w.mallory, sybil)
                for gw, _ in targets:
                    assert gw.cheques is not None
                    await gw.cheques.settle_once()
                after = sum(
                    [
                        await balance_of(gw, client)
                        for (gw, _), client in zip(targets, clients, strict=True)
                    ]
                )
                assert after * PRICE == credited <= credit_bound(k, 1, pace, DELAY)
    finally:
        for gw in gateways:
            await gw.close()


async def test_a_steady_payer_at_the_rate_is_never_held_and_a_faster_one_waits(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """100 gwei a minute (the default rate), a minute apart give or take 5 s: every cheque
    is credited at once. Ten times that rate: held, then credited after the hold."""
    w, gateway_keys, _ = big_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", gateway_keys[0], **pacing())
    try:
        desk = gw.cheques
        assert desk is not None
        now = [1000.0]
        desk.intake.clock = lambda: now[0]
        terms = w.lottery(prize=PRIZE, reveal_in=30)
        w.chain.mine(CONFIRMATIONS)
        client = ClientKey()
        minute = 100 * 10**9
        start = 0
        for n in range(60):
            cheque = w.cheque(terms, gateway_keys[0], start, minute)
            result = (await pay(gw.public_port, client, hexed(w, cheque)))["result"]
            assert result["held"] == 0 and result["credited"] == 100, (n, result)
            start += minute
            now[0] += 60 + (5 if n % 2 else -5)
        assert await balance_of(gw, client) == 6000
        # Ten minutes' worth a minute: the bucket empties, the rest waits for the hold.
        held = 0
        for _ in range(5):
            cheque = w.cheque(terms, gateway_keys[0], start, 10 * minute)
            result = (await pay(gw.public_port, client, hexed(w, cheque)))["result"]
            held += result["held"]
            start += 10 * minute
            now[0] += 60
        assert held >= 3000
        await until(lambda: none_pending(desk), timeout=HOLD * 4)
        assert await balance_of(gw, client) == 6000 + 5000
    finally:
        await gw.close()


def stamped(w: World, cheque: Cheque) -> bytes:
    return encode_stamped(
        w.domain,
        StampedCheque(
            cheque, sign_cheque(w.payer, w.domain, cheque), sign_stamp(w.stamper, w.domain, cheque)
        ),
    )


async def test_four_thousand_one_wei_cheques_no_longer_blind_gossip(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """Issue 9's blinding attack: the payer fills the gossip cap with 4,096 one-wei,
    non-overlapping stamped cheques to made-up recipients, then gossips a cheque that
    overlaps one the gateway holds. It used to be answered held 0, fraud 0."""
    w, _, _ = big_world()
    gw = await start_payee(w, toy_backend, tmp_path / "gw", w.alice, **pacing())
    try:
        desk = gw.cheques
        assert desk is not None
        terms = w.lottery(prize=PRIZE, reveal_in=30)
        w.chain.mine(CONFIRMATIONS)
        client = ClientKey()
        mine = w.cheque(terms, w.alice, 0, 100 * PRICE)
        assert (await pay(gw.public_port, client, hexed(w, mine)))["result"]["credited"] == 100
        base = 10**15
        junk = [
            stamped(w, Cheque(terms.id, bytes([1 + n % 200]) * 19 + bytes([n // 200]), base + n, 1))
            for n in range(4096)
        ]
        kept = 0
        for i in range(0, len(junk), 64):
            status, answer = await post(
                gw.public_port, "/lottery/gossip", join_batch(junk[i : i + 64])
            )
            assert status == 200, answer
            kept += answer["held"]
        assert kept == 4096
        overlapping = Cheque(terms.id, w.bob.address, 50 * PRICE, 100 * PRICE)
        status, answer = await post(gw.public_port, "/lottery/gossip", stamped(w, overlapping))
        assert status == 200 and answer["fraud"] == 1, answer
        await until(lambda: w.chain.stamper(w.stamper.address).slashed)
        # Past every bound, detection still works: a sender's FIFO keeps its newest.
        desk.core.book.per_peer = 100
        more = [
            stamped(w, Cheque(terms.id, w.carol.address, base + 10_000 + n, 1)) for n in range(128)
        ]
        for i in range(0, len(more), 64):
            await post(gw.public_port, "/lottery/gossip", join_batch(more[i : i + 64]))
        assert desk.core.book.peers_kept() <= 100 + 4096
    finally:
        await gw.close()


async def test_a_held_cheque_survives_a_restart_and_one_of_a_slashed_stamper_is_withheld(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """A held cheque is stored before the payer hears "held": after a restart its hold
    resumes and it is credited. One whose stamper is slashed on chain meanwhile (by
    anyone) is withheld, never credited."""
    w, gateway_keys, stamper_keys = big_world()
    key = gateway_keys[0]
    data = tmp_path / "gw"
    terms = w.lottery(prize=PRIZE, reveal_in=30)
    w.chain.deposit_stamper(stamper_keys[0], DEPOSIT)
    other = w.lottery(prize=PRIZE, reveal_in=30, salt=b"\x02" * 32, stamper=stamper_keys[0])
    w.chain.mine(CONFIRMATIONS)
    client = ClientKey()
    big = 1000 * PRICE  # ten minutes' worth: beyond the bucket
    gw = await start_payee(w, toy_backend, data, key, **pacing(hold_s=HOLD * 2))
    try:
        for t, stamper in ((terms, w.stamper), (other, stamper_keys[0])):
            # Spend the burst first, then a cheque that must wait.
            first = w.cheque(t, key, 0, DEFAULT_BURST_WEI, stamper=stamper)
            assert (await pay(gw.public_port, client, hexed(w, first)))["result"]["held"] == 0
            cheque = w.cheque(t, key, DEFAULT_BURST_WEI, big, stamper=stamper)
            result = (await pay(gw.public_port, client, hexed(w, cheque)))["result"]
            assert result["held"] == 1000 and result["credited"] == 0, result
        assert await balance_of(gw, client) == 600
    finally:
        await gw.close()
    # Someone proves the second stamper cheated (two overlapping stamps of its own).
    a = w.cheque(other, w.bob, 10**15, 10, stamper=stamper_keys[0])
    b = w.cheque(other, w.carol, 10**15 + 5, 10, stamper=stamper_keys[0])
    w.chain.prove_fraud(w.bob, a, b)
    w.chain.mine(CONFIRMATIONS)
    gw = await start_payee(w, toy_backend, data, key, **pacing(hold_s=HOLD * 2))
    try:
        desk = gw.cheques
        assert desk is not None
        await until(lambda: none_pending(desk), timeout=HOLD * 6)
        # The first stamper's held cheque is credited; the slashed one's withheld.
        assert await balance_of(gw, client) == 600 + 1000
    finally:
        await gw.close()
