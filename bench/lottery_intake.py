"""The payee's intake after issue 9, in process, on one core: gossip and payments.

1. **Gossip intake** of distinct, non-overlapping, stamped cheques from a peer
   (``GossipIntake.receive`` in batches of 64, the wire's batch): the cheap checks, one
   Keccak hash, a bisection, and keeping each cheque. Reference in the same run: decoding
   the same wire forms and hashing them (the floor any intake pays). Target: >= 5,000/s.
2. **Payments** (``ChequeIntake.pay``: chain reads cached, check_cheque, the Credit
   signature, the credit's SQLite commit) with the pacing rule on (default rate and
   burst; each cheque is one minute's 100 gwei and the gateway's clock moves a minute per
   cheque, so every cheque is credited at once) against the same with the rule off (a
   bucket deeper than any cheque), rounds alternating. Target: rule on >= 0.95x rule off.

The chain is the in-process EVM (read once and cached by the payee). Synchronous SQLite
``normal`` for the ledger, as the benchmarks of the gateway use.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import REPO, print_table  # noqa: F401  (REPO puts src/ on the path)

from rpcpay.chain import ContractParams, InProcessChain
from rpcpay.chain.inprocess import DEV_BALANCE, dev_keys
from rpcpay.gateway.cheque_book import ChequeBook
from rpcpay.gateway.cheques import ChequeDesk, LotterySettings
from rpcpay.ledger.cheque_bridge import ChequeDeskLedger
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.lottery.cheque import Cheque, StampedCheque, decode_stamped, encode_stamped
from rpcpay.lottery.eip712 import cheque_hash, sign_cheque, sign_credit, sign_stamp
from rpcpay.lottery.gossip import MAX_BATCH, GossipSender
from rpcpay.wallet.keys import ClientKey

PARAMS = ContractParams(max_reveal_delay=1000, redeem_blocks=20, proof_grace=10,
                        whistleblower_bps=1_000, compensation_bps=5_000)  # fmt: skip
MINUTE_WEI = 100 * 10**9
BURST_ON = 3 * MINUTE_WEI
TARGET_GOSSIP = 5_000


def world() -> tuple[InProcessChain, list, bytes]:  # type: ignore[type-arg]
    keys = dev_keys(6, b"bench intake")
    chain = InProcessChain(funded=keys, chain_id=1337, balance=DEV_BALANCE)
    chain.deploy(keys[0], PARAMS)
    chain.deposit_stamper(keys[1], 10**18)
    terms, _ = chain.create_lottery(keys[2], keys[1].address, 10**17, 900, b"\x01" * 32)
    chain.mine(2)
    return chain, keys, terms.id


def desk_for(chain: InProcessChain, keys: list, data: Path, burst: int) -> ChequeDesk:  # type: ignore[type-arg]
    store = SqliteLedgerStore(data / "ledger.sqlite3", synchronous="normal")
    settings = LotterySettings(contract=chain.contract, confirmations=1, reveal_margin=5,
                               burst_wei=burst)  # fmt: skip
    return ChequeDesk(chain, keys[3], store, ChequeDeskLedger(store), settings, GossipSender([]))


def signed(
    chain: InProcessChain, keys: list, lottery: bytes, to: bytes, start: int, value: int
) -> StampedCheque:  # type: ignore[type-arg]
    c = Cheque(lottery, to, start, value)
    return StampedCheque(
        c, sign_cheque(keys[2], chain.domain, c), sign_stamp(keys[1], chain.domain, c)
    )


async def run(args: argparse.Namespace) -> int:
    chain, keys, lottery = world()
    payee = keys[3].address
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # --- gossip ---------------------------------------------------------------------
        desk = desk_for(chain, keys, root / "g", 10**30)
        # Room for every round's cheques (the default bounds are 8,192 per sender).
        desk.core.book = ChequeBook(per_peer=10**6, per_recipient=10**6)
        n = args.gossip
        wires = [
            encode_stamped(chain.domain, signed(chain, keys, lottery, keys[4].address, 10 * i, 10))
            for i in range(n * args.rounds)
        ]
        best_in = best_ref = float("inf")
        for r in range(args.rounds):
            part = wires[r * n : (r + 1) * n]
            start = time.perf_counter()
            kept = 0
            for i in range(0, n, MAX_BATCH):
                rep = await desk.gossip_in.receive("peer", part[i : i + MAX_BATCH])
                kept += rep.held
            best_in = min(best_in, time.perf_counter() - start)
            assert kept == len(part), (kept, rep)
            start = time.perf_counter()
            for w in part:
                cheque_hash(decode_stamped(w)[1].cheque)
            best_ref = min(best_ref, time.perf_counter() - start)
        # --- payments ---------------------------------------------------------------------
        desks = {"rule on": desk_for(chain, keys, root / "on", BURST_ON),
                 "rule off": desk_for(chain, keys, root / "off", 10**30)}  # fmt: skip
        clocks = {name: [0.0] for name in desks}
        for name, d in desks.items():
            d.intake.clock = lambda c=clocks[name]: c[0]
        client = ClientKey()
        m = args.payments
        cheques = {name: [] for name in desks}  # type: ignore[var-annotated]
        for k, name in enumerate(desks):
            for i in range(m * args.rounds):
                sc = signed(chain, keys, lottery, payee, (k * 10**4 + i) * MINUTE_WEI, MINUTE_WEI)
                wire = encode_stamped(chain.domain, sc)
                cheques[name].append(
                    (wire, sign_credit(keys[2], chain.domain, sc.cheque, client.public))
                )
        best = dict.fromkeys(desks, float("inf"))
        for r in range(args.rounds):
            order = list(desks.items())
            for name, d in order if r % 2 else order[::-1]:  # alternating, who goes first too
                batch = cheques[name][r * m : (r + 1) * m]
                start = time.perf_counter()
                for wire, sig in batch:
                    out = await d.pay(client.public, wire, sig)
                    clocks[name][0] += 60
                    assert getattr(out, "held", None) == 0, out
                best[name] = min(best[name], time.perf_counter() - start)
    rows = [
        ["gossip intake, non-overlapping (receive)", best_in / n * 1e6, n / best_in],
        ["reference: decode + hash only", best_ref / n * 1e6, n / best_ref],
        ["lottery_pay_cheque, pacing rule on", best["rule on"] / m * 1e6, m / best["rule on"]],
        ["reference: the same, rule off", best["rule off"] / m * 1e6, m / best["rule off"]],
    ]
    print_table(f"payee intake, one core, best of {args.rounds} alternating rounds",
                ["what", "µs per cheque", "cheques/s"], rows)  # fmt: skip
    rate = n / best_in
    ratio = best["rule off"] / best["rule on"]
    print(f"\ngossip intake / decode+hash floor: {best_in / best_ref:.2f}x the time")
    print(f"gossip intake >= {TARGET_GOSSIP:,}/s per core: "
          f"{'met' if rate >= TARGET_GOSSIP else 'NOT met'} ({rate:,.0f}/s)")  # fmt: skip
    print(f"payments with the pacing rule / without: {ratio:.3f}x the rate "
          f"({'met' if ratio >= 0.95 else 'NOT met'}: >= 0.95x)")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gossip", type=int, default=4096, help="gossiped cheques a round")
    parser.add_argument("--payments", type=int, default=200, help="payments a round per rule")
    parser.add_argument("--rounds", type=int, default=10, help="rounds; the best is reported")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
