"""The wallet file: round trip, owner-only mode, clear refusals, and which client key a run uses."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rpcpay.errors import ConfigError
from rpcpay.wallet.settings import (
    DEFAULT_AUTO_MINE_THRESHOLD,
    WalletSettings,
    client_key_for,
    load_wallet,
    parse_secret_key,
    save_wallet,
    update_wallet,
)
from rpcpay.wire.ed25519 import L, generate_keypair

SECRET, PUBLIC = generate_keypair()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_defaults_match_monero_wallet_cli() -> None:
    s = WalletSettings()
    assert s.credits_target == 0 and s.effective_credits_target == 50_000
    assert WalletSettings(credits_target=1234).effective_credits_target == 1234
    # wallet2.cpp 0.18: m_auto_mine_for_rpc_payment_threshold(-1.0f): any rate.
    assert s.auto_mine_threshold == DEFAULT_AUTO_MINE_THRESHOLD == -1.0
    assert s.persistent_client_id is False and s.client_secret_key is None
    assert s.auto_mine and not s.mining_stopped and not s.mining_requested


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_wallet(tmp_path / "nope.json") == WalletSettings()


def test_round_trip_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "wallet.json"
    settings = WalletSettings(
        credits_target=777,
        auto_mine_threshold=0.25,
        persistent_client_id=True,
        client_secret_key=SECRET,
        mining_threads=3,
        auto_mine=False,
        mining_requested=True,
        mining_stopped=True,
    )
    save_wallet(path, settings)
    assert load_wallet(path) == settings
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert json.loads(path.read_text())["client_secret_key"] == SECRET.hex()
    # No temp file left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["wallet.json"]


def test_repr_never_shows_the_secret() -> None:
    text = repr(WalletSettings(client_secret_key=SECRET, persistent_client_id=True))
    assert SECRET.hex() not in text and "<set>" in text


def test_save_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "wallet.json"
    save_wallet(path, WalletSettings(credits_target=1))
    inode = path.stat().st_ino
    save_wallet(path, WalletSettings(credits_target=2))
    assert load_wallet(path).credits_target == 2
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert mode_of(path) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606])
def test_refuses_file_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "wallet.json"
    save_wallet(path, WalletSettings())
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_wallet(path)
    assert str(path) in str(info.value) and f"{mode:04o}" in str(info.value)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"colour": "blue"}', "unknown key(s) 'colour'"),
        ('{"credits_target": "lots"}', "credits_target must be an integer"),
        ('{"credits_target": true}', "credits_target must be an integer"),
        ('{"credits_target": -5}', "credits_target must be 0"),
        ('{"persistent_client_id": 1}', "persistent_client_id must be true or false"),
        ('{"auto_mine_threshold": "x"}', "auto_mine_threshold must be a number"),
        ('{"auto_mine_threshold": -3}', "auto_mine_threshold must be"),
        ('{"mining_threads": 1.5}', "mining_threads must be an integer"),
        ('{"client_secret_key": 5}', "client_secret_key must be 64 hex"),
        ('{"client_secret_key": "abcd"}', "64 hex characters, not 4"),
        ('{"client_secret_key": "' + "zz" * 32 + '"}', "64 hex characters"),
        ('{"client_secret_key": "' + "00" * 32 + '"}', "not a valid ed25519 scalar"),
        ('{"client_secret_key": "' + "ff" * 32 + '"}', "not a valid ed25519 scalar"),
    ],
)
def test_clear_errors_for_bad_files(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "wallet.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        load_wallet(path)
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_bad_secret_is_never_echoed() -> None:
    almost = "ff" * 32
    with pytest.raises(ConfigError) as info:
        parse_secret_key(almost)
    assert almost not in str(info.value)
    # L itself is the first non-canonical scalar.
    with pytest.raises(ConfigError):
        parse_secret_key(L.to_bytes(32, "little").hex())
    assert parse_secret_key(SECRET.hex().upper()) == SECRET


def test_persistent_off_by_default_gives_a_new_key_each_run(tmp_path: Path) -> None:
    path = tmp_path / "wallet.json"
    settings = load_wallet(path)
    first = client_key_for(settings, None, path=path)
    second = client_key_for(load_wallet(path), None, path=path)
    assert first.public != second.public
    # Nothing was stored.
    assert not path.exists() or load_wallet(path).client_secret_key is None


def test_persistent_on_keeps_the_key(tmp_path: Path) -> None:
    path = tmp_path / "wallet.json"
    update_wallet(path, persistent_client_id=True)
    first = client_key_for(load_wallet(path), None, path=path)
    stored = load_wallet(path)
    assert stored.client_secret_key == first.secret
    assert mode_of(path) == 0o600
    second = client_key_for(load_wallet(path), None, path=path)
    assert second.public == first.public
    # Turning it off forgets the key.
    update_wallet(path, persistent_client_id=False)
    assert load_wallet(path).client_secret_key is None
    assert client_key_for(load_wallet(path), None, path=path).public != first.public


def test_override_secret_wins(tmp_path: Path) -> None:
    path = tmp_path / "wallet.json"
    # Not persistent: used, not saved.
    key = client_key_for(load_wallet(path), SECRET, path=path)
    assert key.public == PUBLIC
    assert not path.exists() or load_wallet(path).client_secret_key is None
    # Persistent with another stored key: the override wins and becomes the stored key.
    update_wallet(path, persistent_client_id=True)
    client_key_for(load_wallet(path), None, path=path)
    assert load_wallet(path).client_secret_key not in (None, SECRET)
    key = client_key_for(load_wallet(path), SECRET, path=path)
    assert key.public == PUBLIC
    assert load_wallet(path).client_secret_key == SECRET


def test_update_keeps_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "wallet.json"
    update_wallet(path, credits_target=99, mining_threads=2)
    update_wallet(path, mining_stopped=True)
    s = load_wallet(path)
    assert (s.credits_target, s.mining_threads, s.mining_stopped) == (99, 2, True)
