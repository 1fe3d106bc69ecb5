"""Regenerate the shipped contract artifact from its source (dev only: needs Vyper).

python -m rpcpay.chain.build
"""

from __future__ import annotations

import json
from pathlib import Path

from rpcpay.chain.artifact import CONTRACT_NAME, compile_artifact


def main() -> None:
    """Compile ``contracts/stamped_lottery.vy`` and write the JSON beside it."""
    path = Path(__file__).parent / "contracts" / f"{CONTRACT_NAME}.json"
    path.write_text(json.dumps(compile_artifact(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
