"""Fixtures for the proof-of-work tests: one light cache per key, shared per module.

A RandomX cache takes ~0.8 s (Argon2 over 256 MiB), so tests share them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rpcpay.pow.randomx import RandomXCache, RandomXVM

KEY_000 = b"test key 000"
KEY_001 = b"test key 001"


@pytest.fixture(scope="module")
def cache000() -> Iterator[RandomXCache]:
    with RandomXCache(KEY_000) as cache:
        yield cache


@pytest.fixture(scope="module")
def vm000(cache000: RandomXCache) -> Iterator[RandomXVM]:
    with RandomXVM(cache000) as vm:
        yield vm
