"""argparse types shared by every ``rpcpay`` command: numbers in a range, with a clear rule."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
