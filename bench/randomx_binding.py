"""Hash rate of rpcpay's ctypes RandomX binding against the native library, same work.

    python bench/randomx_binding.py [--mode light|fast] [--threads N] [--seconds S]

Both sides use randomx_get_flags(), one VM per thread, 76-byte blobs with a 4-byte nonce
at offset 39 (a Monero hashing blob's shape).  The native side is bench/native/
randomx_bench.c, compiled on the fly with ``cc -O2 ... -lrandomx -lpthread`` into a temp
dir.  The ratio shows what ctypes costs: it releases the GIL for each hash, so N Python
threads should run at ~N cores (target ≥ 0.95x native).  Fast mode builds the 2 GiB dataset
once per side (~64 s of CPU each, divided by N threads); the sides then
alternate for ``--rounds`` rounds so that other load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from rpcpay.pow.randomx import RandomXCache, RandomXDataset, RandomXVM

KEY = b"rpcpay bench key"
BLOB_SIZE = 76
NONCE_OFFSET = 39
NATIVE_SOURCE = Path(__file__).resolve().parent / "native" / "randomx_bench.c"


class PythonSide:
    """``threads`` Python threads, each with its own VM, on one cache (and dataset)."""

    def __init__(self, mode: str, threads: int) -> None:
        self.cache = RandomXCache(KEY)
        self.dataset: RandomXDataset | None = None
        if mode == "fast":
            print(f"python: building dataset on {threads} threads...", file=sys.stderr)
            last = -1

            def progress(done: int, total: int) -> None:
                nonlocal last
                pct = done * 100 // total
                if pct // 10 != last // 10:
                    print(f"  {pct}%", file=sys.stderr)
                last = pct

            self.dataset = RandomXDataset.build(self.cache, threads, progress)
        self.vms = [RandomXVM(self.cache, self.dataset) for _ in range(threads)]

    def run(self, seconds: float) -> tuple[int, float]:
        """(hashes, elapsed seconds) over all threads."""
        threads = len(self.vms)
        counts = [0] * threads
        barrier = threading.Barrier(threads + 1)
        deadline = 0.0

        def loop(i: int) -> None:
            vm = self.vms[i]
            blob = bytearray(BLOB_SIZE)
            blob[0] = i
            nonce = 0
            barrier.wait()
            while time.perf_counter() < deadline:
                blob[NONCE_OFFSET : NONCE_OFFSET + 4] = nonce.to_bytes(4, "little")
                vm.hash(bytes(blob))
                nonce += 1
            counts[i] = nonce

        workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
        for t in workers:
            t.start()
        start = time.perf_counter()
        deadline = start + seconds
        barrier.wait()
        for t in workers:
            t.join()
        return sum(counts), time.perf_counter() - start

    def close(self) -> None:
        for vm in self.vms:
            vm.close()
        if self.dataset is not None:
            self.dataset.close()
        self.cache.close()


class NativeSide:
    """The compiled C baseline, kept running between rounds (set up once)."""

    def __init__(self, mode: str, threads: int, tmp: Path) -> None:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            sys.exit("no C compiler (cc) found: apt-get install gcc")
        exe = tmp / "randomx_bench"
        subprocess.run(
            [cc, "-O2", "-o", str(exe), str(NATIVE_SOURCE), "-lrandomx", "-lpthread"],
            check=True,
        )
        self.proc = subprocess.Popen(
            [str(exe), mode, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            sys.exit("native benchmark failed to start")

    def run(self, seconds: float) -> tuple[int, float]:
        """(hashes, elapsed seconds) over all threads."""
        self.stdin.write(f"{seconds}\n")
        self.stdin.flush()
        fields = dict(part.split("=", 1) for part in self.stdout.readline().split())
        return int(fields["hashes"]), float(fields["seconds"])

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("light", "fast"), default="light")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=10.0, help="per side, all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="alternating native/binding")
    args = parser.parse_args()
    if args.threads < 1 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--threads, --seconds and --rounds must be positive")

    print(f"mode={args.mode} threads={args.threads} seconds={args.seconds} rounds={args.rounds}")
    total_hashes = {"native": 0, "binding": 0}
    total_secs = {"native": 0.0, "binding": 0.0}
    with tempfile.TemporaryDirectory(prefix="rpcpay-bench-") as tmp:
        native = NativeSide(args.mode, args.threads, Path(tmp))
        binding = PythonSide(args.mode, args.threads)
        try:
            sides = [("native", native.run), ("binding", binding.run)]
            for r in range(args.rounds):
                # Alternate who goes first so a change in machine load hits both alike.
                for name, run in sides if r % 2 == 0 else sides[::-1]:
                    hashes, secs = run(args.seconds / args.rounds)
                    total_hashes[name] += hashes
                    total_secs[name] += secs
        finally:
            binding.close()
            native.close()
    rates = {name: total_hashes[name] / total_secs[name] for name in total_hashes}
    for name, label in (("native", "native C      "), ("binding", "ctypes binding")):
        hashes, secs = total_hashes[name], total_secs[name]
        print(f"{label} : {rates[name]:9.2f} H/s  ({hashes} hashes in {secs:.2f} s)")
    print(f"ratio          : {rates['binding'] / rates['native']:9.3f}x native (target >= 0.95)")


if __name__ == "__main__":
    main()
