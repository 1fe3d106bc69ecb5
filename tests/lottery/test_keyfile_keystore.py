"""Key files holding ether may be encrypted keystore v3 files (eth-account), with the password
from a file or the environment; raw hex still loads, with a warning."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from eth_account import Account

from rpcpay.errors import ConfigError
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.keyfile import PASSWORD_ENV, PASSWORD_FILE_ENV, load_key


def keystore(tmp_path: Path, password: str) -> tuple[Path, EthKey]:
    key = EthKey.generate()
    path = tmp_path / "payee.json"
    path.write_text(json.dumps(Account.encrypt(key.secret, password, kdf="scrypt", iterations=2)))
    path.chmod(0o600)
    return path, key


def test_keystore_with_password_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, key = keystore(tmp_path, "correct horse")
    monkeypatch.delenv(PASSWORD_FILE_ENV, raising=False)
    monkeypatch.setenv(PASSWORD_ENV, "correct horse")
    loaded, made = load_key(path, create=False)
    assert loaded.address == key.address and not made


def test_keystore_with_password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, key = keystore(tmp_path, "pw")
    secret = tmp_path / "password"
    secret.write_text("pw\n")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(secret))
    assert load_key(path, create=False)[0].address == key.address


def test_keystore_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = keystore(tmp_path, "pw")
    monkeypatch.delenv(PASSWORD_FILE_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        load_key(path, create=False)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(ConfigError, match="cannot decrypt"):
        load_key(path, create=False)


def test_raw_hex_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dev.key"
    key = EthKey.generate()
    path.write_text(key.secret.hex() + "\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="rpcpay.lottery"):
        assert load_key(path, create=False)[0].address == key.address
    assert "raw hex key" in caplog.text and key.secret.hex() not in caplog.text
