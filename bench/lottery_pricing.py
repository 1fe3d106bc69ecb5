"""The seed's pricing example worked through with the implemented fees and measured gas.

Seed 000 prices a minimal capacity slot at about 1 USD a month; vipnode charges 100 gwei
a minute per server. Under the stamped lottery a payer pays each server that price in
expected value (a cheque a minute), plus the stamper's fee (``DEFAULT_FEE_BPS``, rounded
up per cheque as ``stamper.fee_for`` does), plus, per lottery, the gas to create it and
(almost always, since it spends a small part of its prize) to have it refunded. A payee
pays a claim's gas each time it wins the prize: per wei earned that is
``claim gas cost / prize``.

All gas figures are measured in this run on the in-process EVM (the same bytecode and
gas as anvil, see bench/lottery_gas.py). The reference is the price itself: every
overhead is printed as a percentage of what the servers are paid.
"""

from __future__ import annotations

import argparse

from _common import REPO, print_table  # noqa: F401  (REPO puts src/ and tests/ on the path)
from lottery_gas import measure
from tests.chain.conftest import make_world

from rpcpay.lottery.stamper import DEFAULT_FEE_BPS, fee_for
from rpcpay.wallet.lottery_payer import (
    DEFAULT_PRICE_PER_MINUTE,
    DEFAULT_PRIZE,
    DEFAULT_REVEAL_BLOCKS,
)

MINUTES_PER_MONTH = 30 * 24 * 60
BLOCK_SECONDS = 12
GWEI = 10**9
ETH = 10**18


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--eth-usd", type=float, default=3000.0, help="USD per ETH (default: %(default)s)"
    )
    parser.add_argument(
        "--gas-gwei", type=float, default=10.0, help="gas price in gwei (default: %(default)s)"
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=3,
        help="servers one payer pays from one lottery (default: %(default)s)",
    )
    parser.add_argument(
        "--prize",
        type=int,
        default=DEFAULT_PRIZE,
        help="lottery prize in wei (default: %(default)s, wallet's default)",
    )
    parser.add_argument(
        "--lottery-blocks",
        type=int,
        default=DEFAULT_REVEAL_BLOCKS,
        help="blocks a lottery lasts (default: %(default)s, wallet's default)",
    )
    args = parser.parse_args()  # fmt: skip
    gas = measure(make_world())
    gas_price = args.gas_gwei * GWEI
    usd = args.eth_usd / ETH
    lottery_minutes = args.lottery_blocks * BLOCK_SECONDS / 60
    per_lottery_gas = (gas["create_lottery"] + gas["refund"]) * gas_price
    claim_cost = gas["claim"] * gas_price
    slot_usd_per_month = 1.0
    slot_price = round(slot_usd_per_month / MINUTES_PER_MONTH / usd)  # wei per minute
    scenarios = [("vipnode, 100 gwei/min", DEFAULT_PRICE_PER_MINUTE),
                 ("seed slot, 1 USD/month", slot_price)]  # fmt: skip
    rows = []
    for name, price in scenarios:
        paid = price * MINUTES_PER_MONTH * args.servers  # to the servers, per month
        fee = fee_for(price, DEFAULT_FEE_BPS) * MINUTES_PER_MONTH * args.servers
        # A lottery ends at its reveal, or earlier once its prize is handed out.
        lotteries_per_month = max(MINUTES_PER_MONTH / lottery_minutes, (paid + fee) / args.prize)
        payer_chain = per_lottery_gas * lotteries_per_month
        rows.append(
            [
                name,
                f"{price / GWEI:,.2f}",
                f"{paid / ETH:.6f}",
                f"{paid * usd:,.2f}",
                f"{100 * fee / paid:.2f}%",
                f"{100 * payer_chain / paid:.1f}%",
                f"{100 * claim_cost / args.prize:.2f}%",
                f"{100 * (fee + payer_chain) / paid + 100 * claim_cost / args.prize:.1f}%",
            ]
        )
    print_table(
        f"{args.servers} servers for 30 days; {args.gas_gwei:g} gwei/gas, "
        f"{args.eth_usd:g} USD/ETH, "
        f"prize {args.prize / ETH:g} ETH, a lottery every {lottery_minutes / 1440:g} days "
        "or when its prize is handed out",
        ["price", "gwei/min/server", "ETH/month paid", "USD/month paid", "stamper fee",
         "payer gas (create+refund)", "payee gas (claim/prize)", "total overhead"],
        rows,
    )  # fmt: skip
    print(
        f"\nmeasured gas: create_lottery {gas['create_lottery']:,}, refund {gas['refund']:,}, "
        f"claim {gas['claim']:,}, prove_fraud {gas['prove_fraud']:,}"
    )
    print(f"seed slot: 1 USD/month = {slot_price / GWEI:.2f} gwei/min at {args.eth_usd:g} USD/ETH")
    per_lottery = per_lottery_gas
    for name, price in scenarios:
        # Server-minutes one lottery must carry for its create+refund gas to be 1% of the payments.
        minutes = 100 * per_lottery / price
        print(
            f"{name}: a lottery's create+refund gas is 1% of payments after "
            f"{minutes:,.0f} server-minutes ({minutes / MINUTES_PER_MONTH:,.1f} server-months)"
        )
    print(f"payee: a claim is 1% of the prize at a prize of {100 * claim_cost / ETH:.4f} ETH")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
