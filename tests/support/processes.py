"""Stopping the real peers the tests start (monerod, anvil, monero-wallet-cli)."""

from __future__ import annotations

import signal
import subprocess


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL; nothing if it already ended.

    Every harness needs the same escalation: a peer that ignores SIGTERM (or hangs while
    saving) must not keep a test run, or CI, waiting forever.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
