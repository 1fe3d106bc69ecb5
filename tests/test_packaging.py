"""Packaging for operators: the core (gateway, wallet, CLI) imports nothing of the lottery
extra, commands that need it say how to get it, and the contrib files are valid."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTRA = ("eth", "eth_abi", "eth_keys", "eth_account", "eth_utils", "eth_typing", "vyper")

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {EXTRA!r}:
                raise ModuleNotFoundError(f"blocked: {{name}}", name=name)
            return None
    sys.meta_path.insert(0, Block())
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_core_imports_nothing_of_the_lottery_extra() -> None:
    done = run_blocked(
        """
        import rpcpay.cli, rpcpay.gateway.server, rpcpay.wallet.commands, rpcpay.gateway.metrics
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("loaded:", loaded)
        """.replace("BLOCKED", repr(EXTRA))
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


def test_serve_help_and_a_lottery_command_without_the_extra() -> None:
    done = run_blocked(
        """
        from rpcpay.cli import main
        try:
            main(["serve", "--help"])
        except SystemExit as exit:
            assert exit.code == 0
        sys.exit(main(["chain", "--info-file", "/nonexistent/x.json", "--port", "0"]))
        """
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'rpcpay[lottery]'" in done.stderr and "Traceback" not in done.stderr


def test_the_evm_is_an_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "py-evm" not in core and "eth-abi" not in core
    assert any("py-evm" in d for d in project["optional-dependencies"]["lottery"])
    assert (REPO / "LICENSE").read_text().startswith("BSD 3-Clause License")


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: run scripts/setup.sh (Debian's systemd)")
    unit = tmp_path / "rpcpay.service"
    # ExecStart must exist for verify: point it at this venv's rpcpay.
    text = (REPO / "contrib" / "rpcpay.service").read_text()
    unit.write_text(
        text.replace("/usr/local/bin/rpcpay", str(Path(sys.executable).parent / "rpcpay"))
    )
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if str(unit) in line or "rpcpay.service" in line
    ]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
