"""The lottery payer against the in-process chain, a real stamper service, and a gateway double.

``Gateway`` below is a **test double for the gateway only**, so that the payer's own rules
(rotation, refunds, crashes) are tested fast and in isolation: it answers
``lottery_pay_cheque`` and ``lottery_info`` as the gateway does, checking each cheque with
the payee's real rule (``rules.check_cheque``, chain state read at the confirmed block)
and recording what it was sent; ``announce=False`` makes it a server without
``lottery_info``. The chain (py-evm) and the stamper (``start_stamper``, SQLite store) are
the real ones. tests/acceptance/test_lottery_payer_e2e.py pays real gateways.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.lottery.cheque import Cheque, Domain, decode_stamped
from rpcpay.lottery.rules import Accepted, PayeePolicy, check_account_signature, check_cheque
from rpcpay.lottery.stamper_server import RunningStamper, StamperConfig, start_stamper
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.lottery_payer import (
    GATEWAY_REFUSAL,
    LotteryPayer,
    ServerSpec,
    StamperInfo,
    cheque_value,
    choose_lottery,
    is_refundable,
    needs_new_lottery,
    plan_cheque,
)
from rpcpay.wallet.lottery_payer_fit import GatewayTerms, credit_value, stricter_terms
from rpcpay.wallet.lottery_payer_state import LotteryStatus, PayerLottery, PayerStateFile
from rpcpay.wire.client_id import verify_client_id
from tests.chain.conftest import World, make_world

CONFIRMATIONS = 2
MARGIN = 5
PRICE = 6_000  # wei per minute: 100 wei per 1-second interval
INTERVAL = 1.0
PRIZE = 10**6
REVEAL_BLOCKS = 40  # the test contract's max_reveal_delay


@dataclass
class Gateway:
    """Test double of the gateway's ``lottery_pay_cheque`` (see the module docstring)."""

    world: World
    recipient: bytes
    credit_price: int = 1
    announce: bool = True
    chain_id: int | None = None  # announce another chain
    min_deposit: int = 0
    margin: int = MARGIN - 1  # the reveal margin it announces
    received: list[tuple[str, bytes]] = field(default_factory=list)
    held: list[Cheque] = field(default_factory=list)
    credited: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["method"] == "lottery_info":
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], **self.info()})
        assert body["method"] == "lottery_pay_cheque"
        client, wire = body["params"]["client"], bytes.fromhex(body["params"]["cheque"])
        assert len(client) == 208
        self.received.append((client, wire))
        domain, sc = decode_stamped(wire)
        chain = self.world.chain
        head = chain.block_number()
        confirmed = head - CONFIRMATIONS
        policy = PayeePolicy(self.recipient, chain.domain, 10**17, reveal_margin=MARGIN - 1,
                             min_value=self.credit_price)  # fmt: skip
        verdict = check_cheque(
            domain, sc, policy, chain.lottery(sc.cheque.lottery, block=confirmed),
            chain.stamper(self.world.stamper.address, block=confirmed), head, self.held,
        )  # fmt: skip
        lottery = chain.lottery(sc.cheque.lottery, block=confirmed)
        # The payer signed which account the cheque pays for, as the real gateway checks.
        if isinstance(verdict, Accepted) and lottery is not None:
            auth = verify_client_id(client, time.time_ns() // 1000)
            assert auth is not None
            account = auth.public_key
            sig = bytes.fromhex(body["params"]["account_sig"])
            verdict = check_account_signature(domain, sc, lottery, account, sig) or verdict
        if not isinstance(verdict, Accepted):
            error = {"code": GATEWAY_REFUSAL, "message": verdict.reason.value}
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})
        self.held.append(sc.cheque)
        self.credited += verdict.value // self.credit_price
        result = {"status": "OK", "credited": verdict.value // self.credit_price,
                  "credits": self.credited,
                  "top_hash": "", "untrusted": False}  # fmt: skip
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

    def info(self) -> dict[str, Any]:
        """The gateway's ``lottery_info`` answer, or its -32601 when ``announce`` is off."""
        if not self.announce:
            return {"error": {"code": -32601, "message": "Method not found"}}
        domain = self.world.chain.domain
        result = {"recipient": "0x" + self.recipient.hex(),
                  "chain_id": domain.chain_id if self.chain_id is None else self.chain_id,
                  "contract": "0x" + domain.contract.hex(),
                  "credit_price_wei": str(self.credit_price),
                  "min_stamper_deposit": str(self.min_deposit), "reveal_margin": self.margin,
                  "confirmations": CONFIRMATIONS, "status": "OK"}  # fmt: skip
        return {"result": result}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/json_rpc", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    @property
    def spec(self) -> ServerSpec:
        return ServerSpec(f"http://127.0.0.1:{self.port}", self.recipient, PRICE)


