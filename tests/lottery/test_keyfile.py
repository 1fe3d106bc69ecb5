"""The stamper's key file: made owner-only, refused when others can read it or it is junk."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rpcpay.errors import ConfigError
from rpcpay.lottery.keyfile import load_key


def test_made_once_then_loaded(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "stamper.key"
    with pytest.raises(ConfigError, match="no key file"):
        load_key(path, create=False)
    key, made = load_key(path, create=True)
    assert made and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, made = load_key(path, create=True)
    assert not made and again == key and again.address == key.address
    assert key.secret.hex() not in repr(key)


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        ("ab" * 32, 0o640, "chmod 600"),
        ("zz" * 32, 0o600, "64 hex digits"),
        ("00" * 32, 0o600, "64 hex digits"),  # zero is not a key
        ("ab" * 31, 0o600, "64 hex digits"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, content: str, mode: int, message: str) -> None:
    path = tmp_path / "k"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=message):
        load_key(path, create=True)
