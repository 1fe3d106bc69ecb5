"""Shared fixtures: real monerod 0.18 peers on loopback (see tests/support/monerod.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.monerod import MONEROD_BIN, TEST_ADDRESS, MonerodProcess, start_monerod

PAYING_DIFFICULTY = 5
PAYING_CREDITS = 100
INITIAL_BLOCKS = 20


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml registers these too; registering again is harmless.
    config.addinivalue_line(
        "markers", "monerod: needs Debian's monerod 0.18 binary (installed by scripts/setup.sh)"
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _require_monerod() -> None:
    if not MONEROD_BIN.exists():
        pytest.fail(
            f"{MONEROD_BIN} is missing: run scripts/setup.sh (installs Debian's monero package)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def monerod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonerodProcess]:
    """A regtest monerod without pay-for-RPC, with 20 blocks mined to TEST_ADDRESS."""
    _require_monerod()
    with start_monerod(tmp_path_factory.mktemp("monerod-free")) as mon:
        mon.generate_blocks(INITIAL_BLOCKS, TEST_ADDRESS)
        yield mon


@pytest.fixture(scope="session")
def paying_monerod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonerodProcess]:
    """A regtest monerod with pay-for-RPC on (difficulty 5, 100 credits per hash found
    at that difficulty, payments to TEST_ADDRESS), with 20 blocks mined."""
    _require_monerod()
    with start_monerod(
        tmp_path_factory.mktemp("monerod-paying"),
        payment_address=TEST_ADDRESS,
        difficulty=PAYING_DIFFICULTY,
        credits=PAYING_CREDITS,
    ) as mon:
        mon.generate_blocks(INITIAL_BLOCKS, TEST_ADDRESS)
        yield mon
