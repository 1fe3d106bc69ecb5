"""Acceptance: Debian's monero-wallet-cli 0.18 pays the gateway over TLS, with no proxy.

The gateway serves its public port with a self-signed certificate (``--rpc-ssl-certificate``,
``--rpc-ssl-private-key``); the wallet connects with ``--daemon-ssl enabled
--daemon-ssl-allow-any-cert``, as it would to a monerod started with ``--rpc-ssl``. It must see
the gateway's terms and mine credits, all over TLS (the port speaks nothing else).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_monero_wallet_cli import (
    PAYMENT_CREDITS,
    PAYMENT_DIFFICULTY,
    _require_binaries,
    start_gateway_process,
)
from tests.support.monerod import start_monerod
from tests.support.tls import self_signed
from tests.support.wallet_cli import WalletKeys, create_wallet, open_wallet

pytestmark = [pytest.mark.monerod, pytest.mark.slow]


def test_wallet_cli_mines_credits_over_tls(tmp_path: Path) -> None:
    _require_binaries()
    cert, key = self_signed(tmp_path / "tls")
    payee, user = WalletKeys.random(), WalletKeys.random()
    with start_monerod(tmp_path / "server") as mon:
        tls = ["--rpc-ssl-certificate", str(cert), "--rpc-ssl-private-key", str(key)]
        gateway = start_gateway_process(tmp_path, mon, payee.address, tls)
        try:
            wallets = tmp_path / "wallets"
            create_wallet(wallets, "user", user.spend_secret)
            with open_wallet(wallets, "user", gateway.port, daemon_ssl=True) as wallet:
                info = wallet.rpc_payment_info()
                assert info.payment_required
                assert info.difficulty == PAYMENT_DIFFICULTY
                assert info.credits_per_hash_found == PAYMENT_CREDITS
                assert wallet.wait_for_credits(PAYMENT_CREDITS, timeout=180) >= PAYMENT_CREDITS
            assert "https://" in gateway.log_tail(200)
        finally:
            gateway.stop()
