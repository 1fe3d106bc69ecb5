"""The stamper over HTTP, on the in-process chain and on anvil: stamps, fees, refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rpcpay.chain.settlement import SettlementChain
from rpcpay.errors import ChainError, StampStoreError
from rpcpay.lottery.cheque import Cheque, LotteryTerms, StampedCheque
from rpcpay.lottery.eip712 import recover_stamper, sign_cheque, sign_stamp
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.rules import Accepted, PayeePolicy, check_cheque
from rpcpay.lottery.stamper import StamperPolicy, StampRecord, StampRequest, fee_cheque
from rpcpay.lottery.stamper_server import RunningStamper, StamperConfig, start_stamper
from rpcpay.lottery.stamper_store import SqliteStampStore
from rpcpay.lottery.stamper_wire import request_to_json, result_from_json
from tests.chain.conftest import MakeWorld, World, anvil_pool, make_world, new_world

__all__ = ["anvil_pool", "new_world"]  # fixtures, shared with tests/chain

CONFIRMATIONS = 2
MARGIN = 5
PRIZE = 10**6


@dataclass
class Stamper:
    world: World
    running: RunningStamper
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    @property
    def policy(self) -> StamperPolicy:
        return self.running.service.policy

    def open_lottery(
        self, prize: int = PRIZE, salt: bytes = b"\x01" * 32, **kw: Any
    ) -> LotteryTerms:
        """A lottery naming the stamper, confirmed, revealing well after the margin."""
        terms = self.world.lottery(prize=prize, reveal_in=30, salt=salt, **kw)
        self.world.chain.mine(CONFIRMATIONS)
        return terms

    def request(
        self,
        terms: LotteryTerms,
        start: int,
        value: int,
        payer: EthKey | None = None,
        recipient: EthKey | None = None,
    ) -> StampRequest:
        """What an honest payer sends: its cheque, and the fee cheque's signature."""
        w = self.world
        c = Cheque(terms.id, (recipient or w.alice).address, start, value)
        fee = fee_cheque(self.policy, c)
        payer = payer or w.payer
        return StampRequest(
            c,
            sign_cheque(payer, w.domain, c),
            None if fee is None else sign_cheque(payer, w.domain, fee),
        )

    async def post(self, body: Any, path: str = "/stamp") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(self.url + path, data=data) as response:
            return response.status, await response.json()

    async def stamp(self, request: StampRequest) -> tuple[int, Any]:
        return await self.post(request_to_json(request))

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path) as response:
            return response.status, await response.json()


async def _start(world: World, data_dir: Path, chain: SettlementChain | None = None,
                 store: Any = None, fee_bps: int = 100) -> RunningStamper:  # fmt: skip
    config = StamperConfig(
        bind_port=0, data_dir=data_dir, confirmations=CONFIRMATIONS, reveal_margin=MARGIN,
        fee_bps=fee_bps,
    )  # fmt: skip
    return await start_stamper(config, chain or world.chain, world.stamper, store)


@pytest.fixture
async def stamper(new_world: MakeWorld, tmp_path: Path) -> AsyncIterator[Stamper]:
    world = new_world()
    running = await _start(world, tmp_path)
    async with aiohttp.ClientSession() as session:
        yield Stamper(world, running, session)
    await running.close()


