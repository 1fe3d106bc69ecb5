"""Paid get_info calls/s with observability on (metrics, JSON access log, trusted-proxy
handling) against the same gateway with all of it off. Target: ratio >= 0.97.

Starts on loopback, in one run: a plain regtest monerod, and two gateway processes in front of
it (``rpcpay serve``, light PoW, default ledger sync):
  * ``on``:  metrics counted (the default), ``--access-log FILE``, ``--trusted-proxy
    127.0.0.1/32`` (every request carries ``X-Forwarded-For``, so the header is parsed);
  * ``off``: ``--no-metrics``, no access log, no trusted proxy (the header is sent and ignored).

The load generator is wrk (C, one thread per connection, one funded client key per
connection), replaying request bodies made beforehand: a paid call needs a freshly signed
client id with a timestamp above the key's last one and within 60 s of now, so before each
round every connection gets its own file of pre-signed bodies, in timestamp order, and wrk's
Lua script sends them in order. Signing happens between rounds, never while a gateway is
measured. Rounds alternate on/off (and which goes first), so the shared machine's noise falls
on both; the report gives the ratio of the medians and the median of the per-round ratios
(each round's two sides ran back to back, so that one cancels slower drifts in load). Every
answer is checked for ``"status":"OK"``; failures are counted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from _common import (
    GatewayProcess,
    fund,
    start_gateway_process,
    start_monerod,
    work_dir,
)

from rpcpay.wallet.keys import ClientKey

DIFFICULTY = 5
CREDITS_PER_HASH = 100
FUNDING = 10**12
FORWARDED_FOR = "203.0.113.9"

LUA = r"""
-- One thread per connection; thread N replays bodies-N.txt in order.
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  bodies = {}
  for line in io.lines(args[1] .. "/bodies-" .. id .. ".txt") do
    bodies[#bodies + 1] = line
  end
  next_body = 1
  ok = 0
  failed = 0
  exhausted = 0
  headers = {["Content-Type"] = "application/json", ["X-Forwarded-For"] = args[2]}
end
function request()
  local body = bodies[next_body]
  if body == nil then
    exhausted = exhausted + 1
    body = bodies[#bodies]
  else
    next_body = next_body + 1
  end
  return wrk.format("POST", "/json_rpc", headers, body)
end
function response(status, headers, body)
  if status == 200 and string.find(body, '"status":%s*"OK"') then
    ok = ok + 1
  else
    failed = failed + 1
  end
end
function done(summary, latency, requests)
  local total_ok, total_failed, total_exhausted = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_failed = total_failed + thread:get("failed")
    total_exhausted = total_exhausted + thread:get("exhausted")
  end
  io.write(string.format("RESULT %d %d %d %d\n", total_ok, total_failed, total_exhausted,
                         summary.duration))
end
"""


def make_bodies(directory: Path, keys: list[ClientKey], count: int) -> None:
    """``count`` pre-signed paid get_info bodies per key, one file per connection."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, key in enumerate(keys):
        with (directory / f"bodies-{index}.txt").open("w") as out:
            for _ in range(count):
                client = key.client_id()
                out.write(
                    '{"jsonrpc":"2.0","id":"0","method":"get_info","params":{"client":"'
                    + client
                    + '"}}\n'
                )


def run_wrk(
    url: str, script: Path, bodies: Path, connections: int, seconds: float
) -> dict[str, float]:
    done = subprocess.run(
        [
            "wrk", "-t", str(connections), "-c", str(connections), "-d", f"{seconds:g}s",
            "--timeout", "10s", "-s", str(script), url, "--", str(bodies), FORWARDED_FOR,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )  # fmt: skip
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    ok, failed, exhausted, micros = (int(x) for x in line.split()[1:])
    return {
        "ok": ok,
        "failed": failed,
        "exhausted": exhausted,
        "seconds": micros / 1e6,
        "per_second": ok / (micros / 1e6),
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Paid get_info/s through the gateway with metrics, access log and "
        "trusted-proxy handling on, against all of them off (wrk, rounds alternating). "
        "Prints the on/off ratio (target >= 0.97).",
    )
    p.add_argument("--rounds", type=int, default=6, help="rounds per side (default 6)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per round (default 4)")
    p.add_argument("--connections", type=int, default=2, help="connections (default 2)")
    p.add_argument(
        "--max-rate",
        type=int,
        default=6000,
        help="bodies are made for at most this many calls/s per round (default 6000)",
    )
    p.add_argument(
        "--only",
        choices=("metrics", "access-log", "trusted-proxy", "none"),
        help="turn on only this one of the three on the 'on' side, to see what each costs; "
        "none: both sides off, the bench's own noise and bias (default: all three)",
    )
    p.add_argument(
        "--access-log-file",
        help="where the 'on' gateway writes its access log, e.g. /dev/null to leave the disk "
        "out (default: a file in the temporary directory)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--keep-dir", action="store_true", help="keep the temporary directory")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if not 1 <= args.rounds <= 50 or not 0 < args.seconds <= 30 or not 1 <= args.connections <= 16:
        print("--rounds 1-50, --seconds (0, 30], --connections 1-16", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    keys = [ClientKey() for _ in range(args.connections)]
    per_conn = int(args.max_rate * args.seconds / args.connections) + 100
    results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with work_dir(args.keep_dir) as tmp:
        script = tmp / "replay.lua"
        script.write_text(LUA)
        monerod = start_monerod(tmp / "monerod")
        gateways: dict[str, GatewayProcess] = {}
        try:
            on_flags = {
                "metrics": [],
                "access-log": ["--access-log", args.access_log_file or str(tmp / "access.jsonl")],
                "trusted-proxy": ["--trusted-proxy", "127.0.0.1/32"],
            }
            extra = [f for name, fs in on_flags.items() if args.only in (None, name) for f in fs]
            if args.only not in (None, "metrics"):
                extra.append("--no-metrics")
            gateways["on"] = start_gateway_process(
                tmp, monerod.url, difficulty=DIFFICULTY, credits=CREDITS_PER_HASH,
                pow_mode="light", ledger_sync="normal", name="on", extra=extra,
            )  # fmt: skip
            gateways["off"] = start_gateway_process(
                tmp, monerod.url, difficulty=DIFFICULTY, credits=CREDITS_PER_HASH,
                pow_mode="light", ledger_sync="normal", name="off", extra=["--no-metrics"],
            )  # fmt: skip
            for gw in gateways.values():
                for key in keys:
                    fund(gw.admin_url, key.public.hex(), FUNDING)
            # Warm-up: one short unmeasured round each.
            for gw in gateways.values():
                make_bodies(tmp / "bodies", keys, per_conn // 4)
                run_wrk(gw.public_url, script, tmp / "bodies", args.connections, 1.0)
            for round_no in range(args.rounds):
                order = ["on", "off"] if round_no % 2 == 0 else ["off", "on"]
                for side in order:
                    # Bodies are signed now, between rounds (their ids expire after 60 s).
                    make_bodies(tmp / "bodies", keys, per_conn)
                    measured = run_wrk(
                        gateways[side].public_url,
                        script,
                        tmp / "bodies",
                        args.connections,
                        args.seconds,
                    )
                    results[side].append(measured)
            log = tmp / "access.jsonl"
            access_lines = sum(1 for _ in log.open()) if log.exists() else 0
            sample = json.loads(log.open().readline()) if access_lines else None
        finally:
            for gw in gateways.values():
                gw.stop()
            monerod.stop()
    medians = {side: statistics.median(r["per_second"] for r in rs) for side, rs in results.items()}
    ratio = medians["on"] / medians["off"]
    # Each round's on and off ran back to back: their ratio cancels slower noise.
    paired = statistics.median(
        on["per_second"] / off["per_second"]
        for on, off in zip(results["on"], results["off"], strict=True)
    )
    failures = {side: sum(int(r["failed"]) for r in rs) for side, rs in results.items()}
    exhausted = {side: sum(int(r["exhausted"]) for r in rs) for side, rs in results.items()}
    report = {
        "only": args.only or "all",
        "connections": args.connections,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "per_round": {s: [round(r["per_second"], 1) for r in rs] for s, rs in results.items()},
        "median_per_second": {s: round(v, 1) for s, v in medians.items()},
        "ratio_on_off": round(ratio, 4),
        "median_paired_ratio": round(paired, 4),
        "failed": failures,
        "bodies_exhausted": exhausted,
        "access_log_lines": access_lines,
        "access_log_sample": sample,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"on = {args.only or 'metrics, access log and trusted proxy'}")
        print(f"paid get_info/s, {args.connections} connections, {args.rounds} rounds of "
              f"{args.seconds:g} s per side (wrk, pre-signed bodies)")  # fmt: skip
        for side in ("off", "on"):
            print(f"  {side:>3}: median {medians[side]:,.0f}/s  rounds {report['per_round'][side]}")
        print(f"  ratio on/off (medians): {ratio:.3f}; median of per-round ratios: "
              f"{paired:.3f} (target >= 0.97)")  # fmt: skip
        print(f"  failed answers: {failures}; rounds that ran out of bodies: {exhausted}")
        print(f"  access log: {access_lines} lines, e.g. {json.dumps(sample)}")
    return 0 if all(v == 0 for v in failures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