@dataclass
class Setup:
    world: World
    stamper: RunningStamper
    gateways: list[Gateway]
    session: aiohttp.ClientSession
    tmp: Path
    client: ClientKey = field(default_factory=ClientKey)

    @property
    def stamper_url(self) -> str:
        return f"http://127.0.0.1:{self.stamper.port}"

    def payer(
        self, state: Path | None = None, servers: list[ServerSpec] | None = None
    ) -> LotteryPayer:
        return LotteryPayer(
            self.world.chain, self.world.payer, PayerStateFile(state or self.tmp / "payer.json"),
            self.stamper_url, servers or [g.spec for g in self.gateways], self.client,
            self.session, interval=INTERVAL, prize=PRIZE, reveal_blocks=REVEAL_BLOCKS,
        )  # fmt: skip

    def stamped_ranges(self) -> list[Cheque]:
        """Every cheque the stamper ever stamped (payments and fees), from its store."""
        store = self.stamper.service.store
        ids = {lot for g in self.gateways for lot in (c.lottery for c in g.held)}
        return [r.cheque for lot in ids for r in store.records(lot)]


async def _setup(tmp: Path) -> AsyncIterator[Setup]:
    world = make_world()
    config = StamperConfig(bind_port=0, data_dir=tmp / "stamper", confirmations=CONFIRMATIONS,
                           reveal_margin=MARGIN)  # fmt: skip
    running = await start_stamper(config, world.chain, world.stamper)
    gateways = [Gateway(world, k.address) for k in (world.alice, world.bob, world.carol)]
    for g in gateways:
        await g.start()
    async with aiohttp.ClientSession() as session:
        yield Setup(world, running, gateways, session, tmp)
    for g in gateways:
        assert g.runner is not None
        await g.runner.cleanup()
    await running.close()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async for s in _setup(tmp_path):
        yield s


def _disjoint(cheques: list[Cheque]) -> bool:
    by_lottery: dict[bytes, list[Cheque]] = {}
    for c in cheques:
        by_lottery.setdefault(c.lottery, []).append(c)
    for group in by_lottery.values():
        group.sort(key=lambda c: c.start)
        if any(a.end > b.start for a, b in itertools.pairwise(group)):
            return False
    return True


