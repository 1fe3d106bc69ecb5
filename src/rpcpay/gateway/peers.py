"""Who is on the other end: the one place the gateway learns a client's address.

``peer_address`` is the TCP peer: what the connection caps count (behind a reverse proxy that
is the proxy, so its per-address cap must be raised; docs/operating.md). Every budget on calls
(bad shares, new client ids, free loopback, the refusal tarpit) keys instead on
``client_address.client_address``, which is the TCP peer unless the peer is a
``--trusted-proxy``, and then the address the proxy reports. ``network_prefix`` groups
addresses the way one subscriber usually holds them (an IPv4 /24, an IPv6 /64), because a
flooder with a /64 has 2^64 addresses and one with a /24 has 256: budgets per prefix bound
what rotating costs.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

IPV4_PREFIX = 24
IPV6_PREFIX = 64


def peer_address(request: web.BaseRequest) -> str:
    """The client's address as text (the TCP peer; "" if the transport is gone)."""
    return request.remote or ""


def transport_address(peername: object) -> str:
    """The address part of a transport's ``peername`` (a tuple for TCP), "" otherwise."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return ""


def network_prefix(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network holding ``address``; the text itself if it is
    not an IP address (a Unix socket, say). v4-mapped IPv6 counts as IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = IPV4_PREFIX if isinstance(ip, ipaddress.IPv4Address) else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def host_key(address: str) -> str:
    """What one host is, for budgets that must not be split by address rotation: the IPv4
    address itself, but an IPv6 address's whole /64 (one host usually holds all of it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return network_prefix(address)
    return address
