"""Two gateway instances on one ledger, with no sticky sessions: every credit rule holds
across them (issue 11 §3), on one SQLite file and on one PostgreSQL database.

Each test starts two real gateways (in-process, their own listeners, stores and verifiers)
on one ledger, in front of one toy backend, and sends a client's requests to either.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.ledger.session_rows import JOB_LIFETIME_S
from rpcpay.testing import ToyBackend
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire.client_id import make_client_id
from rpcpay.wire.rpc import ERROR_DUPLICATE_PAYMENT, ERROR_STALE_CLIENT_ID
from tests.gateway.conftest import access_info, find_nonce, gateway_config, post, rpc
from tests.support.postgres import PostgresCluster, start_postgres

JSON = Any
CREDITS = 50  # gateway_config's credits per share


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresCluster]:
    with start_postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def pair(
    request: pytest.FixtureRequest, toy_backend: ToyBackend, tmp_path: Path
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    """Two instances on one ledger: one SQLite file (one data directory), or one database."""
    if request.param == "sqlite":
        dirs, extra = [tmp_path / "gw", tmp_path / "gw"], {}
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database("gw_" + uuid.uuid4().hex[:12])
        dirs, extra = [tmp_path / "a", tmp_path / "b"], {"ledger_url": url}
    first = await start_gateway(gateway_config(toy_backend.url, dirs[0], **extra))
    # Instances in front of a non-Monero backend share the synthetic jobs' secret (their
    # chain top and seeds derive from it), as an operator copies it to each host.
    if dirs[1] != dirs[0]:
        dirs[1].mkdir(mode=0o700)
        secret = dirs[0] / "synthetic-seed.key"
        (dirs[1] / secret.name).write_bytes(secret.read_bytes())
        (dirs[1] / secret.name).chmod(0o600)
    second = await start_gateway(gateway_config(toy_backend.url, dirs[1], **extra))
    yield first, second
    await second.close()
    await first.close()


async def submit(port: int, client: str, nonce: int, cookie: int) -> JSON:
    body = rpc("rpc_access_submit_nonce", {"client": client, "nonce": nonce, "cookie": cookie})
    _, answer = await post(port, "/json_rpc", body)
    return answer


async def fund(gateway: RunningGateway, key: ClientKey, amount: int) -> int:
    body = rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": amount})
    _, answer = await post(gateway.admin_port, "/json_rpc", body)
    return int(answer["result"]["credits"])


async def until_claimed(gateway: RunningGateway, key: ClientKey, stamp: int) -> None:
    """Wait (bounded) until the ledger holds a claim of ``stamp`` or later for ``key``."""
    for _ in range(10_000):
        account = await gateway.ledger.get(key.public)
        if account is not None and account.last_request_timestamp_us >= stamp:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the first submission never claimed its id")


async def balance(gateway: RunningGateway, key: ClientKey) -> int:
    account = await gateway.ledger.get(key.public)
    return 0 if account is None else account.balance


async def test_a_job_issued_by_one_instance_is_paid_by_the_other(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    key = ClientKey()
    info = await access_info(a.public_port, key)
    nonce = find_nonce(info)
    answer = await submit(b.public_port, key.client_id(), nonce, info["cookie"])
    assert answer["result"]["credits"] == CREDITS, answer
    assert await balance(a, key) == CREDITS
    # B continues A's session: the same job while it is fresh (15 s, one top), else the next
    # cookie with a new job; never a cookie of its own.
    again = await access_info(b.public_port, key)
    assert again["cookie"] in (info["cookie"], info["cookie"] + 1)
    assert (again["cookie"] == info["cookie"]) == (again["hashing_blob"] == info["hashing_blob"])
    # The same nonce to A now: a duplicate, whichever instance credited it.
    answer = await submit(a.public_port, key.client_id(), nonce, info["cookie"])
    assert answer["error"]["code"] == ERROR_DUPLICATE_PAYMENT


async def test_the_same_nonce_sent_to_both_at_once_is_credited_once(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    for round_ in range(3):
        key = ClientKey()
        info = await access_info((a, b)[round_ % 2].public_port, key)
        nonce = find_nonce(info)
        stamp = int(time.time() * 1e6)
        ids = [make_client_id(key.secret, stamp), make_client_id(key.secret, stamp + 1)]
        first = asyncio.create_task(submit(a.public_port, ids[0], nonce, info["cookie"]))
        # B's id is the newer: sent once A has claimed its id (which precedes hashing), both
        # ids are accepted and the two shares race to the nonce check and the booking.
        await until_claimed(b, key, stamp)
        second = await submit(b.public_port, ids[1], nonce, info["cookie"])
        answers = [await first, second]
        paid = [x for x in answers if "result" in x]
        refused = [x for x in answers if "error" in x]
        assert len(paid) == 1 and len(refused) == 1, answers
        assert refused[0]["error"]["code"] == ERROR_DUPLICATE_PAYMENT
        # Credited once; the duplicate's penalty falls on a balance that had the credit, or
        # on none if it was booked first.
        account = await a.ledger.get(key.public)
        assert account is not None
        assert (account.nonces_good, account.nonces_dupe, account.credits_total) == (1, 1, CREDITS)


async def test_a_signed_client_id_is_accepted_by_one_instance_only(
    pair: tuple[RunningGateway, RunningGateway], toy_backend: ToyBackend
) -> None:
    a, b = pair
    key = ClientKey()
    assert await fund(a, key, 100) == 100
    for _ in range(5):
        client = key.client_id()
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": []}
        sent = len(toy_backend.requests)
        answers = await asyncio.gather(
            *(post(g.public_port, "/", body, {"X-Rpc-Client": client}) for g in (a, b))
        )
        assert sorted(status for status, _ in answers) == [200, 402], answers
        assert len(toy_backend.requests) == sent + 1
    assert await balance(b, key) == 95
    # A share's client id too: the replay to the other instance is refused before hashing.
    info = await access_info(a.public_port, key)
    nonce = find_nonce(info)
    client = key.client_id()
    first = await submit(a.public_port, client, nonce, info["cookie"])
    assert "result" in first, first
    replay = await submit(b.public_port, client, nonce + 1, info["cookie"])
    assert replay["error"]["code"] == ERROR_STALE_CLIENT_ID


async def test_concurrent_paid_calls_on_both_never_overdraw(
    pair: tuple[RunningGateway, RunningGateway], toy_backend: ToyBackend
) -> None:
    a, b = pair
    keys = [ClientKey() for _ in range(3)]
    for key in keys:
        assert await fund(a, key, 17) == 17
    sent = len(toy_backend.requests)

    async def call(gateway: RunningGateway, key: ClientKey) -> int:
        client = key.client_id()
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": []}
        status, _ = await post(gateway.public_port, "/", body, {"X-Rpc-Client": client})
        return status

    calls = [call((a, b)[i % 2], keys[i % 3]) for i in range(120)]
    statuses = await asyncio.gather(*calls)
    served = statuses.count(200)
    assert set(statuses) <= {200, 402}
    # Every call served was paid once, and no account went below zero.
    assert len(toy_backend.requests) - sent == served
    spent = 0
    for key in keys:
        account = await b.ledger.get(key.public)
        assert account is not None and account.balance == 17 - account.credits_used
        assert account.balance >= 0 and account.credits_used <= 17
        spent += account.credits_used
    assert spent == served


async def test_a_refund_on_one_instance_is_seen_by_the_other(
    pair: tuple[RunningGateway, RunningGateway], toy_backend: ToyBackend
) -> None:
    a, b = pair
    key = ClientKey()
    assert await fund(a, key, 10) == 10
    toy_backend.failing = True
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": []}
        _, answer = await post(b.public_port, "/", body, {"X-Rpc-Client": key.client_id()})
    finally:
        toy_backend.failing = False
    assert "error" in answer, answer
    account = await a.ledger.get(key.public)
    assert account is not None and (account.balance, account.credits_used) == (10, 0)


async def test_idle_clients_are_forgotten_by_either_instance(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = pair
    idle, rich = ClientKey(), ClientKey()
    # A used client id marks an account even without credit: it is stored, then forgotten.
    stale = make_client_id(idle.secret, int(time.time() * 1e6))
    await post(a.public_port, "/", {"jsonrpc": "2.0", "id": 1, "method": "x"},
               {"X-Rpc-Client": stale})  # fmt: skip
    assert await fund(a, rich, 5) == 5
    await access_info(a.public_port, idle)
    assert await b.ledger.get(idle.public) is not None
    await asyncio.sleep(1.1)
    assert await b.ledger.forget_idle(zero_idle_s=0) == 1
    assert await a.ledger.get(idle.public) is None and await balance(a, rich) == 5
    # Sessions go once their jobs can no longer be paid.
    assert await a.core.payment.sessions.count() == 1
    later = time.time() + JOB_LIFETIME_S + 1
    assert await b.core.payment.sessions.forget_idle(later) == 1
    assert await a.core.payment.sessions.count() == 0
