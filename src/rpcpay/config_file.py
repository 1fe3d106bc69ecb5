"""``--config FILE``: a command's flags from a TOML file, the command line overriding them.

Contract: each key is a flag's name without the leading dashes (``rpc-bind-port = 18089``);
values are TOML strings, integers, floats or booleans (``true`` turns a switch on, ``false``
leaves it off), or arrays for repeatable flags (``trusted-proxy = ["127.0.0.1"]``). Each value
is checked by the flag's own parser, so a bad value is refused with the file, the key and the
rule, before anything starts. A flag given on the command line wins; for a repeatable flag the
command line's values replace the file's. Unknown keys are refused (a typo would otherwise be
a silently ignored setting).

The file is turned into command-line tokens placed before the real ones; argparse then does
what it always does, so every flag a command has is also a key, with the same defaults.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from pathlib import Path

from rpcpay.errors import ConfigError

SECRET_ENV = {"admin-token": "RPCPAY_ADMIN_TOKEN"}
"""Secrets that may come from the environment instead of argv (where ``ps`` shows them)."""


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Long flag name without dashes -> its action."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                found[option[2:]] = action
    return found


def _check_value(path: Path, key: str, action: argparse.Action, text: str) -> None:
    """Run the flag's own parser on ``text``; ConfigError naming the file and key."""
    try:
        value = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ConfigError(f"config {path}: {key} = {text!r}: {exc}") from None
    # A choice flag takes one of its choices.
    if action.choices is not None and value not in action.choices:
        allowed = ", ".join(map(str, action.choices))
        raise ConfigError(f"config {path}: {key} must be one of {allowed}, not {text!r}")


def _scalar(path: Path, key: str, value: object) -> str:
    # Booleans are handled by the caller; tables and dates are not flag values.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"config {path}: {key} must be a string or a number")
    return str(value)


def load_config_tokens(
    path: Path, parser: argparse.ArgumentParser, command_line: Sequence[str]
) -> list[str]:
    """The command-line tokens ``path`` stands for, for ``parser``'s flags."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML ({exc})") from None
    options = _options(parser)
    given = {token.split("=", 1)[0] for token in command_line if token.startswith("--")}
    tokens: list[str] = []
    for key, value in document.items():
        action = options.get(key)
        # Every key is one of the command's flags.
        if action is None or key in ("config", "help"):
            raise ConfigError(
                f"config {path}: unknown key {key!r}; keys are {parser.prog}'s flags "
                "without the leading dashes (see --help)"
            )
        flag = f"--{key}"
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            # A switch is true or false.
            if not isinstance(value, bool):
                raise ConfigError(f"config {path}: {key} must be true or false")
            if value:
                tokens.append(flag)
            continue
        repeatable = isinstance(action, argparse._AppendAction)
        values = value if isinstance(value, list) else [value]
        # Only repeatable flags take arrays.
        if isinstance(value, list) and not repeatable:
            raise ConfigError(f"config {path}: {key} takes one value, not an array")
        # The command line's values of a repeatable flag replace the file's.
        if repeatable and flag in given:
            continue
        for item in values:
            text = _scalar(path, key, item)
            _check_value(path, key, action, text)
            tokens += [flag, text]
    return tokens


def read_secret_file(flag: str, path: Path) -> str:
    """A secret kept in a file (first line, whitespace stripped); ConfigError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{flag} {path}: cannot read it ({reason})") from None
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    # An empty token would turn authentication off without saying so.
    if not secret:
        raise ConfigError(f"{flag} {path} is empty")
    return secret


__all__ = ["SECRET_ENV", "load_config_tokens", "read_secret_file"]
