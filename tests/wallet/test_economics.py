"""The seed's arithmetic: a client earns credits/difficulty credits per hash on average.

With credits 250 and difficulty 1000 that is 0.25 credits per hash. Two checks, each with a
stated tolerance of 5 standard deviations (a false failure about once in 3.5 million runs):
the share rule itself over many uniformly random hashes (RandomX output is uniform; 2,000,000
hashes would take a light-mode miner 16 hours), and real RandomX mining through the gateway
at a difficulty low enough to finish in seconds.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from rpcpay.gateway.server import start_gateway
from rpcpay.pow.difficulty import check_hash
from rpcpay.wallet.client import PayingClient
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.miner import LightMiner
from tests.gateway.conftest import ToyBackend, access_info, gateway_config, post, rpc, toy_backend
from tests.support.monerod import MonerodProcess

__all__ = ["toy_backend"]


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


def test_seed_example_earns_a_quarter_credit_per_hash() -> None:
    credits, difficulty, hashes = 250, 1000, 2_000_000
    rng = random.Random(20200312)  # fixed seed: the test is reproducible
    shares = sum(
        check_hash(rng.getrandbits(256).to_bytes(32, "little"), difficulty) for _ in range(hashes)
    )
    low, high = binomial_bounds(hashes, 1 / difficulty)
    assert low <= shares <= high
    per_hash = shares * credits / hashes
    # 0.25 credits per hash, within 5 sigma (about +-0.028 at this sample size).
    assert abs(per_hash - 0.25) <= 5 * credits * math.sqrt((1 / difficulty) / hashes)


async def test_real_mining_through_the_gateway_earns_credits_over_difficulty(
    toy_backend: ToyBackend, tmp_path: Path
) -> None:
    credits, difficulty, hashes = 250, 8, 480
    gateway = await start_gateway(
        gateway_config(toy_backend.url, tmp_path, difficulty=difficulty, credits_per_hash=credits)
    )
    miner = LightMiner()
    key = ClientKey()
    try:
        info = await access_info(gateway.public_port, key)
        seed, blob = bytes.fromhex(info["seed_hash"]), bytes.fromhex(info["hashing_blob"])
        nonce, earned = 0, 0
        while nonce < hashes:
            found, nonce = await miner.find_share(seed, blob, difficulty, nonce, hashes - nonce)
            if found is None:
                break
            _, answer = await post(
                gateway.public_port,
                "/json_rpc",
                rpc(
                    "rpc_access_submit_nonce",
                    {"client": key.client_id(), "nonce": found, "cookie": info["cookie"]},
                ),
            )
            earned = answer["result"]["credits"]
        assert miner.hashes == hashes
        low, high = binomial_bounds(hashes, 1 / difficulty)
        # Expected credits/difficulty = 31.25 credits per hash, within 5 sigma.
        assert low * credits <= earned <= high * credits
    finally:
        miner.close()
        await gateway.close()


async def test_real_mining_at_monerod_earns_credits_over_difficulty(
    paying_monerod: MonerodProcess,
) -> None:
    hashes = 300
    miner = LightMiner()
    try:
        async with PayingClient(paying_monerod.url) as client:
            info = await client.access_info()
            nonce, earned = 0, 0
            while nonce < hashes:
                found, nonce = await miner.find_share(
                    info.seed_hash, info.hashing_blob, info.difficulty, nonce, hashes - nonce
                )
                if found is None:
                    break
                earned = await client.submit_nonce(found, info.cookie)
            assert miner.hashes == hashes
            low, high = binomial_bounds(hashes, 1 / info.difficulty)
            # credits_per_hash_found / difficulty per hash (100 / 5 here), within 5 sigma.
            cphf = info.credits_per_hash_found
            assert low * cphf <= earned <= high * cphf
    finally:
        miner.close()
