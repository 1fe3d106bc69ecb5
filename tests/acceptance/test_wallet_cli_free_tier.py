"""Acceptance: an unmodified monero-wallet-cli 0.18 that never pays still syncs through a
gateway with the free tier on (seed 000's "minimal capacity (equivalent to free service)").

The wallet is told not to mine (its auto-mine threshold far above the node's rate), so every
call it makes is signed with an id holding 0 credits: each is refused for payment and served
from its host's free allowance instead. It must sync and see exactly the balance mined to it,
with 0 credits spent; the gateway must count its calls as served free.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest

from tests.acceptance.test_monero_wallet_cli import (
    UNLOCK_BLOCKS,
    USER_BLOCKS,
    _admin_call,
    _require_binaries,
    _reward,
    start_gateway_process,
)
from tests.support.monerod import TEST_ADDRESS, start_monerod
from tests.support.wallet_cli import WalletCliError, WalletKeys, create_wallet, open_wallet

pytestmark = [pytest.mark.monerod, pytest.mark.slow]

#: Free credits per second and burst per host: "roomy" holds a whole sync of ~70 blocks (about
#: 10 credits); "tight" does not, so refreshes are refused until the allowance refills.
ALLOWANCES = {"roomy": ("20", "400"), "tight": ("0.5", "3")}
REFRESH_ROUNDS = 12


@pytest.mark.parametrize("allowance", ALLOWANCES)
def test_wallet_cli_without_payment_syncs_on_the_free_tier(tmp_path: Path, allowance: str) -> None:
    free_rate, free_burst = ALLOWANCES[allowance]
    _require_binaries()
    payee, user = WalletKeys.random(), WalletKeys.random()
    with start_monerod(tmp_path / "server") as up:
        user_blocks = up.generate_blocks(USER_BLOCKS, user.address)["blocks"]
        up.generate_blocks(UNLOCK_BLOCKS, TEST_ADDRESS)
        expected = sum(_reward(up, h) for h in user_blocks)
        gateway = start_gateway_process(
            tmp_path,
            up,
            payee.address,
            [
                "--free-credits-per-second", free_rate,
                "--free-burst", free_burst,
                "--upstream-concurrency", "4",
            ],
        )  # fmt: skip
        try:
            wallets = tmp_path / "wallets"
            create_wallet(
                wallets,
                "user",
                user.spend_secret,
                settings=[
                    ("ask-password", "0"),
                    # Never worth mining: this wallet does not pay.
                    ("auto-mine-for-rpc-payment-threshold", "1000000000"),
                ],
            )
            with open_wallet(wallets, "user", gateway.port) as wallet:
                # Refused refreshes are retried, as a user (or the idle thread) would: slower,
                # but the wallet keeps syncing.
                for _ in range(REFRESH_ROUNDS):
                    with contextlib.suppress(WalletCliError):
                        wallet.refresh()
                    if wallet.balance().unlocked == expected:
                        break
                    time.sleep(2)
                received = [
                    int(n)
                    for n in re.findall(r"Refresh done, blocks received: (\d+)", wallet.output())
                ]
                assert sum(received) >= USER_BLOCKS + UNLOCK_BLOCKS, wallet.describe()
                balance = wallet.balance()
                assert balance.total == expected and balance.unlocked == expected
                info = wallet.rpc_payment_info()
                assert not info.credits, info
                log = wallet.log_text()
            assert not re.search(r"starting mining", log), "the wallet mined"
            answer = _admin_call(gateway.admin_port, "rpc_access_data")
            capacity = answer["result"]["capacity"]
            assert capacity["free_served"] > 0, capacity
            if allowance == "tight":
                assert capacity["free_refused_allowance"] > 0, capacity
            assert capacity["shed"] == {"paid": 0, "free": 0}
            print(f"free tier: {capacity}")
        finally:
            gateway.stop()
