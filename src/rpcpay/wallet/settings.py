"""The wallet file: the three pay-for-RPC settings of monero-wallet-cli 0.18, plus mining state.

The file is JSON, owner-only (0600, in a 0700 directory when we create it), and replaced
atomically on every save, so a keeper polling it never reads half a file. It may hold the client
secret key, and anyone who knows that key can spend its credits: a file that group or others
can read is refused rather than used.

Settings, as monero-wallet-cli 0.18 names them:

- ``credits_target`` (credits-target): the balance the wallet mines up to; 0 means 50000.
- ``auto_mine_threshold`` (auto-mine-for-rpc-payment-threshold): the lowest rate, in credits per
  hash, worth mining for. The default, -1.0, is wallet2's: any rate the daemon offers is taken.
  Unlike monero-wallet-cli, 0 does not switch auto-mining off here (it means "any rate" too);
  ``auto_mine`` does that.
- ``persistent_client_id`` (persistent-rpc-client-id): off by default, so each run gets a new
  client id and a node cannot link runs; on, the key is generated once and kept in this file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rpcpay.errors import ConfigError, WireError
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire.ed25519 import secret_to_public

#: What credits_target 0 means (monero-wallet-cli's CREDITS_TARGET).
DEFAULT_CREDITS_TARGET = 50_000
#: wallet2's default auto-mine-for-rpc-payment-threshold: mine at any rate.
DEFAULT_AUTO_MINE_THRESHOLD = -1.0
#: Below this rate, or above MAX_PAYMENT_DIFF, monero-wallet-cli calls the offer "low".
MIN_PAYMENT_RATE = 0.01
MAX_PAYMENT_DIFF = 10_000

SECRET_WARNING = "anyone who knows this key can spend its credits; keep it secret"


@dataclass(frozen=True, slots=True)
class WalletSettings:
    """Everything the wallet file holds."""

    credits_target: int = 0
    auto_mine_threshold: float = DEFAULT_AUTO_MINE_THRESHOLD
    persistent_client_id: bool = False
    client_secret_key: bytes | None = None
    mining_threads: int = 0  # 0: one per CPU
    auto_mine: bool = True
    mining_requested: bool = False  # start_mining_for_rpc: mine whatever the rate and target
    mining_stopped: bool = False  # stop_mining_for_rpc: a running keeper stops its miner

    @property
    def effective_credits_target(self) -> int:
        """The target balance: ``credits_target``, or 50000 when it is 0."""
        return self.credits_target or DEFAULT_CREDITS_TARGET

    def __repr__(self) -> str:
        # Never let the secret reach a log line or a traceback.
        shown = "<set>" if self.client_secret_key is not None else None
        return (
            f"WalletSettings(credits_target={self.credits_target}, "
            f"auto_mine_threshold={self.auto_mine_threshold}, "
            f"persistent_client_id={self.persistent_client_id}, client_secret_key={shown}, "
            f"mining_threads={self.mining_threads}, auto_mine={self.auto_mine}, "
            f"mining_requested={self.mining_requested}, mining_stopped={self.mining_stopped})"
        )


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "credits_target": (int,),
    "auto_mine_threshold": (int, float),
    "persistent_client_id": (bool,),
    "client_secret_key": (str, type(None)),
    "mining_threads": (int,),
    "auto_mine": (bool,),
    "mining_requested": (bool,),
    "mining_stopped": (bool,),
}
_TYPE_NAMES = {
    "credits_target": "an integer >= 0",
    "auto_mine_threshold": "a number >= 0 (or -1 for any rate)",
    "persistent_client_id": "true or false",
    "client_secret_key": "64 hex characters or null",
    "mining_threads": "an integer >= 0",
    "auto_mine": "true or false",
    "mining_requested": "true or false",
    "mining_stopped": "true or false",
}
assert set(_FIELD_TYPES) == {f.name for f in fields(WalletSettings)}


def parse_secret_key(text: str) -> bytes:
    """A client secret key from 64 hex characters; ConfigError (never echoing it) otherwise."""
    text = text.strip()
    if len(text) != 64:
        raise ConfigError(f"a client secret key is 64 hex characters, not {len(text)}")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ConfigError("a client secret key is 64 hex characters (0-9, a-f)") from None
    try:
        secret_to_public(secret)
    except WireError:
        raise ConfigError(
            "the client secret key is not a valid ed25519 scalar (it must be non-zero and "
            "below the group order, as monerod's sc_check demands)"
        ) from None
    return secret


def validate_settings(settings: WalletSettings) -> None:
    """ConfigError when a value is out of range."""
    if settings.credits_target < 0:
        raise ConfigError("credits_target must be 0 (meaning 50000) or more")
    threshold = settings.auto_mine_threshold
    if not math.isfinite(threshold) or (threshold < 0 and threshold != -1.0):
        raise ConfigError("auto_mine_threshold must be a number >= 0, or -1 for any rate")
    if settings.mining_threads < 0:
        raise ConfigError("mining_threads must be 0 (one per CPU) or more")
    if settings.client_secret_key is not None:
        parse_secret_key(settings.client_secret_key.hex())


def settings_to_json(settings: WalletSettings) -> dict[str, Any]:
    """The file's JSON object."""
    document: dict[str, Any] = {}
    for f in fields(WalletSettings):
        value = getattr(settings, f.name)
        document[f.name] = value.hex() if isinstance(value, bytes) else value
    return document


