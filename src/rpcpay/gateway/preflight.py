"""Startup checks that turn an operator's mistake into one line saying what to do.

Contract: each check either returns or raises ``ConfigError`` whose message names the flag,
the value and the fix; nothing here raises anything else. ``rpcpay serve`` prints that message
alone (no traceback) and exits 2. Checks run before anything is opened, so a refused start
leaves no session, thread or file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from rpcpay.errors import ConfigError


def check_http_url(flag: str, url: str) -> None:
    """``url`` is an http(s) URL with a host (and, if given, a valid port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{flag} {url!r} is not a URL ({exc}); use http://HOST:PORT") from None
    # Only HTTP and HTTPS backends are spoken to.
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{flag} {url!r} must start with http:// or https://")
    # A URL without a host reaches nothing.
    if not parts.hostname:
        raise ConfigError(f"{flag} {url!r} has no host; use http://HOST:PORT")
    # Port 0 cannot be connected to.
    if port == 0:
        raise ConfigError(f"{flag} {url!r} has port 0; give the backend's real port")


def prepare_data_dir(path: Path) -> Path:
    """Create ``path`` (owner-only) and prove it is writable; the absolute path."""
    flag = "--data-dir"
    try:
        path = path.expanduser().absolute()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except NotADirectoryError:
        raise ConfigError(
            f"{flag} {path}: a parent of it is a file, not a directory; choose another path"
        ) from None
    except FileExistsError:
        raise ConfigError(f"{flag} {path} is a file; give a directory") from None
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path}: cannot create it ({exc.strerror}); choose a writable directory"
        ) from None
    # The ledger is written there: prove it before starting anything.
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path} is not writable ({exc.strerror}); fix its permissions or choose "
            "another directory"
        ) from None
    return path


def check_readable_file(flag: str, path: Path) -> None:
    """``path`` is a regular file this process can read."""
    # A directory or a missing file is a typo, said so before anything starts.
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{flag} {path}: not readable by this user")


__all__ = ["check_http_url", "check_readable_file", "prepare_data_dir"]
