"""Where rpcpay keeps its state by default: an absolute, per-user path.

Contract: ``default_data_dir(name)`` is, in order, systemd's ``$STATE_DIRECTORY`` (set by
``StateDirectory=`` in contrib/rpcpay.service; its first entry), ``$XDG_DATA_HOME/rpcpay/NAME``
and ``~/.local/share/rpcpay/NAME``. It never depends on the working directory, so a gateway
started from another directory finds the same ledger.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir(name: str) -> Path:
    """The default data directory of one kind of process (``gateway``, ``stamper``)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state and os.path.isabs(state):
        return Path(state)
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "rpcpay" / name