async def test_stamps_with_fee_and_cursor_and_payees_accept_them(stamper: Stamper) -> None:
    w = stamper.world
    status, info = await stamper.get("/info")
    assert status == 200 and info["fee_bps"] == 100 and info["confirmations"] == CONFIRMATIONS
    assert info["stamper"].lower() == "0x" + w.stamper.address.hex()
    assert info["chain_id"] == w.chain.chain_id
    terms = stamper.open_lottery()
    cursor, issued = 0, []
    for value in (1000, 1, 12345):
        status, body = await stamper.stamp(stamper.request(terms, cursor, value))
        assert status == 200, body
        domain, sc, next_start = result_from_json(body)
        assert domain == w.domain and sc.cheque.start == cursor and sc.cheque.value == value
        fee = -(-value // 100)
        assert next_start == cursor + value + fee
        assert body["fee"] == {"start": str(cursor + value), "value": str(fee),
                               "stamp": body["fee"]["stamp"]}  # fmt: skip
        fee_c = Cheque(terms.id, w.stamper.address, cursor + value, fee)
        assert recover_stamper(w.domain, fee_c, bytes.fromhex(body["fee"]["stamp"][2:])) == (
            w.stamper.address
        )
        issued.append(sc)
        cursor = next_start
    # The payee's own checks accept every stamped cheque, each once.
    head = w.chain.block_number()
    lottery = w.chain.lottery(terms.id, block=head - CONFIRMATIONS)
    own = w.chain.stamper(w.stamper.address, block=head - CONFIRMATIONS)
    policy = PayeePolicy(
        w.alice.address, w.domain, min_stamper_deposit=10**17, reveal_margin=MARGIN
    )
    held: list[Cheque] = []
    for sc in issued:
        verdict = check_cheque(w.domain, sc, policy, lottery, own, head, held)
        assert isinstance(verdict, Accepted) and verdict.value == sc.cheque.value
        held.append(sc.cheque)
    status, usage = await stamper.get(f"/lottery/0x{terms.id.hex()}")
    assert status == 200
    assert usage == {"lottery": "0x" + terms.id.hex(), "stamped": str(cursor),
                     "next_start": str(cursor)}  # fmt: skip


async def test_refusals_are_clear_and_stamp_nothing(stamper: Stamper) -> None:
    w = stamper.world
    terms = stamper.open_lottery()
    w.chain.deposit_stamper(w.carol, 10**18)
    theirs = stamper.open_lottery(salt=b"\x02" * 32, stamper=w.carol)
    young = w.lottery(prize=PRIZE, reveal_in=30, salt=b"\x03" * 32)  # not confirmed yet
    good = stamper.request(terms, 0, 1000)
    bad_fee = StampRequest(good.cheque, good.payer_sig, sign_cheque(w.payer, w.domain, good.cheque))
    cases: list[tuple[Any, int, str, str]] = [
        (request_to_json(stamper.request(terms, 0, 1000, payer=w.mallory)), 422,
         "bad_payer_signature", "not signed by the lottery's payer"),
        (request_to_json(bad_fee), 422, "bad_fee_signature", "Cheque(lottery, recipient="),
        (request_to_json(stamper.request(theirs, 0, 10)), 422, "wrong_stamper", "another stamper"),
        (request_to_json(stamper.request(young, 0, 10)), 422, "unknown_lottery", "too young"),
        (request_to_json(stamper.request(terms, PRIZE - 100, 100)), 422, "range_outside",
         f"[0, {PRIZE})"),
        (request_to_json(stamper.request(terms, 0, 0)), 422, "empty_range", "value 0"),
        (b"{not json", 400, "malformed", "Expecting"),
        ({**request_to_json(good), "start": "-1"}, 400, "malformed", "start must be a decimal"),
        ({**request_to_json(good), "lottery": "0x12"}, 400, "malformed", "lottery must be 0x"),
        ([1, 2], 400, "malformed", "JSON object"),
    ]  # fmt: skip
    for body, status, code, message in cases:
        got, answer = await stamper.post(body)
        assert (got, answer["error"]["code"]) == (status, code), answer
        assert message in answer["error"]["message"]
    assert (await stamper.get(f"/lottery/0x{terms.id.hex()}"))[1]["stamped"] == "0"
    # Now stamp, then try every way of taking those tickets again.
    status, first = await stamper.stamp(good)
    assert status == 200
    for start, value in ((0, 1000), (500, 10), (999, 5), (1005, 1)):  # 1000..1010 is the fee
        status, answer = await stamper.stamp(stamper.request(terms, start, value, recipient=w.bob))
        assert (status, answer["error"]["code"]) == (409, "overlap")
        assert "stamped ranges end at 1010" in answer["error"]["message"]
    # The same request again is a retry: the same stamps, nothing new stored.
    status, again = await stamper.stamp(good)
    assert status == 200 and again["repeat"] is True and again["stamp"] == first["stamp"]
    # Too late: within the reveal margin of the newest head.
    w.chain.mine(terms.reveal_block - MARGIN - w.chain.block_number())
    status, answer = await stamper.stamp(stamper.request(terms, 2000, 10))
    assert (status, answer["error"]["code"]) == (422, "reveal_too_close")
    assert f"until block {terms.reveal_block - MARGIN - 1}" in answer["error"]["message"]
    assert (await stamper.get(f"/lottery/0x{terms.id.hex()}"))[1]["stamped"] == "1010"
    # Routes.
    assert (await stamper.get("/stamp"))[0] == 405
    assert (await stamper.get("/nowhere"))[0] == 404
    assert (await stamper.get("/lottery/0x1234"))[0] == 400


async def test_concurrent_requests_for_the_same_tickets_get_one_stamp(stamper: Stamper) -> None:
    import asyncio

    w = stamper.world
    terms = stamper.open_lottery()
    people = [w.alice, w.bob, w.carol, w.mallory]
    answers = await asyncio.gather(
        *(stamper.stamp(stamper.request(terms, 10 * i, 50, recipient=p))
          for i, p in enumerate(people))
    )  # fmt: skip
    assert sorted(status for status, _ in answers) == [200, 409, 409, 409]
    assert (await stamper.get(f"/lottery/0x{terms.id.hex()}"))[1]["stamped"] == "51"


async def test_a_slashed_stamper_stops_stamping(tmp_path: Path) -> None:
    w = make_world()
    running = await _start(w, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            s = Stamper(w, running, session)
            terms = s.open_lottery()
            assert (await s.stamp(s.request(terms, 0, 10)))[0] == 200
            # Someone holds two overlapping cheques the key stamped (a leaked key, say).
            a, b = (Cheque(terms.id, k.address, 0, 5) for k in (w.bob, w.carol))
            stamped = [
                StampedCheque(
                    c, sign_cheque(w.payer, w.domain, c), sign_stamp(w.stamper, w.domain, c)
                )
                for c in (a, b)
            ]
            w.chain.prove_fraud(w.bob, *stamped)
            status, answer = await s.stamp(s.request(terms, 100, 10))
            assert (status, answer["error"]["code"]) == (422, "stamper_inactive")
    finally:
        await running.close()


class _FailingStore(SqliteStampStore):
    def stamp(self, prize: int, records: Any) -> Any:
        raise StampStoreError("disk full")


class _FlakyChain:
    """The in-process chain, until the test pulls the plug."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.chain, name)
        if self.down and callable(attr):

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise ChainError("connection refused")

            return fail
        return attr


@pytest.mark.parametrize("breaks", ["store", "chain"])
async def test_failures_answer_503_and_never_a_stamp(tmp_path: Path, breaks: str) -> None:
    w = make_world()
    chain = _FlakyChain(w.chain)
    store = None
    if breaks == "store":
        store = _FailingStore(tmp_path / "s.sqlite3", w.domain, w.stamper.address)
    running = await _start(w, tmp_path, chain=chain, store=store)  # type: ignore[arg-type]
    try:
        async with aiohttp.ClientSession() as session:
            s = Stamper(w, running, session)
            terms = s.open_lottery()
            chain.down = breaks == "chain"
            status, answer = await s.stamp(s.request(terms, 0, 10))
            assert status == 503 and "stamp" not in answer
            assert answer["error"]["message"].endswith("nothing was stamped")
    finally:
        await running.close()


async def test_zero_fee_stamper_needs_no_fee_cheque(tmp_path: Path) -> None:
    w = make_world()
    running = await _start(w, tmp_path, fee_bps=0)
    try:
        async with aiohttp.ClientSession() as session:
            s = Stamper(w, running, session)
            terms = s.open_lottery()
            status, body = await s.stamp(s.request(terms, 0, 10))
            assert status == 200 and body["fee"] is None and body["next_start"] == "10"
    finally:
        await running.close()


def test_stamp_record_ids_are_cheque_hashes() -> None:
    from rpcpay.lottery.eip712 import cheque_hash

    c = Cheque(b"\x01" * 32, b"\x02" * 20, 3, 4)
    assert StampRecord(c, b"", b"", False, 0).cheque_id == cheque_hash(c)
