"""Hash rate of rpcpay's wallet ``Miner`` against the native RandomX library, same work.

    python bench/miner_speed.py [--mode light|fast] [--threads N] [--seconds S] [--json]

The native side is bench/native/randomx_bench.c (through ``NativeSide`` from
bench/randomx_binding.py): one VM per thread, randomx_calculate_hash in a C loop.  The
miner side is ``rpcpay.wallet.miner.Miner`` mining a 76-byte hashing blob at a difficulty
no hash meets, so it does everything it does for real (claim a nonce, build the blob, hash
through the pipelined API, compare against the difficulty) except deliver shares.  Rounds
alternate native/miner (and who goes first) so other load on the machine hits both alike;
an uncounted warm-up round per side comes first.  In fast mode each side builds its own
2 GiB dataset first (the miner in the background, as it would for a wallet; the bench waits
until every miner thread hashes from it).
Target: the miner at >= 0.95x native.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _extra in (HERE, HERE.parent / "src"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

from randomx_binding import KEY, NativeSide  # noqa: E402

from rpcpay.wallet.miner import Miner, MiningJob  # noqa: E402

#: A Monero-shaped hashing blob: versions, 5-byte varint timestamp, prev id, nonce at 39.
BLOB = b"\x10\x10" + b"\x80\x80\x80\x80\x01" + bytes(32) + bytes(4) + bytes(33)
#: No hash meets this: the miner never delivers a share, only hashes.
NEVER = 2**255


class MinerSide:
    """A ``Miner`` started for each round and stopped (threads parked) between them."""

    def __init__(self, mode: str, threads: int) -> None:
        self.miner = Miner(threads=threads, mode="fast" if mode == "fast" else "light")
        self.miner.set_job(MiningJob(BLOB, KEY, NEVER, cookie=1))
        if mode == "fast":
            print(f"miner: building dataset on {threads} threads...", file=sys.stderr)
            self.miner.start()
            started = time.monotonic()
            while self.miner.mode != "fast":
                # The build failed (out of memory): a light figure would be mislabelled.
                if time.monotonic() - started > 900:
                    sys.exit("miner never switched to fast mode")
                time.sleep(0.5)
            self.miner.stop()
            print(f"miner: fast mode after {time.monotonic() - started:.1f} s", file=sys.stderr)

    def run(self, seconds: float) -> tuple[int, float]:
        """(hashes, elapsed seconds) over all threads, in steady state."""
        miner = self.miner
        before = miner.hashes
        miner.start()
        # Start the clock at the first completed hash, not at wake-up: the C side's clock
        # starts with its threads hashing, and a parked pipeline needs one hash to refill.
        while miner.hashes == before:
            time.sleep(0.001)
        h0, t0 = miner.hashes, time.perf_counter()
        time.sleep(seconds)
        h1, t1 = miner.hashes, time.perf_counter()
        miner.stop()
        # Let the in-flight hashes end so they do not overlap the next native round.
        last = -1
        while miner.hashes != last:
            last = miner.hashes
            time.sleep(0.05)
        return h1 - h0, t1 - t0

    def close(self) -> None:
        self.miner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=("light", "fast"), default="light")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="per side, all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="alternating native/miner")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted, per side")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.threads < 1 or args.seconds <= 0 or args.rounds < 1 or args.warmup <= 0:
        parser.error("--threads, --seconds, --rounds and --warmup must be positive")

    hashes = {"native": 0, "miner": 0}
    secs = {"native": 0.0, "miner": 0.0}
    with tempfile.TemporaryDirectory(prefix="rpcpay-bench-") as tmp:
        native = NativeSide(args.mode, args.threads, Path(tmp))
        miner = MinerSide(args.mode, args.threads)
        try:
            sides = [("native", native.run), ("miner", miner.run)]
            # Not counted: fresh VMs hash slowly at first (scratchpad and JIT pages faulting
            # in; the miner also builds its cache at its first start).
            for _, run in sides:
                run(args.warmup)
            for r in range(args.rounds):
                # Alternate who goes first so a change in machine load hits both alike.
                for name, run in sides if r % 2 == 0 else sides[::-1]:
                    h, s = run(args.seconds / args.rounds)
                    hashes[name] += h
                    secs[name] += s
        finally:
            miner.close()
            native.close()
    rates = {name: hashes[name] / secs[name] for name in hashes}
    ratio = rates["miner"] / rates["native"]
    if args.json:
        print(
            json.dumps(
                {
                    "mode": args.mode,
                    "threads": args.threads,
                    "rounds": args.rounds,
                    "native_hps": round(rates["native"], 2),
                    "miner_hps": round(rates["miner"], 2),
                    "native_hashes": hashes["native"],
                    "miner_hashes": hashes["miner"],
                    "ratio": round(ratio, 4),
                    "target": 0.95,
                    "ok": ratio >= 0.95,
                }
            )
        )
        return
    print(f"mode={args.mode} threads={args.threads} seconds={args.seconds} rounds={args.rounds}")
    for name, label in (("native", "native C"), ("miner", "rpcpay Miner")):
        print(f"{label:12} : {rates[name]:9.2f} H/s  ({hashes[name]} hashes in {secs[name]:.2f} s)")
    print(f"ratio        : {ratio:9.3f}x native (target >= 0.95)")


if __name__ == "__main__":
    main()
