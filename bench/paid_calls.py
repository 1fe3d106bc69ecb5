"""Paid get_info calls per second: the rpcpay gateway vs monerod 0.18's own payment.

Superseded as the reference method by ``bench/paid_calls_wrk.py`` (wrk, bodies signed
beforehand): this script's Python load generator signs as it goes, on the same cores, and so
takes CPU from the servers it measures. Kept for the history in docs/benchmarks.md.

Starts on loopback, in one run on this machine:
  * a plain regtest monerod (no payment) that the gateway fronts,
  * the gateway as a separate process (``python -m rpcpay serve --upstream-kind monero``),
  * a regtest monerod with payment on (the reference),
then funds one client key per connection on both (``rpc_access_account``) and runs JSON-RPC
``get_info`` on /json_rpc, each call carrying a freshly signed 208-char client id (a charged
call needs a strictly increasing timestamp per key, hence one key per connection).

A free /get_height on the paying monerod is measured too: it shows what the load generator
itself can push, so a ratio is not just the client's ceiling.

Every answer is checked (``result.status == "OK"``); failures are counted and listed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp
from _common import (
    TEST_ADDRESS,
    GatewayProcess,
    LoadResult,
    Request,
    combine,
    fund,
    print_table,
    run_load,
    start_gateway_process,
    start_monerod,
    work_dir,
)

from rpcpay.wallet.keys import ClientKey

DIFFICULTY = 5
CREDITS_PER_HASH = 100
FUNDING = 10**12


def paid_get_info(base_url: str, keys: list[ClientKey]) -> Request:
    url = base_url + "/json_rpc"

    async def request(session: aiohttp.ClientSession, index: int) -> str | None:
        client = keys[index].client_id()
        body = '{"jsonrpc":"2.0","id":"0","method":"get_info","params":{"client":"' + client + '"}}'
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            raw = await response.read()
        if response.status != 200:
            return f"HTTP {response.status}"
        answer = json.loads(raw)
        result = answer.get("result")
        if not isinstance(result, dict):
            error = answer.get("error") or {}
            return f"error {error.get('code')}: {error.get('message')}"
        status = result.get("status")
        return None if status == "OK" else f"status {status}"

    return request


def free_get_height(base_url: str) -> Request:
    url = base_url + "/get_height"

    async def request(session: aiohttp.ClientSession, index: int) -> str | None:
        async with session.post(url, data="{}") as response:
            raw = await response.read()
        if response.status != 200:
            return f"HTTP {response.status}"
        status = json.loads(raw).get("status")
        return None if status == "OK" else f"status {status}"

    return request


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Paid get_info calls/s through the rpcpay gateway vs monerod 0.18's "
        "built-in RPC payment (both on loopback, same machine, one run). Prints a table and "
        "the gateway/monerod ratio per concurrency (target: >= 1.0).",
    )
    p.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per phase (default 10)"
    )
    p.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds before each phase (default 1)"
    )
    p.add_argument(
        "--baseline-duration",
        type=float,
        default=3.0,
        help="measured seconds of the free /get_height load-generator check (default 3)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 4],
        help="concurrent connections to test, one funded key each (default: 1 4)",
    )
    p.add_argument(
        "--ledger-sync",
        choices=("full", "normal", "both"),
        default="both",
        help="gateway SQLite fsync policy to measure (default: both)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="alternate monerod and gateway this many times per concurrency, each round "
        "lasting duration/rounds seconds, so machine noise hits both sides alike (default 5)",
    )
    p.add_argument(
        "--max-requests",
        type=int,
        default=1_000_000,
        help="hard cap on requests per phase (default 1000000)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--keep-dir", action="store_true", help="keep the temporary directory (logs)")
    return p.parse_args()


async def measure(
    args: argparse.Namespace,
    target: str,
    make_request: Request,
    concurrency: int,
    duration: float,
) -> LoadResult:
    return await run_load(
        target,
        concurrency,
        make_request,
        duration=duration,
        warmup=args.warmup,
        max_requests=args.max_requests,
    )


def main() -> int:
    args = parse_args()
    if args.duration <= 0 or args.duration > 600 or args.warmup < 0 or args.warmup > 60:
        print("--duration must be in (0, 600] and --warmup in [0, 60]", file=sys.stderr)
        return 2
    syncs = ["full", "normal"] if args.ledger_sync == "both" else [args.ledger_sync]
    max_conc = max(args.concurrency)
    keys = [ClientKey() for _ in range(max_conc)]
    wall = time.monotonic()
    results: list[LoadResult] = []
    with work_dir(args.keep_dir) as tmp:
        plain = start_monerod(tmp / "plain")
        paying = start_monerod(
            tmp / "paying",
            payment_address=TEST_ADDRESS,
            difficulty=DIFFICULTY,
            credits=CREDITS_PER_HASH,
        )
        gateways: list[GatewayProcess] = []
        try:
            for key in keys:
                fund(paying.url, key.public.hex(), FUNDING)
            for sync in syncs:
                gw = start_gateway_process(
                    tmp,
                    plain.url,
                    difficulty=DIFFICULTY,
                    credits=CREDITS_PER_HASH,
                    pow_mode="light",
                    ledger_sync=sync,
                    name=f"gateway-{sync}",
                )
                gateways.append(gw)
                for key in keys:
                    fund(gw.admin_url, key.public.hex(), FUNDING)
            # The load generator's ceiling, on a free call.
            for c in args.concurrency:
                results.append(
                    asyncio.run(
                        measure(
                            args,
                            "monerod free /get_height",
                            free_get_height(paying.url),
                            c,
                            args.baseline_duration,
                        )
                    )
                )
            # Rounds alternate between the reference and each gateway.
            targets = [("monerod paid get_info", paying.url)] + [
                (f"gateway paid get_info (ledger-sync {sync})", gw.public_url)
                for sync, gw in zip(syncs, gateways, strict=True)
            ]
            slice_s = args.duration / max(1, args.rounds)
            for c in args.concurrency:
                rounds: dict[str, list[LoadResult]] = {name: [] for name, _ in targets}
                for _ in range(max(1, args.rounds)):
                    for name, url in targets:
                        rounds[name].append(
                            asyncio.run(measure(args, name, paid_get_info(url, keys), c, slice_s))
                        )
                results.extend(combine(parts) for parts in rounds.values())
        finally:
            for gw in gateways:
                gw.stop()
            paying.stop()
            plain.stop()

    ref = {r.concurrency: r.per_second for r in results if r.target.startswith("monerod paid")}
    ceiling = {r.concurrency: r.per_second for r in results if "get_height" in r.target}
    ratios = [
        {
            "target": r.target,
            "concurrency": r.concurrency,
            "ratio_vs_monerod": (
                r.per_second / ref[r.concurrency] if ref.get(r.concurrency) else None
            ),
        }
        for r in results
        if r.target.startswith("gateway")
    ]
    elapsed = time.monotonic() - wall
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "paid_calls",
                    "reference": "monerod 0.18 built-in RPC payment, paid JSON-RPC get_info",
                    "target_ratio": 1.0,
                    "results": [r.as_dict() for r in results],
                    "ratios": ratios,
                    "wall_seconds": round(elapsed, 1),
                },
                indent=2,
            )
        )
        return 0
    print_table(
        "Paid JSON-RPC get_info, each call with a fresh signed client id (one funded key per "
        "connection)",
        ["target", "conns", "seconds", "ok", "failed", "calls/s"],
        [[r.target, r.concurrency, r.seconds, r.ok, r.failed, r.per_second] for r in results],
    )
    for r in results:
        if r.failures:
            print(f"  failures in {r.target} x{r.concurrency}: {r.failures}")
    print_table(
        "Ratio gateway / monerod (target >= 1.0)",
        ["gateway", "conns", "ratio", "load-gen ceiling (get_height/s)"],
        [
            [
                x["target"],
                x["concurrency"],
                f"{x['ratio_vs_monerod']:.2f}x" if x["ratio_vs_monerod"] is not None else "n/a",
                ceiling.get(int(str(x["concurrency"])), 0.0),
            ]
            for x in ratios
        ],
    )
    print(f"\nwall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
