"""argparse types shared by every ``rpcpay`` command: numbers in a range, with a clear rule."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn


def integer_in(low: int, high: int | None, rule: str) -> Callable[[str], int]:
    """An integer in [low, high] (no upper bound if ``high`` is None); ``rule`` otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        # The value must lie in the range.
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(rule)
        return value

    return parse


def number_in(low: float, *, include_low: bool, rule: str) -> Callable[[str], float]:
    """A finite number above ``low`` (or equal to it when ``include_low``); ``rule`` otherwise."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        # The value must be finite and above (or at) the bound.
        if not math.isfinite(value) or value < low or (value == low and not include_low):
            raise argparse.ArgumentTypeError(rule)
        return value

    return parse


class BriefArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are two lines: the error and where the help is.

    argparse prints the whole usage (30 lines for ``rpcpay serve``) before a one-line error;
    the operator needs the error and the way to the help, nothing else. Subparsers made with
    ``add_parser`` are of this class too.
    """

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.stderr.write(f"{self.prog}: run '{self.prog} --help' for every flag\n")
        sys.exit(2)
