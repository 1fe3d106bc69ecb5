"""A secp256k1 key in a file, owner-only, made on first use if asked.

The stamper signs with this key, and the deposit it stakes is bound to its address:
the file is as valuable as the deposit. It is created ``0600`` (never through the
umask), refused if others can read it, and its content never reaches a log.

Two forms are read: an encrypted Ethereum keystore v3 file (JSON, what geth, clef and
``eth-account`` write; decrypted with eth-account, from the ``lottery`` extra) whose password
comes from the file named by ``RPCPAY_KEY_PASSWORD_FILE`` or from ``RPCPAY_KEY_PASSWORD``; and
64 raw hex digits, for development, with a warning in the log. Keys made here are raw hex
(development); for real funds make a keystore file (docs/operating.md).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

from rpcpay.errors import ConfigError
from rpcpay.lottery.eth import EthKey

__all__ = ["keystore_password", "load_key"]

log = logging.getLogger("rpcpay.lottery")

PASSWORD_ENV = "RPCPAY_KEY_PASSWORD"
PASSWORD_FILE_ENV = "RPCPAY_KEY_PASSWORD_FILE"


def keystore_password(path: Path) -> str:
    """The keystore password: the file named by $RPCPAY_KEY_PASSWORD_FILE, else
    $RPCPAY_KEY_PASSWORD; ConfigError saying how to give it otherwise."""
    named = os.environ.get(PASSWORD_FILE_ENV)
    if named:
        try:
            return Path(named).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{PASSWORD_FILE_ENV} {named}: cannot read it ({exc})") from None
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        raise ConfigError(
            f"key file {path} is an encrypted keystore: give its password in the file named "
            f"by {PASSWORD_FILE_ENV} or in {PASSWORD_ENV}"
        )
    return password


def _decrypt_keystore(path: Path, document: object) -> EthKey:
    try:
        from eth_account import Account
    except ImportError:
        raise ConfigError(
            f"key file {path} is a keystore; reading it needs eth-account: "
            "pip install 'rpcpay[lottery]'"
        ) from None
    try:
        secret = Account.decrypt(document, keystore_password(path))  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"key file {path}: cannot decrypt it ({exc})") from None
    return EthKey(bytes(secret))


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
    # A JSON object is a keystore v3 file.
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise ConfigError(f"key file {path} is neither a keystore nor hex") from None
        return _decrypt_keystore(path, document), False
    try:
        key = EthKey(bytes.fromhex(text.removeprefix("0x")))
    except ValueError:
        raise ConfigError(
            f"key file {path} must be a keystore v3 file or 64 hex digits (a secp256k1 key)"
        ) from None
    log.warning(
        "key file holds a raw hex key; fine for development, encrypt it as a keystore v3 "
        "file for real funds (docs/operating.md)",
        extra={"path": str(path)},
    )
    return key, False
