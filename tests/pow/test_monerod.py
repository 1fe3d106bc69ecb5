"""Differential: our RandomX hash of a real block hashing blob equals monerod's calc_pow."""

from __future__ import annotations

import pytest

from rpcpay.pow.randomx import RandomXCache, RandomXVM
from tests.support.monerod import TEST_ADDRESS, MonerodProcess

NONCE_OFFSET = 39


@pytest.mark.monerod
def test_calc_pow_matches(monerod: MonerodProcess) -> None:
    resp = monerod.json_rpc(
        "get_block_template", {"wallet_address": TEST_ADDRESS, "reserve_size": 4}
    )
    tpl = resp["result"]
    hashing_blob = bytes.fromhex(tpl["blockhashing_blob"])
    seed = bytes.fromhex(tpl["seed_hash"])
    major_version = bytes.fromhex(tpl["blocktemplate_blob"])[0]
    assert major_version >= 12  # RandomX era
    with RandomXCache(seed) as cache, RandomXVM(cache) as vm:
        for nonce in (0, 1, 0xDEADBEEF):
            blob = (
                hashing_blob[:NONCE_OFFSET]
                + nonce.to_bytes(4, "little")
                + hashing_blob[NONCE_OFFSET + 4 :]
            )
            theirs = monerod.json_rpc(
                "calc_pow",
                {
                    "major_version": major_version,
                    "height": tpl["height"],
                    "block_blob": blob.hex(),
                    "seed_hash": seed.hex(),
                },
            )
            assert "result" in theirs, theirs
            assert vm.hash(blob).hex() == theirs["result"]
