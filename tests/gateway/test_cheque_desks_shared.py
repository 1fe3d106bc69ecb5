"""Two cheque desks on one database: two gateway processes sharing one ledger (issue 11).

Each desk runs on its own store instance (its own connection pool or SQLite connection, as
a second process would) over one SQLite file or one PostgreSQL database of a private
cluster. A cheque, or one overlapping it, presented to both at once is credited once;
a stamper caught by one is caught by the other; one of them claims a win (real anvil).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.chain import JsonRpcChain, dev_keys
from rpcpay.chain.inprocess import DEV_BALANCE
from rpcpay.gateway.cheque_fraud import CAUGHT_REFRESH_S
from rpcpay.gateway.cheques import ChequeDesk, ChequeRefused, Credited, LotterySettings
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.ledger.shared_ledger import SharedLedger
from rpcpay.ledger.transactional import TransactionalStore
from rpcpay.lottery.cheque import LotteryTerms, StampedCheque, encode_stamped
from rpcpay.lottery.eip712 import cheque_hash, sign_credit
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.gossip import GossipSender
from rpcpay.wallet.keys import ClientKey
from tests.chain.conftest import DEPOSIT, PARAMS, World, _populate, make_world
from tests.gateway.conftest import ToyBackend, gateway_config
from tests.gateway.test_lottery_payee import (
    balance_of,
    hexed,
    lottery_settings,
    pay,
    write_key,
)
from tests.support.anvil import AnvilPool, anvil_pool
from tests.support.ledger_stores import PostgresBackend, SqliteBackend, StoreBackend
from tests.support.postgres import PostgresCluster, start_postgres

__all__ = ["anvil_pool"]

PRICE = 10**12  # wei per credit
VALUE = 10 * PRICE
CONFIRMATIONS = 2
MARGIN = 5


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresCluster]:
    with start_postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    return PostgresBackend(request.getfixturevalue("postgres_cluster"))


def desk_settings(w: World, **changes: Any) -> LotterySettings:
    fields: dict[str, Any] = {
        "contract": w.chain.contract,
        "credit_price_wei": PRICE,
        "min_stamper_deposit": DEPOSIT // 2,
        "reveal_margin": MARGIN,
        "confirmations": CONFIRMATIONS,
        "claim_interval_s": 3600.0,  # the tests drive settle_once
        "burst_wei": 10**30,  # every cheque at once, unless a test paces
    }
    fields.update(changes)
    return LotterySettings(**fields)


@contextlib.asynccontextmanager
async def desks_on(
    backend: StoreBackend,
    w: World,
    key: EthKey,
    chains: list[Any] | None = None,
    **changes: Any,
) -> AsyncIterator[tuple[list[ChequeDesk], SharedLedger]]:
    """Two desks of one payee (``key``) on one fresh ledger location, and a ledger to read."""
    location = backend.fresh()
    stores: list[TransactionalStore] = []
    desks: list[ChequeDesk] = []
    try:
        for i in range(2):
            store = await backend.open(location)
            stores.append(store)
            chain = w.chain if chains is None else chains[i]
            desks.append(
                ChequeDesk(
                    chain,
                    key,
                    store,
                    SharedLedger(store),
                    desk_settings(w, **changes),
                    gossip=GossipSender([]),
                    holder=f"desk-{i}",
                )
            )
        yield desks, SharedLedger(stores[0])
    finally:
        for desk in desks:
            await desk.close()
        for store in stores:
            await store.close()


def open_lottery(w: World, salt: bytes = b"\x01" * 32, reveal_in: int = 30) -> LotteryTerms:
    terms = w.lottery(reveal_in=reveal_in, salt=salt)
    w.chain.mine(CONFIRMATIONS)  # confirmed for the payee
    return terms


async def present(
    desk: ChequeDesk, w: World, client: ClientKey, sc: StampedCheque
) -> Credited | ChequeRefused:
    """``lottery_pay_cheque`` as the desk sees it: the wire form and the payer's account
    signature."""
    sig = sign_credit(w.payer, w.domain, sc.cheque, client.public)
    return await desk.pay(client.public, encode_stamped(w.domain, sc), sig)


async def balance(ledger: SharedLedger, client: ClientKey) -> int:
    account = await ledger.get(client.public)
    return 0 if account is None else account.balance


async def test_a_cheque_presented_to_two_desks_at_once_is_credited_once(
    backend: StoreBackend,
) -> None:
    w = make_world()
    terms = open_lottery(w)
    client = ClientKey()
    async with desks_on(backend, w, w.alice) as ((a, b), ledger):
        for i in range(8):
            sc = w.cheque(terms, w.alice, i * VALUE, VALUE)
            # Alternate who is asked first, so both orders of arrival are seen.
            first, second = (a, b) if i % 2 else (b, a)
            results = await asyncio.gather(
                present(first, w, client, sc), present(second, w, client, sc)
            )
            credited = [r for r in results if isinstance(r, Credited)]
            refused = [r for r in results if isinstance(r, ChequeRefused)]
            assert [r.credited for r in credited] == [10], results
            assert [r.code for r in refused] == ["duplicate"], results
        assert await balance(ledger, client) == 80
        # Presented again later, anywhere: a duplicate.
        again = await present(b, w, client, w.cheque(terms, w.alice, 0, VALUE))
        assert isinstance(again, ChequeRefused) and again.code == "duplicate"
        assert await balance(ledger, client) == 80


async def test_a_held_cheque_is_credited_once_whichever_desk_matures_it(
    backend: StoreBackend,
) -> None:
    """A cheque beyond the bucket is held at one desk; both desks try to mature it (the
    claim loop's sweep does this for a process that died): one credit."""
    w = make_world()
    terms = open_lottery(w)
    client = ClientKey()
    async with desks_on(backend, w, w.alice, burst_wei=VALUE // 2, hold_s=3600.0) as (
        (a, b),
        ledger,
    ):
        sc = w.cheque(terms, w.alice, 0, VALUE)
        held = await present(a, w, client, sc)
        assert isinstance(held, Credited) and (held.credited, held.held) == (0, 10)
        cheque_id = cheque_hash(sc.cheque)
        matured = await asyncio.gather(a.intake.mature(cheque_id), b.intake.mature(cheque_id))
        assert sorted(matured) == [False, True]
        assert await balance(ledger, client) == 10
        assert await b.store.cheques.pending_cheques() == []


async def test_an_overlap_recorded_by_the_other_desk_is_refused_and_catches_the_stamper(
    backend: StoreBackend,
) -> None:
    w = make_world()
    terms = open_lottery(w)
    other = open_lottery(w, salt=b"\x02" * 32)
    client = ClientKey()
    async with desks_on(backend, w, w.alice) as ((a, b), ledger):
        ok = await present(a, w, client, w.cheque(terms, w.alice, 0, VALUE))
        assert isinstance(ok, Credited) and ok.credited == 10
        # The same tickets, stamped again, shown to the other process.
        twice = await present(b, w, client, w.cheque(terms, w.alice, VALUE // 2, VALUE))
        assert isinstance(twice, ChequeRefused) and twice.code == "overlap", twice
        (evidence,) = await b.store.cheques.cheques_with_outcome("evidence")
        assert evidence.client is None
        # The first process learns from the store that the stamper cheated (within
        # CAUGHT_REFRESH_S): its other lottery's cheques are refused there too.
        await asyncio.sleep(CAUGHT_REFRESH_S)
        late = await present(a, w, client, w.cheque(other, w.alice, 0, VALUE))
        assert isinstance(late, ChequeRefused) and late.code == "stamper_slashed", late
        assert await balance(ledger, client) == 10


async def test_the_exposure_rule_counts_lotteries_the_other_desk_opened(
    backend: StoreBackend,
) -> None:
    """The stamper's burnt share (40% of its deposit) covers four prizes. Four lotteries are
    opened at one desk; a fifth, presented at the other desk, whose view of the open
    lotteries is a moment old, is still refused (``stamper_exposure``): the look after the
    cheque is recorded counts what every process stored."""
    w = make_world()
    lotteries = [open_lottery(w, salt=bytes([i + 1]) * 32) for i in range(5)]
    client = ClientKey()
    async with desks_on(backend, w, w.alice) as ((a, b), ledger):
        # b pays first, so its view of the open lotteries is loaded (with one in it) ...
        first = await present(b, w, client, w.cheque(lotteries[0], w.alice, 0, VALUE))
        assert isinstance(first, Credited), first
        # ... then a opens three more, the most the stamper's burnt share covers.
        for terms in lotteries[1:4]:
            ok = await present(a, w, client, w.cheque(terms, w.alice, 0, VALUE))
            assert isinstance(ok, Credited), ok
        fifth = await present(b, w, client, w.cheque(lotteries[4], w.alice, 0, VALUE))
        assert isinstance(fifth, ChequeRefused) and fifth.code == "stamper_exposure", fifth
        assert await balance(ledger, client) == 40
        assert len(await a.store.cheques.open_lotteries()) == 4


SPAN = 40  # credits of ticket space one example's cheques fall in


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cheques=st.lists(
        st.tuples(st.integers(0, SPAN - 1), st.integers(1, 12), st.booleans()),
        min_size=2,
        max_size=6,
    )
)
def test_no_ticket_is_credited_twice_across_two_desks(
    backend: StoreBackend, cheques: list[tuple[int, int, bool]]
) -> None:
    """Any cheques (overlapping or not), each shown to one of two desks, all at once:
    the credited ones share no ticket, the balance is exactly what they paid, and with no
    overlap among them every one is credited."""

    async def scenario() -> None:
        w = make_world()
        terms = open_lottery(w)
        client = ClientKey()
        stamped = [w.cheque(terms, w.alice, s * PRICE, n * PRICE) for s, n, _ in cheques]
        async with desks_on(backend, w, w.alice) as (desks, ledger):
            results = await asyncio.gather(
                *(
                    present(desks[int(second)], w, client, sc)
                    for sc, (_, _, second) in zip(stamped, cheques, strict=True)
                )
            )
            credited = [
                sc.cheque
                for sc, r in zip(stamped, results, strict=True)
                if isinstance(r, Credited) and r.credited
            ]
            # No ticket paid for twice.
            spans = sorted((c.start, c.end) for c in credited)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), (spans, results)
            # Credits are exactly the credited cheques' worth.
            assert await balance(ledger, client) == sum(c.value for c in credited) // PRICE
            # Refusals are the ones overlaps cause.
            codes = {r.code for r in results if isinstance(r, ChequeRefused)}
            assert codes <= {"duplicate", "overlap", "stamper_slashed"}, results
            ranges = [(c.cheque.start, c.cheque.end) for c in stamped]
            disjoint = all(
                a[1] <= b[0] or b[1] <= a[0] for a, b in itertools.combinations(ranges, 2)
            )
            if disjoint:
                assert len(credited) == len(stamped), results

    asyncio.run(scenario())


# -- one claimer -------------------------------------------------------------------------------


@pytest.mark.anvil
async def test_two_desks_on_one_database_send_one_claim(
    backend: StoreBackend, anvil_pool: AnvilPool
) -> None:
    """Both desks see the won lottery and settle at once: exactly one claim transaction is
    sent (the payee's nonce moves by one), the prize arrives once, and both agree it is
    claimed. Each desk has its own connection to the node, as two processes would."""
    node = anvil_pool.fresh(1337)
    keys = dev_keys(8)
    for key in keys:
        node.set_balance(key.address, DEV_BALANCE)
    chain = JsonRpcChain(node.url, chain_id=1337, preflight=False, poll_interval=0.001)
    w = _populate(chain, keys, PARAMS)
    chains = []
    for _ in range(2):
        # No preflight: without the lease the second claim would be sent, and revert.
        own = JsonRpcChain(node.url, chain_id=1337, preflight=False, poll_interval=0.001)
        own.attach(chain.contract)
        chains.append(own)
    terms = open_lottery(w, reveal_in=12)
    client = ClientKey()
    async with desks_on(backend, w, w.alice, chains=chains) as ((a, b), ledger):
        # The payee holds every ticket, half paid at each desk: whatever the draw, it won.
        half = terms.prize // 2
        for desk, start, value in ((a, 0, half), (b, half, terms.prize - half)):
            ok = await present(desk, w, client, w.cheque(terms, w.alice, start, value))
            assert isinstance(ok, Credited), ok
        chain.mine(terms.reveal_block + 1 - chain.block_number())
        nonce = int(
            node.rpc("eth_getTransactionCount", ["0x" + w.alice.address.hex(), "latest"]), 16
        )
        before = chain.balance(w.alice.address)
        await asyncio.gather(a.settle_once(), b.settle_once())
        after_nonce = int(
            node.rpc("eth_getTransactionCount", ["0x" + w.alice.address.hex(), "latest"]), 16
        )
        assert after_nonce == nonce + 1
        receipts = [*a.claims, *b.claims]
        assert len(receipts) == 1
        assert chain.balance(w.alice.address) == before + terms.prize - receipts[0].fee
        outcomes = await a.store.cheques.outcomes()
        assert outcomes == {terms.id: "claimed"} == await b.store.cheques.outcomes()
        # Later rounds, on either, send nothing more.
        await asyncio.gather(a.settle_once(), b.settle_once())
        assert len([*a.claims, *b.claims]) == 1
        assert await balance(ledger, client) == terms.prize // PRICE
    for own in chains:
        own.close()


# -- two whole gateways ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_gateways_on_one_ledger_credit_a_cheque_once(
    engine: str, request: pytest.FixtureRequest, toy_backend: ToyBackend, tmp_path: Path
) -> None:
    """``rpcpay serve`` twice on one ledger (one SQLite data directory, or one PostgreSQL
    database with ``--ledger-url``), one payee key: a cheque sent to both at once over
    HTTP is credited once, an overlapping pair sent at once is credited at most once, and
    both gateways show the same balance."""
    w = make_world()
    terms = open_lottery(w)
    extra: dict[str, Any] = {}
    if engine == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        extra["ledger_url"] = cluster.create_database("gw_" + uuid.uuid4().hex[:12])
    gateways: list[RunningGateway] = []
    try:
        for name in ("a", "b"):
            # SQLite: one data directory (its ledger file); PostgreSQL: one database.
            data = tmp_path / ("gw" if engine == "sqlite" else name)
            settings = lottery_settings(w, write_key(data / "lottery.key", w.alice))
            config = gateway_config(toy_backend.url, data, lottery=settings, **extra)
            gateways.append(await start_gateway(config, lottery_chain=w.chain))
        client = ClientKey()
        cheque = hexed(w, w.cheque(terms, w.alice, 0, VALUE))
        answers = await asyncio.gather(*(pay(gw.public_port, client, cheque) for gw in gateways))
        assert sorted("result" in a for a in answers) == [False, True], answers
        (refused,) = [a for a in answers if "error" in a]
        assert refused["error"]["message"].startswith("duplicate:"), refused
        # Two different cheques for the same tickets, one to each gateway, at once.
        pair = [w.cheque(terms, w.alice, VALUE, VALUE), w.cheque(terms, w.alice, VALUE + 1, VALUE)]
        answers = await asyncio.gather(
            *(
                pay(gw.public_port, client, hexed(w, sc))
                for gw, sc in zip(gateways, pair, strict=True)
            )
        )
        assert sum("result" in a for a in answers) <= 1, answers
        expected = 10 + 10 * sum("result" in a for a in answers)
        assert [await balance_of(gw, client) for gw in gateways] == [expected, expected]
    finally:
        for gw in gateways:
            await gw.close()
