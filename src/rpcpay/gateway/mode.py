"""What the upstream is: monerod or any JSON-RPC service. Never a silent guess.

- ``--upstream`` must be an ``http://`` or ``https://`` URL with a host
  (``preflight.check_http_url``, checked with the other flags).
- Told (``--upstream-kind``), the gateway believes it; ``--upstream-kind jsonrpc`` together with
  a Monero-only flag is refused, since that flag would do nothing.
- ``--rpc-payment-address`` or any other Monero-only flag (``MONERO_ONLY_FLAGS``) means monero.
- Otherwise the gateway asks the upstream's free ``/get_height``: a JSON object with a
  ``hash`` is monerod, any other HTTP answer is a JSON-RPC service, and no answer at all is
  retried with backoff (``RETRY_FIRST_S`` doubling to ``RETRY_MAX_S``), with a log line per
  attempt, until the upstream answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Literal

from rpcpay.errors import ConfigError, UpstreamError
from rpcpay.gateway.upstream import Upstream

log = logging.getLogger("rpcpay.gateway")

Mode = Literal["monero", "jsonrpc"]
Kind = Literal["auto", "monero", "jsonrpc"]

RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0
MONERO_ONLY_FLAGS: Final = (
    "--rpc-payment-address",
    "--info-cache-ms",
    "--cache-mb",
    "--cache-margin",
)


def told_mode(kind: Kind, monero_flags: tuple[str, ...]) -> Mode | None:
    """The mode the flags decide, or None when the upstream must be asked."""
    # Monero-only flags make no sense in front of a JSON-RPC service.
    if kind == "jsonrpc" and monero_flags:
        raise ConfigError(
            f"{', '.join(monero_flags)} only apply in front of monerod, not with "
            "--upstream-kind jsonrpc"
        )
    if kind != "auto":
        return kind
    return "monero" if monero_flags else None


def mode_of_answer(status: int, body: bytes) -> Mode:
    """monerod's /get_height answers 200 with ``{"hash": …, "height": …}``; nothing else does."""
    if status != 200:
        return "jsonrpc"
    try:
        answer = json.loads(body)
    except ValueError:
        return "jsonrpc"
    return "monero" if isinstance(answer, dict) and "hash" in answer else "jsonrpc"


async def detect_mode(
    upstream: Upstream,
    kind: Kind,
    monero_flags: tuple[str, ...] = (),
    *,
    url: str = "",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Mode:
    """The upstream's mode. A JSON-RPC service the operator named is believed at once;
    otherwise the upstream is asked (and waited for), and a monerod the flags promise must
    answer as one."""
    told = told_mode(kind, monero_flags)
    if told == "jsonrpc":
        return told
    found = await probe_upstream(upstream, url, sleep)
    # What the flags promise must be what answers.
    if told == "monero" and found != "monero":
        why = "--upstream-kind monero" if kind == "monero" else ", ".join(monero_flags)
        raise ConfigError(
            f"{why} means the upstream is monerod, but {url or 'it'} does not answer "
            "/get_height as monerod does"
        )
    log.info("upstream kind", extra={"upstream": url, "mode": found, "told": told is not None})
    return found


async def probe_upstream(
    upstream: Upstream, url: str, sleep: Callable[[float], Awaitable[None]]
) -> Mode:
    """Ask /get_height until the upstream answers at all, backing off and saying so."""
    wait = RETRY_FIRST_S
    attempt = 1
    while True:
        try:
            reply = await upstream.post("/get_height", b"{}", "application/json")
        except UpstreamError as exc:
            log.warning(
                "upstream unreachable; waiting for it before deciding what it is",
                extra={"upstream": url, "attempt": attempt, "retry_in_s": wait, "error": str(exc)},
            )
            await sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)
            attempt += 1
            continue
        return mode_of_answer(reply.status, reply.body)


MONERO_ONLY_DEFAULTS: Final = (
    ("--info-cache-ms", "info_cache_ms", 1000),
    ("--cache-mb", "cache_mb", 256),
    ("--cache-margin", "cache_margin", 20),
)


def monero_flags_given(args: object) -> tuple[str, ...]:
    """The Monero-only flags set on the command line (``--rpc-payment-address``, or a cache
    flag away from its default)."""
    given = ["--rpc-payment-address"] if getattr(args, "rpc_payment_address", None) else []
    given += [
        flag for flag, dest, default in MONERO_ONLY_DEFAULTS if getattr(args, dest) != default
    ]
    return tuple(given)
