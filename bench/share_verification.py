"""Shares verified per second: the gateway's rpc_access_submit_nonce vs monerod 0.18's.

Real shares cannot be made cheaply (RandomX), so this measures verification throughput with
distinct nonces that must each be hashed: at a payment difficulty of 10^9 practically every
nonce fails ("bad hash", error -16), which costs each server one full RandomX hash, exactly
like a good share. Each connection has its own funded key (penalties never matter) and one
job (rpc_access_info once; its cookie stays current because the regtest chain never moves).
The gateway runs with its bad-share and new-client limits raised out of the way.

Phases, run one after the other on the same machine so they never share CPUs:
  1. monerod with payment on (the reference; it verifies in RandomX light mode),
  2. the gateway with ``--pow-mode light``,
  3. the gateway with ``--pow-mode fast`` (the headline): its 2 GiB dataset is built first
     (tens of seconds); the phase starts once the log says the dataset is ready.
An answer counts as one verified share when it is error -16 (hashed, too weak) or OK (a good
share); anything else (stale, rate-limited, busy) is counted as a failure.
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
    fund,
    json_rpc,
    print_table,
    run_load,
    start_gateway_process,
    start_monerod,
    work_dir,
)

from rpcpay.wallet.keys import ClientKey

DIFFICULTY = 10**9
CREDITS_PER_HASH = 100
FUNDING = 10**15
ID_REFRESH_S = 20.0  # a submit_nonce id only has to be within +-60 s of the server clock
LIMIT_FLAGS = [
    "--bad-shares-burst", "1e9", "--bad-shares-per-second", "1e9",
    "--new-clients-burst", "1e9", "--new-clients-per-second", "1e9",
]  # fmt: skip


class Submitter:
    """Per connection: one key, one job cookie, nonces 0, 1, 2, ... (never repeated)."""

    def __init__(self, base_url: str, keys: list[ClientKey], cookies: list[int]) -> None:
        self.url = base_url + "/json_rpc"
        self.keys = keys
        self.cookies = cookies
        self.nonces = [0] * len(keys)
        self.ids = [k.client_id() for k in keys]
        self.signed_at = [time.monotonic()] * len(keys)

    async def __call__(self, session: aiohttp.ClientSession, index: int) -> str | None:
        now = time.monotonic()
        if now - self.signed_at[index] > ID_REFRESH_S:
            self.ids[index] = self.keys[index].client_id()
            self.signed_at[index] = now
        nonce = self.nonces[index]
        self.nonces[index] = nonce + 1
        body = (
            '{"jsonrpc":"2.0","id":"0","method":"rpc_access_submit_nonce","params":{"client":"'
            f'{self.ids[index]}","nonce":{nonce},"cookie":{self.cookies[index]}}}}}'
        )
        async with session.post(
            self.url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            raw = await response.read()
        if response.status != 200:
            return f"HTTP {response.status}"
        answer = json.loads(raw)
        error = answer.get("error")
        if isinstance(error, dict):
            # -16: the nonce was hashed and is too weak; that is one verified share.
            if error.get("code") == -16:
                return None
            return f"error {error.get('code')}: {error.get('message')}"
        result = answer.get("result") or {}
        return None if result.get("status") == "OK" else f"status {result.get('status')}"


def prepare(base_url: str, admin_url: str, keys: list[ClientKey]) -> Submitter:
    """Fund every key and give it a job; the submitter for those jobs."""
    cookies = []
    for key in keys:
        fund(admin_url, key.public.hex(), FUNDING)
        answer = json_rpc(base_url, "rpc_access_info", {"client": key.client_id()})
        result = answer.get("result")
        if not isinstance(result, dict) or result.get("status") != "OK":
            raise RuntimeError(f"rpc_access_info failed at {base_url}: {answer}")
        cookies.append(int(result["cookie"]))
    return Submitter(base_url, keys, cookies)


def wait_for_dataset(gw: GatewayProcess, timeout: float) -> float | None:
    """Seconds until the gateway logged its RandomX dataset ready, or None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if "dataset ready" in gw.log_text():
            return time.monotonic() - started
        if gw.process.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{gw.log_text()[-2000:]}")
        time.sleep(0.5)
    return None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Shares verified per second by rpc_access_submit_nonce: the rpcpay gateway "
        "(RandomX fast mode, headline; and light mode) vs monerod 0.18 with payment on, on "
        "loopback in one run. Prints hashes/s and the gateway/monerod ratio (target: >= 5).",
    )
    p.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per phase (default 10)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="unmeasured seconds of submissions before each phase (default 2)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=8,
        help="concurrent connections, one funded key each (default 8)",
    )
    p.add_argument(
        "--verify-threads",
        type=int,
        default=None,
        help="gateway --verify-threads (default: the gateway's own, one per CPU)",
    )
    p.add_argument(
        "--dataset-timeout",
        type=float,
        default=150.0,
        help="longest wait for the fast-mode dataset before measuring anyway (default 150 s)",
    )
    p.add_argument(
        "--modes",
        nargs="+",
        choices=("light", "fast"),
        default=["light", "fast"],
        help="gateway pow modes to measure (default: light fast)",
    )
    p.add_argument(
        "--max-requests",
        type=int,
        default=1_000_000,
        help="hard cap on submissions per phase (default 1000000)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--keep-dir", action="store_true", help="keep the temporary directory (logs)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if not (0 < args.duration <= 600 and 0 <= args.warmup <= 60 and 1 <= args.connections <= 256):
        print(
            "need 0 < --duration <= 600, 0 <= --warmup <= 60, 1 <= --connections <= 256",
            file=sys.stderr,
        )
        return 2
    wall = time.monotonic()
    results: list[LoadResult] = []
    notes: dict[str, object] = {}
    extra = list(LIMIT_FLAGS)
    if args.verify_threads:
        extra += ["--verify-threads", str(args.verify_threads)]

    def measure(target: str, request: Request) -> LoadResult:
        return asyncio.run(
            run_load(
                target,
                args.connections,
                request,
                duration=args.duration,
                warmup=args.warmup,
                max_requests=args.max_requests,
            )
        )

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
            keys = [ClientKey() for _ in range(args.connections)]
            results.append(measure("monerod 0.18 (light)", prepare(paying.url, paying.url, keys)))
            paying.stop()
            for mode in args.modes:
                gw = start_gateway_process(
                    tmp,
                    plain.url,
                    difficulty=DIFFICULTY,
                    credits=CREDITS_PER_HASH,
                    pow_mode=mode,
                    log_level="info",
                    extra=extra,
                    name=f"gateway-{mode}",
                )
                gateways.append(gw)
                keys = [ClientKey() for _ in range(args.connections)]
                submitter = prepare(gw.public_url, gw.admin_url, keys)
                if mode == "fast":
                    # The first share builds the seed's cache, which starts the dataset build.
                    asyncio.run(run_load("trigger", 1, submitter, duration=0.5, warmup=0.0))
                    waited = wait_for_dataset(gw, args.dataset_timeout)
                    notes["fast_dataset_wait_s"] = None if waited is None else round(waited, 1)
                    if waited is None:
                        print(
                            "warning: dataset not ready in time; fast figure is partly light",
                            file=sys.stderr,
                        )
                results.append(measure(f"gateway --pow-mode {mode}", submitter))
                gw.stop()
        finally:
            for gw in gateways:
                gw.stop()
            paying.stop()
            plain.stop()

    ref = results[0].per_second
    ratios = {r.target: (r.per_second / ref if ref else None) for r in results[1:]}
    elapsed = time.monotonic() - wall
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "share_verification",
                    "reference": "monerod 0.18 rpc_access_submit_nonce (payment difficulty 1e9)",
                    "target_ratio": 5.0,
                    "connections": args.connections,
                    "results": [r.as_dict() for r in results],
                    "ratios_vs_monerod": ratios,
                    "notes": notes,
                    "wall_seconds": round(elapsed, 1),
                },
                indent=2,
            )
        )
        return 0
    print_table(
        f"rpc_access_submit_nonce, distinct nonces at difficulty 1e9 (each one hashed), "
        f"{args.connections} connections",
        ["server", "seconds", "hashed", "failed", "hashes/s", "ratio vs monerod"],
        [
            [
                r.target,
                r.seconds,
                r.ok,
                r.failed,
                r.per_second,
                "1.00x (reference)" if i == 0 else f"{ratios[r.target]:.2f}x",
            ]
            for i, r in enumerate(results)
        ],
    )
    for r in results:
        if r.failures:
            print(f"  failures in {r.target}: {r.failures}")
    if "fast_dataset_wait_s" in notes:
        print(f"  fast-mode dataset ready after {notes['fast_dataset_wait_s']} s of waiting")
    print("  target: gateway fast >= 5.00x monerod")
    print(f"\nwall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
