"""The lottery payer's durable state: its lotteries' terms and ticket cursors, in one file.

The cursor of a lottery is the first ticket the payer has not yet asked a stamper to
stamp. It moves *before* each stamp request is sent (docs/lottery.md §12): if the
payer dies between the two, the tickets in between are abandoned, never reused. A
reused range would be refused by an honest stamper and, signed twice by a colluding
one, would be a fraud proof against it; either way the payer must never do it.

The file is JSON, owner-only (0600), and replaced atomically: written to a temporary
file in the same directory, fsynced, renamed over the old one, and the directory
fsynced. A crash therefore leaves the old state or the new one, never a mix; and a
cursor is on disk before the request that depends on it leaves the process.
The salt of each lottery is kept too, since the terms are needed to recompute the id.
The file is bound to one chain id, contract and payer address and refuses any other.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from rpcpay.errors import ConfigError
from rpcpay.lottery.cheque import LotteryTerms

__all__ = [
    "LotteryStatus",
    "PayerLottery",
    "PayerState",
    "PayerStateFile",
    "with_lottery",
]

STATE_VERSION = 1


class LotteryStatus(Enum):
    """Where one of the payer's lotteries stands, as far as the payer knows."""

    OPEN = "open"  # the payer may still ask for stamps in it
    RETIRED = "retired"  # no more stamps (reveal close, full, or the stamper refused it)
    PAID = "paid"  # a recipient claimed the prize: nothing comes back
    REFUNDED = "refunded"  # nobody won; the prize came back


@dataclass(frozen=True, slots=True)
class PayerLottery:
    """One lottery this payer created, and how far into its tickets it has gone."""

    terms: LotteryTerms
    cursor: int  # first ticket never sent to the stamper
    created_block: int
    status: LotteryStatus = LotteryStatus.OPEN

    @property
    def id(self) -> bytes:
        return self.terms.id

    @property
    def left(self) -> int:
        """Tickets (wei of expected value) not yet handed out."""
        return self.terms.prize - self.cursor


@dataclass(frozen=True, slots=True)
class PayerState:
    """Everything the payer must remember across restarts."""

    chain_id: int
    contract: bytes
    payer: bytes
    lotteries: tuple[PayerLottery, ...] = ()

    def find(self, lottery_id: bytes) -> PayerLottery | None:
        for lottery in self.lotteries:
            if lottery.id == lottery_id:
                return lottery
        return None


def with_lottery(state: PayerState, lottery: PayerLottery) -> PayerState:
    """``state`` with ``lottery`` replaced (by id), or added if it is new."""
    others = [x for x in state.lotteries if x.id != lottery.id]
    if len(others) == len(state.lotteries):
        return replace(state, lotteries=(*state.lotteries, lottery))
    return replace(
        state, lotteries=tuple(lottery if x.id == lottery.id else x for x in state.lotteries)
    )


def _lottery_to_json(lottery: PayerLottery) -> dict[str, Any]:
    t = lottery.terms
    return {
        "id": "0x" + t.id.hex(),
        "stamper": "0x" + t.stamper.hex(),
        "prize": str(t.prize),
        "reveal_block": t.reveal_block,
        "salt": "0x" + t.salt.hex(),
        "cursor": str(lottery.cursor),
        "created_block": lottery.created_block,
        "status": lottery.status.value,
    }


def _unhex(value: Any, length: int, what: str) -> bytes:
    # The field is 0x-hex of the right length.
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * length:
        raise ValueError(f"{what} must be 0x and {2 * length} hex digits")
    return bytes.fromhex(value[2:])


def _lottery_from_json(obj: Any, payer: bytes) -> PayerLottery:
    # Each lottery is an object with every field.
    if not isinstance(obj, dict):
        raise ValueError("a lottery must be a JSON object")
    terms = LotteryTerms(
        payer=payer,
        stamper=_unhex(obj.get("stamper"), 20, "stamper"),
        prize=int(obj["prize"]),
        reveal_block=int(obj["reveal_block"]),
        salt=_unhex(obj.get("salt"), 32, "salt"),
    )
    # The stored id is the one the terms hash to (a hand-edited file is caught here).
    if _unhex(obj.get("id"), 32, "id") != terms.id:
        raise ValueError("a lottery's id does not match its terms")
    cursor = int(obj["cursor"])
    # The cursor lies in the ticket space (the prize itself: everything handed out).
    if not 0 <= cursor <= terms.prize:
        raise ValueError("a lottery's cursor is outside its tickets")
    return PayerLottery(terms, cursor, int(obj["created_block"]), LotteryStatus(obj["status"]))


def state_to_json(state: PayerState) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "chain_id": state.chain_id,
        "contract": "0x" + state.contract.hex(),
        "payer": "0x" + state.payer.hex(),
        "lotteries": [_lottery_to_json(x) for x in state.lotteries],
    }


def state_from_json(obj: Any) -> PayerState:
    """Parse the file's JSON; ``ValueError`` (or ``KeyError``/``TypeError``) if it is not one."""
    # The file is one object of a version we know.
    if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
        raise ValueError(f"not a version {STATE_VERSION} lottery payer state")
    payer = _unhex(obj.get("payer"), 20, "payer")
    lotteries = obj.get("lotteries")
    if not isinstance(lotteries, list):
        raise ValueError("lotteries must be a list")
    return PayerState(
        chain_id=int(obj["chain_id"]),
        contract=_unhex(obj.get("contract"), 20, "contract"),
        payer=payer,
        lotteries=tuple(_lottery_from_json(x, payer) for x in lotteries),
    )


class PayerStateFile:
    """The state on disk: ``load`` it, ``save`` every change before acting on it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> PayerState | None:
        """The saved state, ``None`` if there is no file yet; ``ConfigError`` if unusable."""
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        # The file names the payer's lotteries and salts: owner-only.
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"lottery state {self.path} is readable by others: chmod 600 it")
        try:
            return state_from_json(json.loads(self.path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path} is not a lottery payer state: {exc}") from None

    def load_for(self, chain_id: int, contract: bytes, payer: bytes) -> PayerState:
        """The saved state for this chain, contract and payer (empty if new); ``ConfigError``
        if the file belongs to another one (its cursors mean nothing there)."""
        state = self.load()
        if state is None:
            return PayerState(chain_id, contract, payer)
        # The file is this payer's, on this chain and contract.
        if (state.chain_id, state.contract, state.payer) != (chain_id, contract, payer):
            raise ConfigError(
                f"{self.path} belongs to payer 0x{state.payer.hex()} on chain {state.chain_id}, "
                f"contract 0x{state.contract.hex()}: use another --lottery-file"
            )
        return state

    def save(self, state: PayerState) -> None:
        """Replace the file atomically and durably (``ConfigError`` if it cannot)."""
        data = json.dumps(state_to_json(state), indent=1).encode()
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    os.fchmod(handle.fileno(), 0o600)
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise ConfigError(f"cannot save {self.path}: {exc.strerror}") from exc
