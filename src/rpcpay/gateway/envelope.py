"""JSON-RPC 2.0 requests as a standard server reads them: pure checks over decoded JSON.

``parse_request`` turns a decoded body into ``Call`` items (valid requests, notifications
included) and ``Invalid`` items (answered with the spec's error, never forwarded, never
charged). A batch is an array of 1 to ``MAX_BATCH_ITEMS`` items; an empty or larger array is
refused whole, as geth refuses an over-long batch.

A call's client id may travel in the ``X-Rpc-Client`` header (the only way for array params
and batches that changes nothing a backend sees), in a ``client`` member beside ``method``,
or in object params (monerod's place). The forwarded form drops the last two, and drops
params that held nothing but the client id (an Ethereum node refuses ``{}`` where it wants
no params).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from rpcpay.wire.rpc import INVALID_PARAMS, INVALID_REQUEST

JSON = Any

MAX_BATCH_ITEMS: Final = 1000
"""Items in one batch: geth's default ``BatchRequestLimit``; each is priced and forwarded."""


@dataclass(frozen=True, slots=True)
class Call:
    """One valid request. ``forwarded`` is the item as the backend gets it (no client id)."""

    method: str
    params: JSON
    request_id: JSON
    is_notification: bool
    client: JSON
    forwarded: dict[str, JSON]
    stripped: bool


@dataclass(frozen=True, slots=True)
class Invalid:
    """An item the spec says to refuse, with the id to answer it under (None if unreadable)."""

    request_id: JSON
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """A whole request body: its items in order, and whether it was a batch."""

    items: tuple[Call | Invalid, ...]
    is_batch: bool


def is_valid_id(value: JSON) -> bool:
    """JSON-RPC ids are strings, numbers or null (never booleans, arrays or objects)."""
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def parse_item(item: JSON) -> Call | Invalid:
    """Check one request object as the spec's section 4 requires."""
    # A request is an object.
    if not isinstance(item, dict):
        return Invalid(None, INVALID_REQUEST, "Invalid Request: not an object")
    request_id = item.get("id")
    # Its id, when present, is a string, a number or null.
    if not is_valid_id(request_id):
        return Invalid(None, INVALID_REQUEST, "Invalid Request: id must be a string or number")
    # It says jsonrpc "2.0".
    if item.get("jsonrpc") != "2.0":
        return Invalid(request_id, INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"')
    method = item.get("method")
    # It names a method with a string.
    if not isinstance(method, str) or not method:
        return Invalid(request_id, INVALID_REQUEST, "Invalid Request: method must be a string")
    params = item.get("params")
    # Params, when present, are structured: an array or an object.
    if "params" in item and not isinstance(params, (list, dict)):
        return Invalid(request_id, INVALID_PARAMS, "Invalid params: must be an array or object")
    client = item.get("client")
    if client is None and isinstance(params, dict):
        client = params.get("client")
    forwarded = {k: v for k, v in item.items() if k != "client"}
    stripped = "client" in item
    if isinstance(params, dict) and "client" in params:
        rest = {k: v for k, v in params.items() if k != "client"}
        # Params that only carried the client id were ours: the backend gets none.
        if rest:
            forwarded["params"] = rest
        else:
            del forwarded["params"]
        stripped = True
    return Call(method, params, request_id, "id" not in item, client, forwarded, stripped)


def parse_request(document: JSON) -> Envelope | Invalid:
    """A decoded body as items; ``Invalid`` when the body as a whole is refused."""
    if isinstance(document, list):
        # A batch holds at least one item.
        if not document:
            return Invalid(None, INVALID_REQUEST, "Invalid Request: empty batch")
        # A batch is bounded: each item is priced and forwarded.
        if len(document) > MAX_BATCH_ITEMS:
            return Invalid(
                None, INVALID_REQUEST, f"Invalid Request: batch too large (max {MAX_BATCH_ITEMS})"
            )
        return Envelope(tuple(parse_item(item) for item in document), True)
    parsed = parse_item(document)
    return Envelope((parsed,), False)
