"""No payment stalls at a lottery rotation with the default prize, deposit and pace
(issue 9). Before: a default gateway (minimum stamper deposit 0.033 ETH, 40% burnt)
counted the old lottery, open until its reveal, plus the new one against the stamper's
burnt share; two 0.01 ETH prizes did not fit, so every rotation was ~26 blocks of
``stamper_exposure``. The real stamper, gateway and payer on the in-process chain."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from rpcpay.chain import ContractParams, InProcessChain
from rpcpay.chain.inprocess import DEV_BALANCE, dev_keys
from rpcpay.gateway.cheques import LotterySettings
from rpcpay.gateway.server import start_gateway
from rpcpay.lottery.payee import DEFAULT_MIN_STAMPER_DEPOSIT
from rpcpay.lottery.stamper_server import StamperConfig, start_stamper
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.lottery_payer import LotteryPayer, ServerSpec
from rpcpay.wallet.lottery_payer_state import PayerStateFile
from tests.gateway.conftest import ToyBackend, gateway_config
from tests.gateway.test_lottery_payee import write_key

# Lotteries long enough for the default margins (stamper 25 + 12, gateway 20 + 12).
PARAMS = ContractParams(
    max_reveal_delay=120, redeem_blocks=20, proof_grace=10, whistleblower_bps=1_000,
    compensation_bps=5_000,
)  # fmt: skip
BLOCKS_PER_ROUND = 5  # a minute of 12-second blocks
MAX_ROUNDS = 150


async def test_payments_never_stall_across_two_rotations(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    keys = dev_keys(5, b"rotation")
    deployer, stamper_key, payer_key, gateway_key, _ = keys
    chain = InProcessChain(funded=keys, chain_id=1337, balance=DEV_BALANCE)
    chain.deploy(deployer, PARAMS)
    chain.deposit_stamper(stamper_key, DEFAULT_MIN_STAMPER_DEPOSIT)
    stamper = await start_stamper(
        StamperConfig(bind_port=0, data_dir=tmp_path / "stamper", store_sync="normal"),
        chain,
        stamper_key,
    )
    settings = LotterySettings(
        contract=chain.contract,
        key_file=write_key(tmp_path / "gw" / "lottery.key", gateway_key),
        claim_interval_s=0.05,
    )
    gw = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "gw", lottery=settings), lottery_chain=chain
    )
    desk = gw.cheques
    assert desk is not None
    now = [0.0]
    desk.intake.clock = lambda: now[0]  # a minute a round for the gateway's pace
    try:
        async with aiohttp.ClientSession() as session:
            payer = LotteryPayer(
                chain, payer_key, PayerStateFile(tmp_path / "payer.json"),
                f"http://127.0.0.1:{stamper.port}",
                [ServerSpec(f"http://127.0.0.1:{gw.public_port}")], ClientKey(), session,
                reveal_blocks=PARAMS.max_reveal_delay,
            )  # fmt: skip
            outcomes: list[str] = []
            created = 0
            for _ in range(MAX_ROUNDS):
                report = await payer.pay_round()
                created += len(report.created)
                outcomes += [f"{d.outcome}: {d.message}" for d in report.deliveries]
                chain.mine(BLOCKS_PER_ROUND)
                now[0] += 60
                desk.core.stampers = (-1, {})
                await desk.settle_once()
                if created >= 3 and outcomes[-1].startswith("paid"):
                    break
            assert created >= 3, outcomes  # two rotations
            first = next(i for i, o in enumerate(outcomes) if o.startswith("paid"))
            # Before the first lottery is confirmed nothing can be paid; from then on, all.
            assert all(o.startswith("failed: no confirmed lottery") for o in outcomes[:first])
            unpaid = [o for o in outcomes[first:] if not o.startswith("paid")]
            assert unpaid == [], unpaid
    finally:
        await gw.close()
        await stamper.close()
