"""Gas per lottery transaction: claim, fraud proof and the rest, on py-evm and on anvil.

Runs the same sequence on the in-process EVM (``InProcessChain``) and, if anvil from npm
is installed (``scripts/setup.sh``), on anvil through ``JsonRpcChain``: deposit, create,
draw, claim (which draws), claim after a draw, a claim that slashes and compensates,
a fraud proof, a refund, an exit. Each figure is one mined transaction's ``gasUsed``.

Reference: the budgets of ``tests/chain/test_gas.py`` (about 25% above what Vyper 0.4.3
produced when they were set); the ratio column is measured / budget. At the end, the
claim's cost in ETH and USD at a few gas prices, and the prize at which a claim costs 1%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import REPO, print_table  # noqa: F401  (REPO puts src/ and tests/ on the path)
from tests.chain.conftest import PRIZE, World, anvil_world, make_world
from tests.chain.test_gas import BUDGET
from tests.support.anvil import AnvilError, AnvilPool, anvil_binary

from rpcpay.chain import Receipt


def measure(world: World) -> dict[str, int]:
    """The sequence of tests/chain/test_gas.py, returning gas used per operation."""
    c = world.chain
    gas: dict[str, Receipt] = {}
    gas["deposit_stamper"] = c.deposit_stamper(world.carol, 10**18)
    head = c.block_number()
    t1, gas["create_lottery"] = c.create_lottery(
        world.payer, world.stamper.address, PRIZE, head + 5, b"\x01" * 32
    )
    t2, _ = c.create_lottery(world.payer, world.stamper.address, PRIZE, head + 6, b"\x02" * 32)
    t4, _ = c.create_lottery(world.payer, world.stamper.address, PRIZE, head + 5, b"\x04" * 32)
    win1 = world.cheque(t1, world.alice, 0, PRIZE)
    win2 = world.cheque(t2, world.alice, 0, PRIZE)
    world.reveal(t2)
    gas["claim"] = c.claim(world.alice, win1)
    gas["draw"] = c.draw(world.bob, t2.id)
    gas["claim_after_draw"] = c.claim(world.alice, win2)
    gas["claim_compensated"] = c.claim(world.bob, world.cheque(t1, world.bob, 0, PRIZE))
    t3, _ = c.create_lottery(
        world.payer, world.carol.address, PRIZE, c.block_number() + 5, b"\x03" * 32
    )
    a = world.cheque(t3, world.alice, 0, 10, stamper=world.carol)
    b = world.cheque(t3, world.bob, 5, 10, stamper=world.carol)
    gas["prove_fraud"] = c.prove_fraud(world.alice, a, b)
    c.mine(t4.reveal_block + c.params().redeem_blocks - c.block_number())
    gas["refund"] = c.refund(world.payer, t4.id)
    c.deposit_stamper(world.mallory, 1)
    gas["request_exit"] = c.request_exit(world.mallory)
    return {name: r.gas_used for name, r in gas.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-anvil", action="store_true", help="measure on py-evm only")
    parser.add_argument(
        "--eth-usd", type=float, default=3000.0, help="USD per ETH for the cost lines "
        "(default: %(default)s)"
    )  # fmt: skip
    args = parser.parse_args()
    results = {"py-evm": measure(make_world())}
    if not args.no_anvil:
        try:
            anvil_binary()
            with tempfile.TemporaryDirectory() as tmp:
                pool = AnvilPool(Path(tmp))
                try:
                    results["anvil"] = measure(anvil_world(pool))
                finally:
                    pool.close()
        except AnvilError as exc:
            print(f"anvil skipped: {exc}", file=sys.stderr)
    backends = list(results)
    rows = []
    for name, budget in BUDGET.items():
        row = [name] + [f"{results[b][name]:,}" for b in backends]
        row += [f"{budget:,}", f"{results['py-evm'][name] / budget:.2f}"]
        rows.append(row)
    print_table(
        "gas per transaction (Vyper 0.4.3, Cancun)",
        ["transaction", *backends, "budget (test_gas.py)", "py-evm / budget"],
        rows,
    )
    same = all(results[b] == results["py-evm"] for b in backends)
    print(f"\nidentical on {' and '.join(backends)}: {'yes' if same else 'NO'}")
    claim = results["py-evm"]["claim"]
    for gwei in (1, 10, 30):
        eth = claim * gwei * 1e-9
        print(f"claim at {gwei:>2} gwei/gas: {eth:.6f} ETH = {eth * args.eth_usd:.3f} USD; "
              f"prize for a 1% claim overhead: {100 * eth:.4f} ETH")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
