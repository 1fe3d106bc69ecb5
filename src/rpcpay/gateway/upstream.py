"""The backend behind the gateway, as a swappable transport.

The gateway talks to its backend only through ``Upstream``, so tests and benchmarks can put
any HTTP service there, and an operator can front monerod or an Ethereum node alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from rpcpay.errors import UpstreamError

JSON = Any


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """What the backend answered: HTTP status, body and content type."""

    status: int
    body: bytes
    content_type: str


class Upstream(Protocol):
    """Sends one HTTP request body to the backend, or raises ``UpstreamError``. ``path`` is
    appended to the backend's base URL; the empty path is the URL exactly as configured."""

    async def post(self, path: str, body: bytes, content_type: str) -> UpstreamReply: ...

    async def close(self) -> None: ...


class HttpUpstream:
    """An HTTP backend reached with one pooled aiohttp session."""

    def __init__(self, base_url: str, *, timeout_s: float = 60.0, connections: int = 64) -> None:
        self._url = base_url
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def post(self, path: str, body: bytes, content_type: str) -> UpstreamReply:
        """POST to ``path`` under the base URL; ``""`` means the URL exactly as given (a
        JSON-RPC backend's endpoint, such as ``https://host/v3/KEY``)."""
        try:
            async with self._client().post(
                self._base + path if path else self._url,
                data=body,
                headers={"Content-Type": content_type},
            ) as response:
                data = await response.read()
                return UpstreamReply(response.status, data, response.content_type)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamError(f"upstream unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def post_json(upstream: Upstream, path: str, document: JSON) -> JSON:
    """POST a JSON document and decode the JSON answer; any failure is an ``UpstreamError``."""
    reply = await upstream.post(path, json.dumps(document).encode(), "application/json")
    # Only a 200 answer carries a usable document.
    if reply.status != 200:
        raise UpstreamError(f"upstream answered HTTP {reply.status} for {path}")
    try:
        return json.loads(reply.body)
    except ValueError as exc:
        raise UpstreamError(f"upstream answered non-JSON for {path}") from exc


async def json_rpc(upstream: Upstream, method: str, params: JSON = None) -> JSON:
    """Call one JSON-RPC method on /json_rpc and return its result, or raise ``UpstreamError``."""
    request: dict[str, JSON] = {"jsonrpc": "2.0", "id": "0", "method": method}
    if params is not None:
        request["params"] = params
    answer = await post_json(upstream, "/json_rpc", request)
    # A JSON-RPC answer is an object with a result or an error.
    if not isinstance(answer, dict):
        raise UpstreamError(f"upstream answered a non-object for {method}")
    if "error" in answer:
        error = answer["error"]
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        raise UpstreamError(f"upstream {method} failed: {message}")
    result = answer.get("result")
    if not isinstance(result, dict):
        raise UpstreamError(f"upstream {method} returned no result object")
    return result