async def test_pays_every_server_each_round_with_cheques_the_payee_accepts(setup: Setup) -> None:
    payer = setup.payer()
    first = await payer.pay_round()  # creates the lottery; not confirmed yet: nothing paid
    assert len(first.created) == 1
    assert {d.outcome for d in first.deliveries} == {"failed"}
    assert all("no confirmed lottery" in d.message for d in first.deliveries)
    setup.world.chain.mine(CONFIRMATIONS)
    for _ in range(3):
        report = await payer.pay_round()
        assert [d.outcome for d in report.deliveries] == ["paid"] * 3, report
        assert not report.created
        setup.world.chain.mine(1)
    value = cheque_value(PRICE, INTERVAL)
    assert value == 100
    for g in setup.gateways:
        assert len(g.received) == 3 and g.credited == 3 * value
        assert all(c.value == value and c.recipient == g.recipient for c in g.held)
    # Fee cheques (1 wei each at 1%) sit right after each payment; nothing overlaps.
    stamped = setup.stamped_ranges()
    assert len(stamped) == 18 and _disjoint(stamped)
    saved = PayerStateFile(setup.tmp / "payer.json").load()
    assert saved is not None
    (lottery,) = saved.lotteries
    assert lottery.cursor == max(c.end for c in stamped) == 9 * (value + 1)
    assert (setup.tmp / "payer.json").stat().st_mode & 0o777 == 0o600
    assert payer.paid_value == 9 * value and payer.paid_fees == 9
    assert "round 4: last round 3/3 paid; paid 900 wei + fees 9 wei" in payer.progress_line()


async def test_cursor_is_on_disk_before_each_stamp_request(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    payer = setup.payer()
    await payer.pay_round()
    setup.world.chain.mine(CONFIRMATIONS)
    seen: list[tuple[int, int]] = []
    original = payer._post_stamp

    async def spy(request: Any) -> tuple[int, Any]:
        on_disk = PayerStateFile(setup.tmp / "payer.json").load()
        assert on_disk is not None
        (lottery,) = on_disk.lotteries
        seen.append((request.cheque.end + 1, lottery.cursor))  # +1: the fee cheque
        return await original(request)

    monkeypatch.setattr(payer, "_post_stamp", spy)
    await payer.pay_round()
    assert len(seen) == 3 and all(end <= cursor for end, cursor in seen)


async def test_restart_continues_after_the_saved_cursor(setup: Setup) -> None:
    payer = setup.payer()
    await payer.pay_round()
    setup.world.chain.mine(CONFIRMATIONS)
    await payer.pay_round()
    again = setup.payer()  # a new process reading the same file
    report = await again.pay_round()
    assert [d.outcome for d in report.deliveries] == ["paid"] * 3
    assert _disjoint(setup.stamped_ranges())


class Crash(BaseException):
    """Stands for the process dying (a BaseException, so nothing in the payer catches it)."""


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(["pay", "die_before_send", "die_after_stamp", "restart",
                                 "mine"]), min_size=3, max_size=10))  # fmt: skip
async def test_no_crash_or_restart_ever_reuses_a_ticket(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str]
) -> None:
    async for s in _setup(tmp_path_factory.mktemp("crash")):
        payer = s.payer()
        await payer.pay_round()
        s.world.chain.mine(CONFIRMATIONS)
        refusals: list[str] = []
        for step in steps:
            if step == "restart":
                payer = s.payer()
            elif step == "mine":
                s.world.chain.mine(1)
            elif step == "pay":
                report = await payer.pay_round()
                refusals += [d.message for d in report.deliveries if d.outcome != "paid"]
            else:
                real = payer._post_stamp

                async def dying(request: Any, real: Any = real, step: str = step) -> Any:
                    if step == "die_after_stamp":
                        await real(request)  # stamped, but the answer never arrives
                    raise Crash

                payer._post_stamp = dying  # type: ignore[method-assign]
                with pytest.raises(Crash):
                    await payer.pay_round()
                payer = s.payer()  # the process restarts from its file
        # The stamper never saw the payer reuse a ticket, and nothing it stamped overlaps.
        assert not [m for m in refusals if "overlap" in m], refusals
        stamped = [r.cheque for lot in (x.id for x in payer.state.lotteries)
                   for r in s.stamper.service.store.records(lot)]  # fmt: skip
        assert _disjoint(stamped)
        saved = PayerStateFile(s.tmp / "payer.json").load()
        assert saved is not None
        for lottery in saved.lotteries:
            ends = [c.end for c in stamped if c.lottery == lottery.id]
            assert lottery.cursor >= max(ends, default=0)


