"""Wallet sync of N regtest blocks: through the rpcpay gateway vs monerod 0.18's own payment.

    python bench/wallet_sync.py [--blocks N] [--rounds R] [--json] [--keep-dir]

Starts on loopback, in one run on this machine:
  * a plain regtest monerod (no payment) that the gateway fronts,
  * the gateway as its own process (``python -m rpcpay serve``, light PoW mode),
  * a regtest monerod with payment on (the reference; payment on its main port, so the admin
    method ``rpc_access_account`` can fund a client there),
and gives both monerods the *same* chain: N blocks are generated on the plain one and each is
copied to the paying one with ``submit_block`` as soon as it exists (the top hashes are
compared before measuring).

The client is Debian's unmodified monero-wallet-cli 0.18 (tests/support/wallet_cli.py), one
per server, each with the same pre-funded client key (``--rpc-client-secret-key``; funded with
``rpc_access_account`` on monerod's port and on the gateway's admin listener), auto-mining
and auto-refresh off, so the measured time is only the sync.  Opening a wallet syncs once
(a warm-up, not counted: it also fills monerod's page cache and the gateway's block cache).
Each round then times ``rescan_bc`` (forget the chain, sync all N blocks again: the wallet's
``/getblocks.bin`` calls, paid) on both wallets, alternating which goes first, from the
command to ``Refresh done, blocks received: N``.  Speed = blocks / second; the ratio is
gateway speed / monerod speed (target >= 1.0).  The credits each server charged in all
(funding minus what ``rpc_payment_info`` shows at the end) must agree; the exit code is 1
if they do not.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import threading
import time

from _common import (
    TEST_ADDRESS,
    GatewayProcess,
    MonerodProcess,
    fund,
    print_table,
    start_gateway_process,
    start_monerod,
    work_dir,
)
from tests.support.wallet_cli import (
    WalletCli,
    WalletKeys,
    create_wallet,
    open_wallet,
)

from rpcpay.wallet.keys import ClientKey

DIFFICULTY = 10
CREDITS_PER_HASH = 100
FUNDING = 10**12
_DONE = re.compile(r"Refresh done, blocks received: (\d+)")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="monero-wallet-cli 0.18 syncing N regtest blocks through the rpcpay "
        "gateway vs through monerod 0.18's built-in RPC payment (same chain, same machine, "
        "one run). Prints seconds per sync and the ratio gateway speed / monerod speed "
        "(target: >= 1.0).",
    )
    p.add_argument(
        "--blocks",
        type=int,
        default=2000,
        help="blocks on the chain the wallets sync; setting them up costs ~0.1 s per block "
        "(default 2000)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=20,
        help="timed syncs per server, alternating servers and which goes first; a sync of "
        "2000 blocks takes well under a second (default 20)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds one sync may take before the bench gives up (default 600)",
    )
    p.add_argument(
        "--wallet-log-level",
        default="0",
        help="monero-wallet-cli --log-level for both wallets; '0,default:DEBUG' logs the "
        "cost of every paid call (default 0)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument(
        "--keep-dir",
        action="store_true",
        help="keep the temporary directory (monerod, gateway and wallet logs)",
    )
    return p.parse_args()


def build_same_chain(plain: MonerodProcess, paying: MonerodProcess, blocks: int) -> str:
    """Generate ``blocks`` blocks on ``plain`` and copy each to ``paying``; returns the top
    hash both then share.  Generation (a thread) and copying overlap."""
    failures: list[BaseException] = []
    start = plain.height()

    def generate() -> None:
        try:
            left = blocks
            while left:
                n = min(100, left)
                plain.generate_blocks(n, TEST_ADDRESS)
                left -= n
        except BaseException as exc:  # reported by the copying loop
            failures.append(exc)

    generator = threading.Thread(target=generate, name="generateblocks", daemon=True)
    generator.start()
    target = start + blocks
    copied = paying.height()
    last_report = time.monotonic()
    while copied < target:
        if failures:
            raise RuntimeError(f"generateblocks failed: {failures[0]}")
        top = plain.height()
        if copied >= top:
            time.sleep(0.05)
            continue
        for height in range(copied, top):
            blob = plain.json_rpc("get_block", {"height": height})["result"]["blob"]
            answer = paying.post(
                "/json_rpc",
                {"jsonrpc": "2.0", "id": "0", "method": "submit_block", "params": [blob]},
            )
            if answer.get("result", {}).get("status") != "OK":
                raise RuntimeError(f"submit_block of height {height} failed: {answer}")
        copied = top
        if time.monotonic() - last_report > 15:
            print(f"chain: {copied - 1}/{target - 1} blocks on both", file=sys.stderr)
            last_report = time.monotonic()
    generator.join()
    plain_top = plain.post("/get_height")["hash"]
    paying_top = paying.post("/get_height")["hash"]
    if plain_top != paying_top:
        raise RuntimeError(f"the chains differ: {plain_top} vs {paying_top}")
    return str(plain_top)


def timed_rescan(wallet: WalletCli, expected: int, timeout: float) -> float:
    """Seconds for ``rescan_bc`` to resync every block; checks the count."""
    started = time.perf_counter()
    out = wallet.command("rescan_bc", until=_DONE.pattern, timeout=timeout)
    elapsed = time.perf_counter() - started
    found = _DONE.search(out)
    if found is None or int(found.group(1)) != expected:
        raise RuntimeError(f"{wallet.name}: expected {expected} blocks, got:\n{out[-2000:]}")
    return elapsed


def main() -> int:
    args = parse_args()
    if not 10 <= args.blocks <= 100_000 or not 1 <= args.rounds <= 100:
        print("--blocks must be in [10, 100000] and --rounds in [1, 100]", file=sys.stderr)
        return 2
    wall = time.monotonic()
    key = ClientKey()
    secret_hex = key.secret.hex()
    keys = WalletKeys.random()
    times: dict[str, list[float]] = {"monerod": [], "gateway": []}
    charged: dict[str, int] = {}
    with work_dir(args.keep_dir) as tmp:
        plain = start_monerod(tmp / "plain")
        paying = start_monerod(
            tmp / "paying",
            payment_address=TEST_ADDRESS,
            difficulty=DIFFICULTY,
            credits=CREDITS_PER_HASH,
        )
        gateway: GatewayProcess | None = None
        wallets: dict[str, WalletCli] = {}
        try:
            setup = time.monotonic()
            top = build_same_chain(plain, paying, args.blocks)
            chain_seconds = time.monotonic() - setup
            height = plain.height()
            print(
                f"chain: {height - 1} blocks on both monerods in {chain_seconds:.0f} s "
                f"(top {top[:16]}...)",
                file=sys.stderr,
            )
            gateway = start_gateway_process(
                tmp,
                plain.url,
                difficulty=DIFFICULTY,
                credits=CREDITS_PER_HASH,
                pow_mode="light",
            )
            fund(paying.url, key.public.hex(), FUNDING)
            fund(gateway.admin_url, key.public.hex(), FUNDING)
            ports = {
                "monerod": paying.rpc_port,
                "gateway": int(gateway.public_url.rsplit(":", 1)[1]),
            }
            settings = [
                ("auto-mine-for-rpc-payment-threshold", "0"),
                ("auto-refresh", "0"),
                ("ask-password", "0"),
            ]
            for name, port in ports.items():
                directory = tmp / f"wallet-{name}"
                create_wallet(directory, "bench", keys.spend_secret, settings=settings)
                wallets[name] = open_wallet(
                    directory,
                    "bench",
                    port,
                    log_level=args.wallet_log_level,
                    rpc_client_secret_key=secret_hex,
                    timeout=args.timeout,
                )
                # The opening sync is the warm-up; it must have seen the whole chain.
                wallets[name].expect(
                    rf"Refresh done, blocks received: {height - 1}\b",
                    since=0,
                    timeout=5,
                    what=f"the opening sync of {height - 1} blocks",
                )
            order = ["monerod", "gateway"]
            for round_no in range(args.rounds):
                for name in order if round_no % 2 == 0 else order[::-1]:
                    seconds = timed_rescan(wallets[name], height - 1, args.timeout)
                    times[name].append(seconds)
                    print(f"round {round_no + 1}: {name} {seconds:.2f} s", file=sys.stderr)
            for name, wallet in wallets.items():
                info = wallet.rpc_payment_info()
                if info.credits is None:
                    raise RuntimeError(f"{name}: rpc_payment_info showed no credits")
                charged[name] = FUNDING - info.credits
        finally:
            for wallet in wallets.values():
                wallet.close()
            if gateway is not None:
                gateway.stop()
            paying.stop()
            plain.stop()

    blocks = height - 1
    median = {name: statistics.median(t) for name, t in times.items()}
    speed = {name: blocks / median[name] for name in times}
    ratio = speed["gateway"] / speed["monerod"]
    same_cost = charged["monerod"] == charged["gateway"]
    elapsed = time.monotonic() - wall
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "wallet_sync",
                    "reference": "monerod 0.18 built-in RPC payment, monero-wallet-cli 0.18 "
                    "rescan_bc",
                    "blocks": blocks,
                    "seconds": times,
                    "median_seconds": median,
                    "blocks_per_second": speed,
                    "ratio_gateway_vs_monerod": ratio,
                    "target_ratio": 1.0,
                    "credits_charged": charged,
                    "same_credits_charged": same_cost,
                    "chain_setup_seconds": round(chain_seconds, 1),
                    "wall_seconds": round(elapsed, 1),
                },
                indent=2,
            )
        )
        return 0 if same_cost else 1
    print_table(
        f"monero-wallet-cli 0.18 rescan_bc of {blocks} regtest blocks, {args.rounds} rounds "
        "per server (alternating)",
        ["server", "median s", "min s", "max s", "blocks/s"],
        [
            [name, median[name], min(t), max(t), speed[name]]
            for name, t in (("monerod", times["monerod"]), ("gateway", times["gateway"]))
        ],
    )
    print(f"\nRatio gateway / monerod speed: {ratio:.2f}x (target >= 1.0)")
    print(
        f"credits charged for {args.rounds + 1} syncs (warm-up included): "
        f"monerod {charged['monerod']}, gateway {charged['gateway']}"
        + ("" if same_cost else "  <- DIFFERENT")
    )
    print(f"chain set-up {chain_seconds:.0f} s; wall time {elapsed:.1f} s")
    return 0 if same_cost else 1


if __name__ == "__main__":
    sys.exit(main())
