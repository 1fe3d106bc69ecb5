"""scripts/demo_lottery.sh end to end: the whole lottery rail through the CLI (rpcpay chain,
stamper deposit + run, three rpcpay serve gateways, wallet lottery-deposit/-pay/-status,
rpcpay payments), with small numbers. Checks what each gateway credited, at its price."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 2


def test_demo_lottery_script_pays_three_gateways_through_the_cli(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ROUNDS": str(ROUNDS), "INTERVAL": "0.5", "TMPDIR": str(tmp_path),
           "RPCPAY": str(bindir / "rpcpay"), "PY": sys.executable}  # fmt: skip
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo_lottery.sh")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    # Every round paid all three servers, addresses learnt from lottery_info.
    assert f"round {ROUNDS}: last round 3/3 paid;" in out, out
    assert out.count("payee 0x") == 3 and " 0 unpaid;" in out, out
    # 100 gwei a round at 1, 3 and 7 gwei a credit: 100, 33 and 14 credits a round.
    totals = [int(n) for n in re.findall(r"1 clients with a total of (\d+) credits", out)]
    assert totals == [ROUNDS * 100, ROUNDS * 33, ROUNDS * 14], out
    assert re.search(r"lottery  0x[0-9a-f]{64}: prize 10000000000000 wei, handed out [1-9]", out)
    # The trap stopped every process and removed the work directory.
    assert list(tmp_path.iterdir()) == [], out
