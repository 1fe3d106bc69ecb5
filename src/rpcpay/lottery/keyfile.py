"""A secp256k1 key in a file: 64 hex digits, owner-only, made on first use if asked.

The stamper signs with this key, and the deposit it stakes is bound to its address:
the file is as valuable as the deposit. It is created ``0600`` (never through the
umask), refused if others can read it, and its content never reaches a log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rpcpay.errors import ConfigError
from rpcpay.lottery.eth import EthKey

__all__ = ["load_key"]


def load_key(path: Path, *, create: bool) -> tuple[EthKey, bool]:
    """The key in ``path``, and whether it was just made (only when ``create``)."""
    if not path.exists():
        # Only a caller that will serve with it makes a new key.
        if not create:
            raise ConfigError(f"no key file {path}")
        key = EthKey.generate()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.secret.hex() + "\n")
        return key, True
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
    # Nobody but the owner may read the key.
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key file {path} is readable by others: chmod 600 it")
    try:
        return EthKey(bytes.fromhex(text.removeprefix("0x"))), False
    except ValueError:
        raise ConfigError(f"key file {path} must hold 64 hex digits (a secp256k1 key)") from None
