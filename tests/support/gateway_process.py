"""``rpcpay serve`` as a real child process, for tests that signal it or count its files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.monerod import free_port
from tests.support.processes import stop_process


@dataclass
class GatewayProcess:
    """A running ``rpcpay serve``; stop it with ``stop()``."""

    port: int
    admin_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _log: IO[bytes] = field(repr=False)

    def open_files(self) -> int:
        """How many file descriptors the gateway holds now."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, 30)
        self._log.close()


def start_gateway_process(upstream: str, data_dir: Path, *args: str) -> GatewayProcess:
    """Start ``rpcpay serve`` (light PoW, difficulty 2, free ports) in front of ``upstream``
    with extra ``args``; returns once its public port accepts connections."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port, admin_port = free_port(), free_port()
    log_path = data_dir / "gateway.log"
    log = log_path.open("wb")
    command = [
        sys.executable,
        "-m",
        "rpcpay",
        "serve",
        "--upstream",
        upstream,
        "--rpc-bind-port",
        str(port),
        "--admin-bind-port",
        str(admin_port),
        "--data-dir",
        str(data_dir),
        "--pow-mode",
        "light",
        "--verify-threads",
        "1",
        "--rpc-payment-difficulty",
        "2",
        "--rpc-payment-credits",
        "50",
        *args,
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    gateway = GatewayProcess(port, admin_port, data_dir, log_path, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            gateway.stop()
            raise RuntimeError(f"rpcpay serve exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return gateway
        except OSError:
            time.sleep(0.1)
    gateway.stop()
    raise RuntimeError(f"rpcpay serve did not listen: {log_path.read_text()[-2000:]}")
