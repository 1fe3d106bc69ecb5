"""The shipped bytecode is what the pinned compiler makes of the shipped source."""

import json
from importlib import resources

import pytest

from rpcpay.chain.artifact import VYPER_VERSION, compile_artifact, load_artifact
from rpcpay.errors import ChainError


def test_shipped_artifact_matches_a_fresh_compile() -> None:
    shipped = json.loads(
        resources.files("rpcpay.chain").joinpath("contracts/stamped_lottery.json").read_text()
    )
    fresh = compile_artifact()
    assert fresh["bytecode"] == shipped["bytecode"]
    assert fresh["abi"] == shipped["abi"]
    assert shipped["vyper_version"] == VYPER_VERSION
    assert load_artifact().bytecode.hex() == shipped["bytecode"].removeprefix("0x")


def test_source_pins_the_compiler() -> None:
    src = resources.files("rpcpay.chain").joinpath("contracts/stamped_lottery.vy").read_text()
    assert f"# pragma version {VYPER_VERSION}" in src


def test_stale_artifact_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import rpcpay.chain.artifact as artifact

    monkeypatch.setattr(artifact, "_source", lambda: b"# edited\n")
    with pytest.raises(ChainError, match="stale"):
        artifact.load_artifact()
