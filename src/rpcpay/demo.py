"""``rpcpay demo``: the whole loop on one machine, with nothing to set up.

It starts a small JSON-RPC backend (a stand-in for any node), puts the gateway in front of
it, then runs a client that mines credits with RandomX (light mode) and spends them on paid
calls, printing every step. At the end it prints the operator's ``rpcpay payments`` view.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from rpcpay.gateway.report import format_payments
from rpcpay.gateway.server import GatewayConfig, start_gateway
from rpcpay.wallet.client import PayingClient, PaymentRequired, ShareRefused
from rpcpay.wallet.miner import LightMiner

JSON = Any
DEMO_PRICES = {"default": 2, "methods": {"demo_time": 1, "demo_add": 5}}


async def _backend(request: web.Request) -> web.Response:
    """A toy JSON-RPC service: demo_time, demo_add and demo_echo."""
    document = await request.json()
    method, params = document.get("method"), document.get("params") or {}
    if method == "demo_time":
        result: JSON = {"time": int(time.time()), "status": "OK"}
    elif method == "demo_add":
        result = {"sum": sum(params.get("numbers", [])), "status": "OK"}
    else:
        result = {"echo": params, "status": "OK"}
    return web.json_response({"jsonrpc": "2.0", "id": document.get("id"), "result": result})


async def start_backend() -> tuple[web.AppRunner, int]:
    """Start the toy backend on a free loopback port."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", _backend)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


def say(text: str) -> None:
    print(text, flush=True)


async def mine_until(client: PayingClient, miner: LightMiner, target: int) -> None:
    """Mine shares until the balance reaches ``target``, showing progress."""
    info = await client.access_info()
    nonce, cookie, started, hashes0 = 0, info.cookie, time.monotonic(), miner.hashes
    while client.credits < target:
        found, nonce = await miner.find_share(
            info.seed_hash, info.hashing_blob, info.difficulty, nonce, 64
        )
        elapsed = max(time.monotonic() - started, 1e-9)
        rate = (miner.hashes - hashes0) / elapsed
        if found is not None:
            try:
                await client.submit_nonce(found, cookie)
                say(f"  share accepted (nonce {found}): credits {client.credits}  [{rate:.1f} H/s]")
            except ShareRefused as refusal:
                say(f"  share refused: {refusal}")
        if found is not None or nonce >= 2**32 - 1:
            info = await client.access_info()
            if info.cookie != cookie:
                cookie, nonce = info.cookie, 0


async def run_demo(calls: int, difficulty: int, credits: int, data_dir: Path) -> int:
    backend, backend_port = await start_backend()
    price_file = data_dir / "prices.json"
    price_file.write_text(json.dumps(DEMO_PRICES))
    config = GatewayConfig(
        upstream=f"http://127.0.0.1:{backend_port}/",
        upstream_kind="jsonrpc",
        difficulty=difficulty,
        credits_per_hash=credits,
        bind_port=0,
        admin_bind_port=0,
        data_dir=data_dir,
        price_file=price_file,
        pow_mode="light",
        verify_threads=1,
    )
    gateway = await start_gateway(config)
    say(f"backend  : toy JSON-RPC service on 127.0.0.1:{backend_port}")
    say(
        f"gateway  : rpcpay serve on 127.0.0.1:{gateway.public_port} "
        f"(difficulty {difficulty}, {credits} credits per share = "
        f"{credits / difficulty:g} credits per hash)"
    )
    say(f"prices   : {DEMO_PRICES}")
    miner = LightMiner()
    url = f"http://127.0.0.1:{gateway.public_port}"
    try:
        async with PayingClient(url) as client:
            say(f"client   : key {client.key.public.hex()[:16]}…, mining with RandomX (light)")
            methods = ["demo_time", "demo_add", "demo_echo"]
            for i in range(calls):
                method = methods[i % len(methods)]
                params = {"numbers": [i, i + 1]} if method == "demo_add" else {"n": i}
                while True:
                    try:
                        result = await client.call(method, params)
                        break
                    except PaymentRequired:
                        say(
                            f"call {i + 1}: {method} -> PAYMENT REQUIRED "
                            f"(credits {client.credits}); mining"
                        )
                        await mine_until(client, miner, client.credits + 10)
                shown = {k: v for k, v in result.items() if k not in ("status", "untrusted")}
                shown = {k: v for k, v in shown.items() if k not in ("credits", "top_hash")}
                say(f"call {i + 1}: {method} -> {shown}   credits left: {client.credits}")
        data = await _admin_data(gateway.admin_port)
        say("\noperator view (rpcpay payments):")
        say(format_payments(data, int(time.time())))
    finally:
        miner.close()
        await gateway.close()
        await backend.cleanup()
    return 0


async def _admin_data(port: int) -> JSON:
    client = PayingClient(f"http://127.0.0.1:{port}")
    try:
        answer = await client.request("rpc_access_data", {})
    finally:
        await client.close()
    return answer["result"]


def main(calls: int, difficulty: int, credits: int, data_dir: Path | None) -> int:
    """Run the demo in a temporary data dir unless one is given."""
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(run_demo(calls, difficulty, credits, data_dir))
    with tempfile.TemporaryDirectory(prefix="rpcpay-demo-") as tmp:
        return asyncio.run(run_demo(calls, difficulty, credits, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main(9, 16, 32, None))


async def _serve_backend(port: int) -> None:
    """The toy backend alone on ``port`` until SIGINT/SIGTERM (scripts/demo_lottery.sh)."""
    import signal

    app = web.Application()
    app.router.add_post("/{tail:.*}", _backend)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as exc:
        await runner.cleanup()
        from rpcpay.errors import ConfigError

        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
    say(f"backend  : toy JSON-RPC service on 127.0.0.1:{port} (demo_time, demo_add, demo_echo)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve_backend(port: int) -> int:
    """Run only the toy backend (``rpcpay demo --backend-only PORT``)."""
    asyncio.run(_serve_backend(port))
    return 0
