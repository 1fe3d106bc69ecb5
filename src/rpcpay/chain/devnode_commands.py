"""``rpcpay chain``: run the embedded development chain (``devnode``) on loopback.

Its flags are defined in ``rpcpay.cli`` (importing this package loads py-evm, which
the other commands should not pay for at start-up); this module runs it.

It prints, and writes to an owner-only JSON file, the chain id, the URL, the settlement
contract's address and the funded development keys, so a payer, a stamper and gateways
started afterwards can share the chain. The keys are deterministic and public: never
for real funds. State lives in memory and is gone when the command stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from rpcpay.errors import ConfigError
from rpcpay.logs import configure_logging

__all__ = ["run_chain"]


def _write_info(path: Path, info: dict[str, object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(info, handle, indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


async def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rpcpay.chain.devnode import DevNode, DevNodeConfig
    from rpcpay.chain.settlement import DEFAULT_PARAMS
    from rpcpay.lottery.eth import checksum_address

    changes = {
        name: getattr(args, name)
        for name in ("max_reveal_delay", "redeem_blocks", "proof_grace")
        if getattr(args, name) is not None
    }
    config = DevNodeConfig(
        host=args.host, port=args.port, chain_id=args.chain_id, keys=args.keys,
        block_time=args.block_time, params=replace(DEFAULT_PARAMS, **changes),
    )  # fmt: skip
    node = DevNode(config)
    assert node.contract is not None
    try:
        serving = node.serving()
        port = await serving.__aenter__()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    try:
        url = f"http://{args.host}:{port}"
        keys = [
            {"address": checksum_address(k.address), "secret": "0x" + k.secret.hex()}
            for k in node.keys
        ]
        info = {"url": url, "chain_id": args.chain_id,
                "contract": checksum_address(node.contract), "params": changes or "default",
                "keys": keys}  # fmt: skip
        _write_info(args.info_file, info)
        print(f"rpcpay chain: chain id {args.chain_id} at {url}")
        print(f"contract {checksum_address(node.contract)}")
        for k in keys:
            print(f"key {k['address']} secret {k['secret']}")
        print(f"(written to {args.info_file}; development keys, never for real funds; "
              "state is in memory and ends with this command)", flush=True)  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.CancelledError):
            await stop.wait()
        print("rpcpay chain: stopped", file=sys.stderr)
    finally:
        await serving.__aexit__(None, None, None)
    return 0


def run_chain(args: argparse.Namespace) -> int:
    """Run ``rpcpay chain`` until SIGINT/SIGTERM."""
    configure_logging(args.log_level)
    return asyncio.run(_serve(args))