async def test_rotates_before_the_reveal_margin_and_refunds_after_the_window(
    setup: Setup,
) -> None:
    w = setup.world
    payer = setup.payer(servers=[setup.gateways[0].spec])
    await payer.pay_round()
    w.chain.mine(CONFIRMATIONS)
    (first,) = payer.state.lotteries
    created: list[bytes] = []
    paid = 0
    # Round after round, one block apart, until well past the first lottery's reveal.
    while w.chain.block_number() < first.terms.reveal_block + 5:
        report = await payer.pay_round()
        created += report.created
        paid += sum(d.outcome == "paid" for d in report.deliveries)
        assert [d.outcome for d in report.deliveries] == ["paid"], report
        w.chain.mine(1)
    # A second lottery was made early enough that no round went unpaid.
    assert len(created) == 1 and paid > 30
    second = payer.state.find(created[0])
    assert second is not None and second.created_block < first.terms.reveal_block - MARGIN
    # Nobody claims (the double does not): after the redeem window the prize comes back.
    params = w.chain.params()
    w.chain.mine(first.terms.reveal_block + params.redeem_blocks + 1 - w.chain.block_number())
    report = await payer.pay_round()
    assert report.refunded == [first.id]
    assert payer.state.find(first.id).status is LotteryStatus.REFUNDED  # type: ignore[union-attr]
    assert w.chain.lottery(first.id).refunded  # type: ignore[union-attr]
    assert (await payer.pay_round()).refunded == []  # once


async def test_gateway_refusal_and_unreachable_server_are_reported(setup: Setup) -> None:
    w = setup.world
    dead = ServerSpec("http://127.0.0.1:9", w.alice.address, PRICE)
    # A server without lottery_info: the typed-in (wrong) address is used, and refused.
    setup.gateways[0].announce = False
    wrong = ServerSpec(setup.gateways[0].spec.url, w.mallory.address, PRICE)  # not its address
    payer = setup.payer(servers=[dead, wrong])
    await payer.pay_round()
    w.chain.mine(CONFIRMATIONS)
    report = await payer.pay_round()
    outcomes = {d.server: (d.outcome, d.message) for d in report.deliveries}
    assert outcomes[dead.url][0] == "failed" and "unreachable" in outcomes[dead.url][1]
    assert outcomes[wrong.url] == ("refused", f"server: wrong_recipient (code {GATEWAY_REFUSAL})")
    assert payer.failures == 4  # two in the unconfirmed first round, two now
    assert setup.gateways[0].credited == 0


async def test_a_file_for_another_chain_or_payer_is_refused(setup: Setup) -> None:
    payer = setup.payer()
    await payer.pay_round()
    from rpcpay.errors import ConfigError

    with pytest.raises(ConfigError, match="belongs to payer"):
        LotteryPayer(
            setup.world.chain, setup.world.bob, PayerStateFile(setup.tmp / "payer.json"),
            setup.stamper_url, [], setup.client, setup.session,
        )  # fmt: skip
    path = setup.tmp / "payer.json"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        PayerStateFile(path).load()
    path.chmod(0o600)
    doc = json.loads(path.read_text())
    doc["lotteries"][0]["prize"] = "5"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="does not match its terms"):
        PayerStateFile(path).load()


# --- the pure rules ----------------------------------------------------------------------------
def _info(world: World) -> StamperInfo:
    return StamperInfo(world.stamper.address, world.chain.domain, 100, MARGIN, CONFIRMATIONS)