def settings_from_json(document: Any, source: str = "wallet file") -> WalletSettings:
    """Settings from the file's JSON object; ConfigError naming the bad key otherwise."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a JSON object of settings")
    unknown = sorted(set(document) - set(_FIELD_TYPES))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(_FIELD_TYPES)}"
        )
    values: dict[str, Any] = {}
    for name, raw in document.items():
        allowed = _FIELD_TYPES[name]
        # bool is an int in Python, and JSON true must not pass for a number.
        wrong_bool = isinstance(raw, bool) and bool not in allowed
        if wrong_bool or not isinstance(raw, allowed):
            raise ConfigError(f"{source}: {name} must be {_TYPE_NAMES[name]}")
        value: Any = raw
        if name == "client_secret_key" and value is not None:
            try:
                value = parse_secret_key(value)
            except ConfigError as exc:
                raise ConfigError(f"{source}: client_secret_key: {exc}") from None
        elif name == "auto_mine_threshold":
            value = float(value)
        values[name] = value
    settings = WalletSettings(**values)
    try:
        validate_settings(settings)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return settings


def load_wallet(path: Path) -> WalletSettings:
    """The settings in ``path``; defaults when it does not exist yet.

    Refuses a file group or others may read or write, since it can hold the client key.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return WalletSettings()
    except OSError as exc:
        raise ConfigError(f"cannot open wallet file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"wallet file {path} is not a regular file")
        if mode & 0o077:
            raise ConfigError(
                f"wallet file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}) and may hold your client secret key; "
                f"fix it with: chmod 600 {path}"
            )
        raw = handle.read()
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"wallet file {path} is not valid JSON ({exc}); fix or remove it"
        ) from None
    return settings_from_json(document, f"wallet file {path}")


def save_wallet(path: Path, settings: WalletSettings) -> None:
    """Write ``settings`` to ``path`` atomically, owner-only (0600)."""
    validate_settings(settings)
    write_private_json(path, settings_to_json(settings))


def write_private_json(path: Path, document: Any) -> None:
    """Write JSON atomically (temp file + os.replace), mode 0600; parent created 0700."""
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def update_wallet(path: Path, **changes: Any) -> WalletSettings:
    """Load, change and save; the new settings.

    Turning ``persistent_client_id`` off forgets the stored key, for privacy.
    """
    settings = replace(load_wallet(path), **changes)
    if not settings.persistent_client_id and "client_secret_key" not in changes:
        settings = replace(settings, client_secret_key=None)
    save_wallet(path, settings)
    return settings


def client_key_for(
    settings: WalletSettings, override_secret: bytes | None, *, path: Path | None = None
) -> ClientKey:
    """The client key for this run.

    ``--rpc-client-secret-key`` (``override_secret``) wins; with persistent ids on it also
    becomes the stored key. Else, with persistent ids on, the stored key, generated and saved
    (to ``path``) on first use. Else a fresh key for this run only, never saved.
    """
    if override_secret is not None:
        key = ClientKey(override_secret)
        stored = settings.client_secret_key
        if settings.persistent_client_id and path is not None and stored != override_secret:
            update_wallet(path, client_secret_key=override_secret)
        return key
    if settings.persistent_client_id:
        if settings.client_secret_key is not None:
            return ClientKey(settings.client_secret_key)
        key = ClientKey()
        if path is not None:
            update_wallet(path, persistent_client_id=True, client_secret_key=key.secret)
        return key
    return ClientKey()
