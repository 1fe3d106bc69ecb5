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
from tests.chain.conftest import World, anvil_world, make_world
from tests.chain.test_gas import BUDGET, run_gas_scenario
from tests.support.anvil import AnvilError, AnvilPool, anvil_binary


def measure(world: World) -> dict[str, int]:
    """tests/chain/test_gas.py's sequence, returning gas used per operation."""
    return {name: r.gas_used for name, r in run_gas_scenario(world).items()}


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