def test_rules_choose_rotate_and_refund() -> None:
    w = make_world()
    info = _info(w)
    terms = w.lottery(prize=1000, reveal_in=30)
    lot = PayerLottery(terms, cursor=0, created_block=terms.reveal_block - 31)
    born = lot.created_block
    # Not before it is confirmed; not within the margin; not once the tickets run out.
    assert choose_lottery([lot], born + CONFIRMATIONS - 1, info, 10) is None
    assert choose_lottery([lot], born + CONFIRMATIONS, info, 10) == lot
    assert choose_lottery([lot], terms.reveal_block - MARGIN - 1, info, 10) == lot
    assert choose_lottery([lot], terms.reveal_block - MARGIN, info, 10) is None
    assert choose_lottery([PayerLottery(terms, 995, born)], born + 5, info, 10) is None
    assert choose_lottery([PayerLottery(terms, 0, born, LotteryStatus.RETIRED)], born + 5, info,
                          10) is None  # fmt: skip
    # A new lottery is due once the open one would be unusable before a new one confirms.
    lead = CONFIRMATIONS + 5 + MARGIN
    assert not needs_new_lottery([lot], terms.reveal_block - lead - 1, info, 10)
    assert needs_new_lottery([lot], terms.reveal_block - lead, info, 10)
    assert needs_new_lottery([], 0, info, 10)
    # Refund only after the window, and never twice.
    assert not is_refundable(lot, terms.reveal_block + 20, 20)
    assert is_refundable(lot, terms.reveal_block + 21, 20)
    assert not is_refundable(PayerLottery(terms, 0, born, LotteryStatus.REFUNDED), 10**9, 20)
    # The plan: the cheque at the cursor, the fee right after it, the cursor past both.
    plan = plan_cheque(PayerLottery(terms, 7, born), w.alice.address, 250, info.policy)
    assert (plan.cheque.start, plan.cheque.value) == (7, 250)
    assert plan.fee is not None and (plan.fee.start, plan.fee.value) == (257, 3)
    assert plan.next_cursor == 260
    assert cheque_value(100 * 10**9, 60) == 100 * 10**9
    assert cheque_value(100 * 10**9, 1) == 100 * 10**9 // 60
    assert cheque_value(1, 1) == 1


# --- meeting the gateway: lottery_info ---------------------------------------------------------
async def test_address_and_credit_price_come_from_lottery_info(setup: Setup) -> None:
    for g, credit in zip(setup.gateways, (1, 30, 250), strict=True):
        g.credit_price = credit
    servers = [ServerSpec(g.spec.url, None, PRICE) for g in setup.gateways]
    payer = setup.payer(servers=servers)
    lines = await payer.prepare()
    assert "a cheque of 90 wei = 3 credits of 30 wei every 1 s" in lines[2], lines
    await payer.pay_round()
    setup.world.chain.mine(CONFIRMATIONS)
    outcomes = []
    for _ in range(2):
        report = await payer.pay_round()
        outcomes.append([d.outcome for d in report.deliveries])
    # Issue 9: the payer sets its prices. 100 wei an interval: exact at 1 wei a credit,
    # rounded down to 3 credits at 30; at 250 a credit it waits until 250 are owed (the
    # third interval) and never pays more than it owes (it used to round up to 250).
    assert outcomes == [["paid", "paid", "waiting"], ["paid", "paid", "paid"]], outcomes
    assert [[c.value for c in g.held] for g in setup.gateways] == [[100] * 2, [90] * 2, [250]]
    assert [g.credited for g in setup.gateways] == [200, 6, 1]
    assert [c.recipient for g in setup.gateways for c in g.held] == [
        g.recipient for g in setup.gateways for _ in range(len(g.held))
    ]


async def dropped(setup: Setup, server: ServerSpec) -> str:
    """Issue 9: a gateway that does not fit is dropped with a clear message, each round,
    and never stops the payer (it used to raise ConfigError for all servers)."""
    (delivery,) = (await setup.payer(servers=[server]).pay_round()).deliveries
    assert delivery.outcome == "dropped", delivery
    return delivery.message


