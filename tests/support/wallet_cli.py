"""Harness for the real monero-wallet-cli 0.18 (Debian bookworm's ``monero`` package).

The wallet is a console program: it reads commands from stdin and writes prompts without a
trailing newline.  ``WalletCli`` runs it with stdin and stdout as pipes, a reader thread
collects everything it prints (colours stripped) into a transcript, and ``expect`` waits for a
regular expression to appear in the transcript after a mark.  Every wait has a timeout; a
timeout (or the wallet exiting) raises ``WalletCliError`` with the end of the transcript and
of the wallet's log file, so a failing test says what the wallet was doing.

Facts about monero-wallet-cli 0.18.0.0 this relies on (simplewallet.cpp, checked live):

- Secret questions (keys, passwords) are read from stdin *without printing a prompt* when
  stdin is not a terminal (common/password.cpp), so the harness sends the answer at once.
- ``--generate-from-spend-key FILE`` asks for the secret spend key; with ``--password ''``
  and ``--restore-height 0`` nothing else is asked.  ``--offline`` creates it without a daemon.
- ``set <name> <value>`` asks for the wallet password even when ``--password`` was given;
  ``set ask-password 0`` stops ``transfer`` from asking too.
- On start the wallet refreshes once, then starts its idle thread and prints ``Background
  refresh thread started``.  The idle thread runs ``check_rpc_payment`` at once, after every
  command that locks the idle thread (refresh, transfer, rpc_payment_info, set ...) and every
  90-115 s; when the daemon asks for payment and credits < credits-target (0 means 50000) it
  mines (threshold -1 by default: any rate) with one thread per core.
- The wallet mines with RandomX in fast mode unless ``MONERO_RANDOMX_UMASK`` masks
  ``RANDOMX_FLAG_FULL_MEM`` (4): measured here, fast mode builds its 2 GiB dataset on one
  thread for ~54 s (2.4 GB RSS) before the first hash, then ~65 H/s on two threads.  This
  harness sets the mask, so the wallet mines in light mode (~30 H/s on two threads, next to
  a verifying server) from the first second.
- With a trusted daemon (the default for a loopback daemon) the wallet asks whether to set up
  background mining; ``--untrusted-daemon`` skips that question (and is what a client of a
  paid public node would use).
- ``rescan_bc`` forgets the chain and syncs it again from height 0 without a question (what
  bench/wallet_sync.py times); ``refresh`` and ``rescan_bc`` end with ``Refresh done, blocks
  received: N`` or ``Error: refresh failed: ...``.
- At log level 2 the log file records every found share (``Found nonce N at diff D, gets us C,
  now B credits``) and every paid call (``Call /getblocks.bin cost 7 credits`` or, on a
  mismatch, a WARNING ``Call X cost N credits, expected M``).
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from rpcpay.wire.address import encode_address
from rpcpay.wire.ed25519 import hash_to_scalar, random_scalar, secret_to_public
from tests.support.processes import stop_process

WALLET_CLI_BIN = Path("/usr/bin/monero-wallet-cli")

#: RANDOMX_FLAG_FULL_MEM: masking it makes the wallet mine in RandomX light mode.
_LIGHT_MODE_UMASK = "4"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DEFAULT_TIMEOUT = 60.0
_START_TIMEOUT = 90.0
_STOP_TIMEOUT = 30.0
_ATOMIC_UNITS = Decimal(10) ** 12


class WalletCliError(RuntimeError):
    """monero-wallet-cli did not do what the test waited for."""


@dataclass(frozen=True)
class WalletKeys:
    """A Monero wallet's secret keys (hex) and main address (mainnet format, as regtest
    uses).  The view key is derived from the spend key as Monero's deterministic wallets do:
    view = Keccak-256(spend) mod l."""

    spend_secret: str
    view_secret: str
    address: str

    @classmethod
    def from_spend_secret(cls, spend: bytes) -> WalletKeys:
        view = hash_to_scalar(spend)
        address = encode_address(secret_to_public(spend), secret_to_public(view))
        return cls(spend.hex(), view.hex(), address)

    @classmethod
    def random(cls) -> WalletKeys:
        return cls.from_spend_secret(random_scalar())


def xmr_to_atomic(text: str) -> int:
    """``"17.592186044415"`` (as the wallet prints amounts) to atomic units."""
    return int(Decimal(text) * _ATOMIC_UNITS)


def _strip(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")


@dataclass
class Balance:
    """What ``balance`` printed, in atomic units."""

    total: int
    unlocked: int


@dataclass
class RpcPaymentInfo:
    """What ``rpc_payment_info`` printed (None where the wallet did not print the line)."""

    client_id: str
    payment_required: bool
    credits: int | None = None
    credits_target: int | None = None
    spent_this_session: int | None = None
    discrepancy: int | None = None
    difficulty: int | None = None
    credits_per_hash_found: int | None = None
    mining: bool = False


@dataclass
class WalletCli:
    """A running monero-wallet-cli.  Stop it with close() or use it as a context manager."""

    name: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path
    wallet_path: Path
    _text: str = field(default="", repr=False)
    _cursor: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)
    _eof: bool = False

    # -- output -------------------------------------------------------------------------

    def _read_loop(self, stream: IO[bytes]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = stream.fileno()
        held = ""  # an escape sequence cut by the end of a chunk waits for the rest
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            text = held + decoder.decode(chunk, final=not chunk)
            held = ""
            cut = text.rfind("\x1b")
            if chunk and cut >= 0 and not _ANSI.match(text, cut):
                text, held = text[:cut], text[cut:]
            with self._cond:
                self._text += _strip(text)
                self._cond.notify_all()
                if not chunk:
                    self._eof = True
                    return

    def output(self, since: int = 0) -> str:
        """Everything the wallet printed from offset ``since`` on (colours stripped)."""
        with self._cond:
            return self._text[since:]

    def mark(self) -> int:
        """The current end of the transcript (a ``since`` for expect)."""
        with self._cond:
            return len(self._text)

    def log_text(self) -> str:
        """The wallet's log file, colours stripped (empty if it has none yet)."""
        try:
            return _strip(self.log_path.read_text(errors="replace"))
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        wanted = [
            line
            for line in self.log_text().splitlines()
            if line.strip() and "\tstacktrace\t" not in line and "language_base.h" not in line
        ]
        return "\n".join(wanted[-lines:]) or "(empty log)"

    def describe(self, since: int = 0, lines: int = 40) -> str:
        """The end of the transcript since ``since`` and of the log, for error messages."""
        out = self.output(since).splitlines()
        return (
            f"--- wallet {self.name} output (last {lines} lines) ---\n"
            + "\n".join(out[-lines:])
            + f"\n--- wallet {self.name} log {self.log_path} (last {lines} lines) ---\n"
            + self.log_tail(lines)
        )

    def expect(
        self,
        pattern: str | re.Pattern[str],
        *,
        timeout: float = _DEFAULT_TIMEOUT,
        since: int | None = None,
        what: str | None = None,
    ) -> re.Match[str]:
        """Wait until ``pattern`` appears in the transcript after ``since`` (default: after
        the last match); returns the match and moves the cursor past it.

        Raises WalletCliError, with the transcript and log tail, on timeout or if the
        wallet exits first.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        start = self._cursor if since is None else since
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = regex.search(self._text, start)
                if found:
                    self._cursor = found.end()
                    return found
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 1.0))
        status = (
            f"exited with code {self.process.poll()}"
            if self._eof
            else f"no match within {timeout:.0f} s"
        )
        raise WalletCliError(
            f"monero-wallet-cli {self.name}: waiting for {what or regex.pattern!r}: {status}\n"
            + self.describe(start)
        )

    def expect_log(
        self, pattern: str | re.Pattern[str], *, timeout: float = _DEFAULT_TIMEOUT, what: str = ""
    ) -> re.Match[str]:
        """Wait until ``pattern`` appears in the wallet's log file; returns the last match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.log_text()))
            if matches:
                return matches[-1]
            if self.process.poll() is not None or time.monotonic() > deadline:
                status = (
                    f"exited with code {self.process.returncode}"
                    if self.process.poll() is not None
                    else f"not logged within {timeout:.0f} s"
                )
                raise WalletCliError(
                    f"monero-wallet-cli {self.name}: waiting for log {what or regex.pattern!r}: "
                    f"{status}\n" + self.describe(self._cursor)
                )
            time.sleep(0.2)

    def wait_for_credits(self, minimum: int, *, timeout: float = 180.0) -> int:
        """Wait until the wallet's log reports a share that brought its balance to at least
        ``minimum`` credits (``Found nonce ... now N credits``, level 2); returns N."""
        regex = re.compile(r"Found nonce \d+ at diff \d+, gets us \d+, now (\d+) credits")
        deadline = time.monotonic() + timeout
        best = -1
        while True:
            found = [int(m.group(1)) for m in regex.finditer(self.log_text())]
            best = max(found, default=-1)
            if best >= minimum:
                return best
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise WalletCliError(
                    f"monero-wallet-cli {self.name}: mined up to {best} credits, not "
                    f"{minimum}, within {timeout:.0f} s (exit code {self.process.poll()})\n"
                    + self.describe(self._cursor)
                )
            time.sleep(0.2)

    # -- input --------------------------------------------------------------------------

    def send(self, line: str) -> int:
        """Write one line to the wallet's stdin; returns the transcript mark before it."""
        mark = self.mark()
        self._cursor = mark
        stdin = self.process.stdin
        if stdin is None or self.process.poll() is not None:
            raise WalletCliError(
                f"monero-wallet-cli {self.name} is not running (exit code "
                f"{self.process.poll()})\n" + self.describe()
            )
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except BrokenPipeError as exc:
            raise WalletCliError(
                f"monero-wallet-cli {self.name}: stdin closed\n" + self.describe()
            ) from exc
        return mark

    def wait_prompt(self, *, timeout: float = _DEFAULT_TIMEOUT, since: int | None = None) -> str:
        """Wait for the command prompt (``[wallet 44wNms]: ``); returns the output before it."""
        start = self._cursor if since is None else since
        found = self.expect(
            r"\[wallet [0-9A-Za-z]{6}[^\]\n]*\]: ",
            timeout=timeout,
            since=start,
            what="the wallet prompt",
        )
        return self.output(start)[: found.start() - start]

    def command(
        self,
        line: str,
        *,
        until: str | None = None,
        secret_replies: Sequence[str] = (),
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> str:
        """Run one console command and return what it printed before the next prompt.

        ``until``: a pattern the command's own output must show before the prompt counts
        (the idle thread may print a prompt of its own after a message).
        ``secret_replies`` are lines sent right after the command for the secret questions
        it asks (password, keys): with stdin not a terminal the wallet reads them without
        printing a prompt, so there is nothing to wait for.
        """
        mark = self.send(line)
        for reply in secret_replies:
            self.send(reply)
        if until is not None:
            self.expect(until, timeout=timeout, since=mark, what=f"{until!r} after {line!r}")
        self.wait_prompt(timeout=timeout)
        text = self.output(mark)
        return text[: text.rfind("[wallet ")]

    # -- typed commands -----------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        """``set name value`` (the wallet asks for the password; ours is empty)."""
        out = self.command(f"set {name} {value}", secret_replies=[""])
        if "Error" in out or "invalid" in out.lower():
            raise WalletCliError(f"set {name} {value} failed:\n{out}\n" + self.describe())

    def balance(self, *, timeout: float = _DEFAULT_TIMEOUT) -> Balance:
        out = self.command("balance", until=r"unlocked balance: [0-9.]+", timeout=timeout)
        found = re.search(r"Balance: ([0-9.]+), unlocked balance: ([0-9.]+)", out)
        if not found:
            raise WalletCliError(f"balance printed no balance:\n{out}\n" + self.describe())
        return Balance(xmr_to_atomic(found.group(1)), xmr_to_atomic(found.group(2)))

    def refresh(self, *, timeout: float = 120.0) -> int:
        """``refresh``; returns the number of blocks received.  Raises on a failed refresh."""
        out = self.command(
            "refresh", until=r"(Refresh done, blocks received: \d+|refresh failed)", timeout=timeout
        )
        found = re.search(r"Refresh done, blocks received: (\d+)", out)
        if not found:
            raise WalletCliError(f"refresh did not finish:\n{out}\n" + self.describe())
        return int(found.group(1))

    def rpc_payment_info(self, *, timeout: float = _DEFAULT_TIMEOUT) -> RpcPaymentInfo:
        out = self.command(
            "rpc_payment_info",
            until=r"(Not mining|Mining for payment|No payment needed|Failed to query daemon|"
            r"unexpected error)",
            timeout=timeout,
        )
        client = re.search(r"RPC client ID: <?([0-9a-f]{64})", out)
        if client is None:
            raise WalletCliError(
                f"rpc_payment_info printed no client id:\n{out}\n" + self.describe()
            )
        info = RpcPaymentInfo(client.group(1), "Payments required for node use" in out)

        def number(pattern: str) -> int | None:
            found = re.search(pattern, out)
            return int(found.group(1)) if found else None

        info.credits = number(r"current credits: (\d+)")
        info.credits_target = number(r"Credits target: (\d+)")
        info.spent_this_session = number(r"Credits spent this session: (\d+)")
        info.discrepancy = number(r"Credit discrepancy this session: (\d+)")
        info.difficulty = number(r"Difficulty: (\d+),")
        info.credits_per_hash_found = number(r"(\d+) credits per hash found")
        info.mining = "Mining for payment" in out
        if not info.payment_required and "No payment needed" not in out:
            raise WalletCliError(f"rpc_payment_info failed:\n{out}\n" + self.describe())
        return info

    def transfer(self, address: str, amount: str, *, timeout: float = 120.0) -> str:
        """``transfer address amount``, confirming; returns the submitted transaction id."""
        mark = self.send(f"transfer {address} {amount}")
        # The wallet must not ask for its password (create it with ask-password 0); it
        # always asks to confirm the amount and fee.
        found = self.expect(
            r"(Is this okay\?[^\n]*: ?$|Error: [^\n]*\n)",
            timeout=timeout,
            what="the transfer confirmation",
        )
        if found.group(0).startswith("Error"):
            raise WalletCliError(f"transfer failed: {found.group(0)}\n" + self.describe(mark))
        self.send("y")
        self.wait_prompt(timeout=timeout)
        out = self.output(mark)
        submitted = re.search(
            r"Transaction successfully submitted, transaction <?([0-9a-f]{64})", out
        )
        if not submitted:
            raise WalletCliError("transfer was not submitted\n" + self.describe(mark))
        return submitted.group(1)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """``exit`` (saves the wallet); SIGTERM then SIGKILL if it does not go.  Idempotent."""
        if self.process.poll() is None:
            with contextlib.suppress(WalletCliError, OSError):
                self.send("exit")
            try:
                self.process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                stop_process(self.process, 10)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_LIVE: list[WalletCli] = []


def _spawn(name: str, args: Sequence[str], wallet_path: Path, log_path: Path) -> WalletCli:
    if not WALLET_CLI_BIN.exists():
        raise WalletCliError(f"{WALLET_CLI_BIN} not found: run scripts/setup.sh")
    env = dict(os.environ)
    env["MONERO_RANDOMX_UMASK"] = _LIGHT_MODE_UMASK
    env["TERM"] = "dumb"
    env.pop("LANG", None)
    env["LC_ALL"] = "C.UTF-8"
    process = subprocess.Popen(
        [str(WALLET_CLI_BIN), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(wallet_path.parent),
    )
    wallet = WalletCli(name=name, process=process, log_path=log_path, wallet_path=wallet_path)
    assert process.stdout is not None
    wallet._reader = threading.Thread(
        target=wallet._read_loop, args=(process.stdout,), name=f"wallet-cli-{name}", daemon=True
    )
    wallet._reader.start()
    _LIVE.append(wallet)
    return wallet


def _common_args(directory: Path, name: str, log_level: str, daemon_ssl: bool = False) -> list[str]:
    ssl = (
        ["--daemon-ssl", "enabled", "--daemon-ssl-allow-any-cert"]
        if daemon_ssl
        else ["--daemon-ssl", "disabled"]
    )
    return [
        "--password", "",
        "--log-file", str(directory / f"{name}.log"),
        "--log-level", log_level,
        "--shared-ringdb-dir", str(directory / "ringdb"),
        "--max-log-files", "1",
        "--no-dns",
        *ssl,
        # no background-mining question; what a client of a paid public node would use
        "--untrusted-daemon",
    ]  # fmt: skip


def create_wallet(
    directory: Path,
    name: str,
    spend_key_hex: str,
    *,
    settings: Sequence[tuple[str, str]] = (),
    view_only_address: str | None = None,
    timeout: float = _START_TIMEOUT,
) -> str:
    """Create wallet file ``directory/name`` offline; returns the address it printed.

    A full wallet is restored from the secret spend key; with ``view_only_address`` a
    view-only wallet is made from that address and ``spend_key_hex`` taken as the secret
    *view* key.  ``settings`` are applied with ``set`` before the wallet is saved.
    """
    directory.mkdir(parents=True, exist_ok=True)
    wallet_path = directory / name
    log_path = directory / f"{name}.log"
    if view_only_address is None:
        mode = ["--generate-from-spend-key", str(wallet_path)]
    else:
        mode = ["--generate-from-view-key", str(wallet_path)]
    args = [
        *mode,
        "--offline",
        "--restore-height", "0",
        "--mnemonic-language", "English",
        *_common_args(directory, name, "1"),
    ]  # fmt: skip
    wallet = _spawn(f"{name} (create)", args, wallet_path, log_path)
    try:
        if view_only_address is not None:
            wallet.expect(r"Standard address: ?$", timeout=timeout, what="the address question")
            wallet.send(view_only_address)
        # A secret question prints no prompt when stdin is not a terminal: answer at once.
        wallet.send(spend_key_hex)
        found = wallet.expect(
            r"(?:Generated new wallet|Opened wallet): (4[0-9A-Za-z]{94})",
            timeout=timeout,
            what="the new wallet's address",
        )
        address = found.group(1)
        wallet.wait_prompt(timeout=timeout)
        for key, value in settings:
            wallet.set(key, value)
    finally:
        wallet.close()
    if wallet.process.returncode != 0:
        raise WalletCliError(
            f"creating wallet {name}: exit code {wallet.process.returncode}\n" + wallet.describe()
        )
    return address


def open_wallet(
    directory: Path,
    name: str,
    daemon_port: int,
    *,
    log_level: str = "2",
    rpc_client_secret_key: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = _START_TIMEOUT,
    daemon_ssl: bool = False,
) -> WalletCli:
    """Open wallet ``directory/name`` against the daemon at 127.0.0.1:``daemon_port``.

    Returns once the wallet has made its first refresh attempt and started its idle thread
    (``Background refresh thread started``).  The daemon is untrusted (no background-mining
    question; what a client of a paid node would use).
    """
    wallet_path = directory / name
    log_path = directory / f"{name}.log"
    args = [
        "--wallet-file", str(wallet_path),
        "--daemon-address", f"127.0.0.1:{daemon_port}",
        *_common_args(directory, name, log_level, daemon_ssl),
        *extra_args,
    ]  # fmt: skip
    if rpc_client_secret_key is not None:
        args += ["--rpc-client-secret-key", rpc_client_secret_key]
    wallet = _spawn(name, args, wallet_path, log_path)
    try:
        wallet.expect(
            r"Background refresh thread started", timeout=timeout, what="the wallet to start"
        )
        wallet.wait_prompt(timeout=timeout)
    except BaseException:
        wallet.close()
        raise
    return wallet


@atexit.register
def stop_all() -> None:
    """Close every wallet still running (also at interpreter exit)."""
    for wallet in list(_LIVE):
        wallet.close()
