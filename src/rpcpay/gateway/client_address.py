"""The real client address of a request, behind trusted reverse proxies or not.

Contract: ``client_address(request, proxies)`` is the TCP peer unless the peer is inside one of
the operator's ``--trusted-proxy`` networks. Only then is the forwarding header read, and it is
walked from the right (the entry the trusted peer appended) leftwards, skipping addresses that
are themselves trusted proxies; the first untrusted entry is the client ("rightmost untrusted").
Entries left of it were written by the client and are never believed, so a client cannot make
itself look like loopback (free calls) or like somebody else (abuse budgets). If every entry is
a trusted proxy, the leftmost one is the client. An entry a trusted proxy wrote that is not an
address (``unknown``, a token) is returned as written, capped to 64 characters: it is never
loopback, so it earns nothing free, and it is a budget key of its own.

Free loopback, the abuse budgets and the logs all take this address; so does anything else
keyed by address (per-address connection and new-id limits).

Cost: with no trusted proxy the answer is ``request.remote`` (one attribute read). With one,
parsing a one-entry ``X-Forwarded-For`` costs about 3 µs per request (bench/paid_calls.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from rpcpay.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardingHeader = Literal["x-forwarded-for", "forwarded"]
MAX_OPAQUE = 64
"""Longest non-address entry kept as an address key."""
MAX_MEMO = 65_536
"""Address texts whose parse is remembered."""
# aiohttp's typed request key where it has one (3.13+), a plain string before.
_MEMO_KEY: Any = (
    web.RequestKey("rpcpay.client_address", str)
    if hasattr(web, "RequestKey")
    else "rpcpay.client_address"
)


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The networks whose forwarding headers are believed, and which header they set."""

    networks: tuple[IPNetwork, ...] = ()
    header: ForwardingHeader = "x-forwarded-for"
    # Text as written -> (normalised address or None, trusted?); texts repeat, parsing costs.
    _seen: dict[str, tuple[str | None, bool]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def trusts(self, address: IPAddress) -> bool:
        """Is ``address`` one of the operator's proxies?"""
        return any(address in network for network in self.networks)

    def classify(self, text: str) -> tuple[str | None, bool]:
        """(``text`` as a normalised address or None if it is not one, is it trusted?)."""
        known = self._seen.get(text)
        if known is None:
            address = parse_ip(text)
            known = (None, False) if address is None else (str(address), self.trusts(address))
            # A bounded memo: a flood of distinct addresses only costs parsing again.
            if len(self._seen) < MAX_MEMO:
                self._seen[text] = known
        return known


def parse_trusted_proxies(
    cidrs: Iterable[str], header: ForwardingHeader = "x-forwarded-for"
) -> TrustedProxies:
    """``--trusted-proxy`` values (CIDR or single address) as networks; ConfigError names the
    bad one."""
    networks: list[IPNetwork] = []
    for text in cidrs:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"--trusted-proxy {text!r} is not an address or CIDR network "
                "(for example 127.0.0.1/32 or 10.0.0.0/8)"
            ) from None
    return TrustedProxies(tuple(networks), header)


def parse_ip(text: str) -> IPAddress | None:
    """An address as a proxy or aiohttp writes it (``[v6]:port``, ``v4:port``, v4-mapped v6
    unwrapped); None if it is not one."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def x_forwarded_for_entries(values: Sequence[str]) -> list[str]:
    """Every entry of every X-Forwarded-For header, in order (repeated headers join)."""
    return [entry.strip() for value in values for entry in value.split(",") if entry.strip()]


def forwarded_entries(values: Sequence[str]) -> list[str]:
    """The ``for=`` of each element of every RFC 7239 Forwarded header, in order; an element
    without one counts as ``unknown``."""
    entries: list[str] = []
    for value in values:
        for element in value.split(","):
            found = "unknown"
            for pair in element.split(";"):
                name, _, raw = pair.partition("=")
                if name.strip().lower() == "for":
                    found = raw.strip().strip('"')
            entries.append(found)
    return entries


def pick_client(peer: str, entries: Sequence[str], proxies: TrustedProxies) -> str:
    """The rightmost-untrusted rule over ``entries`` + the peer (see the module docstring)."""
    current = peer
    # Walk from the hop nearest to us while the hop is a trusted proxy.
    for entry in reversed(entries):
        if not proxies.classify(current)[1]:
            break
        current = entry
    address = proxies.classify(current)[0]
    if address is None:
        return current[:MAX_OPAQUE]
    return address


def client_address(request: web.BaseRequest, proxies: TrustedProxies) -> str:
    """The real client address of ``request``: the peer, or what trusted proxies forwarded."""
    peer = request.remote or ""
    # Without trusted proxies no header is read at all.
    if not proxies.networks:
        return peer
    # Asked again for the same request (the handler, then the access log): answer as before.
    known: str | None = request.get(_MEMO_KEY)
    if known is not None:
        return known
    address, trusted = proxies.classify(peer)
    # A header is believed only from a trusted peer.
    if not trusted:
        found = peer
    else:
        name = "Forwarded" if proxies.header == "forwarded" else "X-Forwarded-For"
        values = request.headers.getall(name, [])
        if not values:
            found = address or peer
        elif proxies.header == "forwarded":
            found = pick_client(peer, forwarded_entries(values), proxies)
        else:
            found = pick_client(peer, x_forwarded_for_entries(values), proxies)
    request[_MEMO_KEY] = found
    return found


__all__ = [
    "TrustedProxies",
    "client_address",
    "forwarded_entries",
    "parse_ip",
    "parse_trusted_proxies",
    "pick_client",
    "x_forwarded_for_entries",
]