async def test_a_gateway_that_does_not_fit_is_refused_clearly(setup: Setup) -> None:
    gateway = setup.gateways[0]
    unnamed = ServerSpec(gateway.spec.url, None, PRICE)
    gateway.chain_id = 99
    assert re.search("settles on chain 99, contract 0x", await dropped(setup, unnamed))
    gateway.chain_id = None
    wrong = ServerSpec(gateway.spec.url, setup.world.mallory.address, PRICE)
    assert re.search("but the gateway says it is 0x", await dropped(setup, wrong))
    gateway.min_deposit = 10**30
    assert re.search(r"at least 10{30} wei deposited", await dropped(setup, unnamed))
    # No lottery_info and no address: nothing to pay, said each round, nothing stamped.
    gateway.announce = False
    payer = setup.payer(servers=[unnamed])
    (delivery,) = (await payer.pay_round()).deliveries
    assert delivery.outcome == "failed" and "give its payee address" in delivery.message
    assert gateway.received == []


async def test_a_greedy_or_hostile_gateway_is_dropped_and_the_others_are_paid(
    setup: Setup,
) -> None:
    """Issue 9: a gateway selling a credit for 200,000 wei to a payer paying 100 wei an
    interval (it used to take 200,000 wei an interval, 2,000x) and one announcing a reveal
    margin of 10^9 blocks (it used to stop every payment) are dropped; the third is paid
    its price every interval."""
    greedy, hostile, fair = setup.gateways
    greedy.credit_price = 200_000
    hostile.margin = 10**9
    payer = setup.payer(servers=[ServerSpec(g.spec.url, None, PRICE) for g in setup.gateways])
    await payer.pay_round()
    setup.world.chain.mine(CONFIRMATIONS)
    for _ in range(3):
        report = await payer.pay_round()
        outcomes = [d.outcome for d in report.deliveries]
        assert outcomes == ["dropped", "dropped", "paid"], report
    messages = [d.message for d in report.deliveries]
    assert "sells a credit for 200000 wei" in messages[0], messages
    assert "reveal margin of 1000000000" in messages[1], messages
    assert greedy.received == [] and hostile.received == []
    assert [c.value for c in fair.held] == [100] * 4 or [c.value for c in fair.held] == [100] * 3


async def test_the_stricter_confirmations_of_a_gateway_are_waited_for(setup: Setup) -> None:
    payer = setup.payer(servers=[setup.gateways[0].spec])
    await payer.prepare()
    strict = payer.gateways[setup.gateways[0].spec.url]
    payer.gateways[strict_url := setup.gateways[0].spec.url] = replace(strict, confirmations=6)
    await payer.pay_round()
    setup.world.chain.mine(CONFIRMATIONS)  # enough for the stamper, not for this gateway
    (early,) = (await payer.pay_round()).deliveries
    assert early.outcome == "failed" and "no confirmed lottery" in early.message
    setup.world.chain.mine(6)
    (late,) = (await payer.pay_round()).deliveries
    assert late.outcome == "paid" and late.server == strict_url


def test_server_flag_forms_and_the_value_rule() -> None:
    from rpcpay.wallet.lottery_payer_commands import parse_server

    addr = "0x" + "ab" * 20
    assert parse_server("http://h:1") == ServerSpec("http://h:1", None)
    assert parse_server("http://h:1,7") == ServerSpec("http://h:1", None, 7)
    assert parse_server(f"http://h:1,{addr}") == ServerSpec("http://h:1", bytes.fromhex("ab" * 20))
    assert parse_server(f"http://h:1,{addr},9").price_per_minute == 9
    for bad in ("h:1", "http://h:1,0x12", "http://h:1,0", "http://h:1,5,6", f"http://h,{addr},1,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_server(bad)
    assert credit_value(100, 30) == 90 and credit_value(100, 250) == 250
    assert credit_value(100, 1) == 100 and credit_value(60, 30) == 60
    info = StamperInfo(b"s" * 20, Domain(1, b"c" * 20), 100, 25, 12)
    wide = stricter_terms(info, [GatewayTerms(b"r" * 20, reveal_margin=30, confirmations=2)])
    assert (wide.reveal_margin, wide.confirmations, wide.fee_bps) == (30, 12, 100)
