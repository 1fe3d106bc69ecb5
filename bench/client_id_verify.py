"""Cost of checking one client id, against libsodium's Ed25519 verify measured in the same run.

    python bench/client_id_verify.py [--rounds N] [--calls N] [--json]

Reference: libsodium's ``crypto_sign_open`` (RFC 8032 verify of a 32-byte message: one
decode, one double-scalar multiply, one encode, SHA-512), the closest thing on this machine to
the work a client id needs. Measured, per call, in µs:

- ``double_scalarmult_base``: rpcpay.wire._edwards's ``c*P + r*G`` alone (decode, multiply,
  encode), the curve part of a check when the key is not prepared;
- ``check_signature``: rpcpay.wire.ed25519's whole check of a signature (the per-key libsodium
  point check is cached, as it is for a client that signs every call with one key);
- ``verify_client_id``: the whole id check a paid call pays (hex, timestamp, Keccak, curve);
- ``verify_client_id_reference``: the same check step by step in Python around the same C
  multiply (the reference the fast path is tested against).

The cases alternate within every round, so load from elsewhere on the machine hits them alike;
the table gives the median round. Runs in about ``rounds * calls * 0.25 ms`` (bounded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from nacl import bindings as nacl

from rpcpay.wire import _edwards
from rpcpay.wire.client_id import make_client_id, verify_client_id, verify_client_id_reference
from rpcpay.wire.ed25519 import check_signature, generate_keypair
from rpcpay.wire.keccak import keccak256

REFERENCE = "libsodium crypto_sign_open"


def cases() -> dict[str, Callable[[], object]]:
    """The measured calls, each on fixed valid inputs (every one must succeed)."""
    seed = bytes(range(32))
    ed_pk, ed_sk = nacl.crypto_sign_seed_keypair(seed)
    signed = nacl.crypto_sign(b"m" * 32, ed_sk)
    sk, _pub = generate_keypair()
    now = time.time_ns() // 1000
    cid = make_client_id(sk, now)
    pub, ts, sig = bytes.fromhex(cid[:64]), cid[64:80].encode(), bytes.fromhex(cid[80:])
    prefix = keccak256(ts)
    c, r = sig[:32], sig[32:]
    # every case is checked once before timing: a failing call would time the wrong path
    assert nacl.crypto_sign_open(signed, ed_pk) == b"m" * 32
    assert _edwards.double_scalarmult_base(c, pub, r) is not None
    assert check_signature(prefix, pub, sig)
    assert verify_client_id(cid, now) is not None
    assert verify_client_id_reference(cid, now) is not None
    return {
        REFERENCE: lambda: nacl.crypto_sign_open(signed, ed_pk),
        "double_scalarmult_base": lambda: _edwards.double_scalarmult_base(c, pub, r),
        "check_signature": lambda: check_signature(prefix, pub, sig),
        "verify_client_id": lambda: verify_client_id(cid, now),
        "verify_client_id_reference": lambda: verify_client_id_reference(cid, now),
    }


def time_call(fn: Callable[[], object], calls: int) -> float:
    """Mean µs per call over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds (default 9)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per case and round")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.rounds < 1 or not 1 <= args.calls <= 100_000:
        parser.error("--rounds must be >= 1 and --calls within 1..100000")
    measured = cases()
    samples: dict[str, list[float]] = {name: [] for name in measured}
    for fn in measured.values():  # warm-up, uncounted
        time_call(fn, min(args.calls, 200))
    for _ in range(args.rounds):
        for name, fn in measured.items():
            samples[name].append(time_call(fn, args.calls))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ref = medians[REFERENCE]
    if args.json:
        print(
            json.dumps(
                {
                    "reference": REFERENCE,
                    "rounds": args.rounds,
                    "calls": args.calls,
                    "us_per_call": medians,
                    "ratio": {name: med / ref for name, med in medians.items()},
                }
            )
        )
        return
    print(f"{args.rounds} rounds x {args.calls} calls, median round, µs per call")
    print(f"{'case':<28} {'µs/call':>9} {'vs ' + REFERENCE:>32}")
    for name, med in medians.items():
        print(f"{name:<28} {med:>9.1f} {med / ref:>31.2f}x")


if __name__ == "__main__":
    main()
