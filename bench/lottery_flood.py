"""p99 latency of lottery_info and of paid calls while /lottery/gossip is flooded with junk.

A gateway with the lottery rail (in-process EVM, a one-line JSON-RPC upstream) runs in a
child process pinned to CPU 0. This process probes it, one request at a time: half
``lottery_info``, half paid calls (``eth_call`` charged one credit). Phases alternate:
**no flood** (the reference) and **flood**: ``wrk`` (pinned to CPU 1, its CPU time
reported) posting pre-made gossip bodies of 64 junk cheques each (one-wei ranges of
made-up lotteries, zero signatures, 256 distinct bodies in rotation). The issue's target:
p99 <= 50 ms during a flood of 10x the 5,000 cheques/s intake target (50,000 cheques/s);
wrk is unthrottled, so the offered rate is reported and is usually far above that. The
gateway answers a sender over its rate (5,000 cheques/s, burst 20,000) 429 before reading
its body, so the flood costs it little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import REPO, print_table  # noqa: F401  (REPO puts src/ on the path)

from rpcpay.lottery.cheque import Cheque, Domain, StampedCheque, encode_stamped

HOST = "127.0.0.1"
BODIES = 256
PER_BODY = 64


async def serve(state: Path) -> None:
    """The child: world, upstream, gateway; writes its port and a client's secret."""
    from aiohttp import web

    from rpcpay.chain import ContractParams, InProcessChain
    from rpcpay.chain.inprocess import DEV_BALANCE, dev_keys
    from rpcpay.gateway.cheques import LotterySettings
    from rpcpay.gateway.limits import AbuseLimits
    from rpcpay.gateway.server import GatewayConfig, start_gateway
    from rpcpay.wallet.keys import ClientKey

    async def upstream(request: web.Request) -> web.Response:
        doc = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": doc.get("id"), "result": "0x1"})

    app = web.Application()
    app.router.add_post("/{tail:.*}", upstream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    up_port = int(runner.addresses[0][1])
    keys = dev_keys(4, b"bench flood")
    chain = InProcessChain(funded=keys, chain_id=1337, balance=DEV_BALANCE)
    params = ContractParams(
        max_reveal_delay=1000, redeem_blocks=20, proof_grace=10, whistleblower_bps=1_000,
        compensation_bps=5_000,
    )  # fmt: skip
    chain.deploy(keys[0], params)
    data = state.parent / "gw"
    settings = LotterySettings(contract=chain.contract, confirmations=1, reveal_margin=5)
    config = GatewayConfig(
        upstream=f"http://{HOST}:{up_port}/", upstream_kind="jsonrpc", difficulty=2,
        credits_per_hash=50, bind_port=0, admin_bind_port=0, data_dir=data, pow_mode="light",
        verify_threads=1, ledger_sync="normal", limits=AbuseLimits(), lottery=settings,
    )  # fmt: skip
    gw = await start_gateway(config, lottery_chain=chain)
    client = ClientKey()
    gw.ledger.adjust_balance(client.public, 10**9)
    state.write_text(json.dumps({"port": gw.public_port, "client": client.secret.hex()}))
    try:
        await asyncio.Event().wait()
    finally:
        await gw.close()


def junk_bodies(path: Path, domain: Domain) -> None:
    """256 gossip bodies of 64 junk cheques (one-wei ranges of made-up lotteries to made-up
    recipients, zero signatures), written one after the other."""
    with path.open("wb") as out:
        for _ in range(BODIES * PER_BODY):
            c = Cheque(os.urandom(32), os.urandom(20), 0, 1)
            out.write(encode_stamped(domain, StampedCheque(c, b"\0" * 65, b"\0" * 65)))


LUA = """
local f = io.open("%s", "rb")
local all = f:read("*a")
f:close()
local n = %d
local size = %d
local reqs = {}
for i = 0, n - 1 do
  reqs[i] = wrk.format("POST", "/lottery/gossip",
    {["Content-Type"] = "application/octet-stream", ["Host"] = "%s"},
    string.sub(all, i * size + 1, (i + 1) * size))
end
local k = 0
request = function()
  k = (k + 1) %% n
  return reqs[k]
end
"""


async def probe(
    port: int, client_secret: bytes, seconds: float, cap: int
) -> tuple[list[float], list[float]]:
    import aiohttp

    from rpcpay.wallet.keys import ClientKey

    client = ClientKey(client_secret)
    info_ms: list[float] = []
    paid_ms: list[float] = []
    url = f"http://{HOST}:{port}/json_rpc"
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        n = 0
        while time.monotonic() < end and n < cap:
            n += 1
            for kind in ("info", "paid"):
                body = ({"jsonrpc": "2.0", "id": 1, "method": "lottery_info"} if kind == "info"
                        else {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [],
                              "client": client.client_id()})  # fmt: skip
                start = time.perf_counter()
                async with session.post(url, json=body) as r:
                    answer = await r.json(content_type=None)
                took = (time.perf_counter() - start) * 1000
                assert "error" not in answer or kind == "paid", answer
                (info_ms if kind == "info" else paid_ms).append(took)
    return info_ms, paid_ms


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=2, help="flood/no-flood pairs")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    with tempfile.TemporaryDirectory(prefix="rpcpay-bench-") as tmp:
        state = Path(tmp) / "state.json"
        child = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, __file__, "--serve", str(state)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not state.exists():
                assert child.poll() is None and time.monotonic() < deadline, "gateway failed"
                time.sleep(0.2)
            time.sleep(0.2)
            info = json.loads(state.read_text())
            port, secret = info["port"], bytes.fromhex(info["client"])
            # The junk names the gateway's chain and contract, to pass the first checks.
            info_body = b'{"jsonrpc":"2.0","id":1,"method":"lottery_info"}'
            request = urllib.request.Request(f"http://{HOST}:{port}/json_rpc", data=info_body)
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
            domain = Domain(int(answer["result"]["chain_id"]),
                            bytes.fromhex(answer["result"]["contract"][2:]))  # fmt: skip
            bodies = Path(tmp) / "bodies.bin"
            junk_bodies(bodies, domain)
            lua = Path(tmp) / "flood.lua"
            lua.write_text(LUA % (bodies, BODIES, PER_BODY * 274, f"{HOST}:{port}"))
            results: dict[str, tuple[list[float], list[float]]] = {"no flood": ([], []),
                                                                   "flood": ([], [])}  # fmt: skip
            offered: list[float] = []
            wrk_cpu = 0.0
            wrk_wall = 0.0
            refused = 0
            total = 0
            for _ in range(args.rounds):
                i, p = asyncio.run(probe(port, secret, args.seconds, 20_000))
                results["no flood"][0].extend(i)
                results["no flood"][1].extend(p)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wrk = subprocess.Popen(
                    ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}",
                     f"-d{int(args.seconds) + 1}s", "-s", str(lua),
                     f"http://{HOST}:{port}/lottery/gossip"],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                time.sleep(0.5)
                i, p = asyncio.run(probe(port, secret, args.seconds - 0.5, 20_000))
                out, _ = wrk.communicate(timeout=args.seconds + 30)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                wrk_cpu += (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                wrk_wall += int(args.seconds) + 1
                results["flood"][0].extend(i)
                results["flood"][1].extend(p)
                rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
                offered.append(float(rate.group(1)) * PER_BODY if rate else 0.0)
                reqs = re.search(r"(\d+) requests in", out)
                non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                total += int(reqs.group(1)) if reqs else 0
                refused += int(non2xx.group(1)) if non2xx else 0
        finally:
            child.terminate()
            child.wait(timeout=30)
    rows = []
    for phase, (i, p) in results.items():
        rows.append([phase, len(i), p99(i), len(p), p99(p)])
    print_table("p99 latency (ms), one request at a time, gateway on CPU 0, wrk on CPU 1",
                ["phase", "lottery_info n", "p99 ms", "paid calls n", "p99 ms"], rows)  # fmt: skip
    flood_rate = sum(offered) / max(1, len(offered))
    print(
        f"\nflood offered: {flood_rate:,.0f} junk cheques/s ({flood_rate / 5_000:.1f}x the "
        f"5,000/s intake target; the issue asks for 10x); {refused:,} of {total:,} gossip "
        "requests answered 429/4xx"
    )
    print(f"wrk CPU: {wrk_cpu:.1f} s over {wrk_wall:.0f} s of flood "
          f"({100 * wrk_cpu / max(wrk_wall, 1):.0f}% of CPU 1)")  # fmt: skip
    fi, fp = results["flood"]
    ni, np_ = results["no flood"]
    print(f"lottery_info p99 flood / no flood: {p99(fi) / p99(ni):.2f}x; "
          f"paid calls: {p99(fp) / p99(np_):.2f}x")  # fmt: skip
    ok = p99(fi) <= 50 and p99(fp) <= 50
    print(f"target p99 <= 50 ms during the flood: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
