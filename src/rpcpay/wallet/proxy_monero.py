"""How the paying proxy signs Monero's JSON and epee requests, and reads their answers.

monerod's JSON endpoints (``/get_info``, ``/sendrawtransaction``, …) and its epee ``.bin``
endpoints carry the client id as a ``client`` field of the request body; a refusal is a
``status`` in the answer: ``PAYMENT REQUIRED`` (earn credits, send again) or ``Client
signature does not verify for …``. Pure functions over bytes.
"""

from __future__ import annotations

from rpcpay.errors import WireError
from rpcpay.gateway.jsoncodec import decode_json, encode_json
from rpcpay.wire import epee


class BadRequest(ValueError):
    """The caller's body is not what the endpoint takes (answered 400, sent nowhere)."""


def check_json_body(body: bytes) -> dict[str, object]:
    """A JSON endpoint's request: an object (an empty body is ``{}``)."""
    try:
        document = decode_json(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Failed to parse JSON request") from exc
    # A JSON endpoint takes an object.
    if not isinstance(document, dict):
        raise BadRequest("Failed to parse JSON request: expected an object")
    return document


def sign_json(document: dict[str, object], client_id: str) -> bytes:
    """The request with our client id in ``client`` (any the caller sent is replaced)."""
    return encode_json({**document, "client": client_id})


def json_status(answer: bytes) -> str | None:
    """The answer's ``status``, if it is a JSON object with one."""
    try:
        decoded = decode_json(answer)
    except (ValueError, UnicodeDecodeError):
        return None
    status = decoded.get("status") if isinstance(decoded, dict) else None
    return status if isinstance(status, str) else None


def check_epee_body(body: bytes) -> None:
    """An epee endpoint's request must be epee."""
    try:
        epee.decode(body)
    except WireError as exc:
        raise BadRequest(f"not an epee request: {exc}") from exc


def sign_epee(body: bytes, client_id: str) -> bytes:
    """The epee request with our client id in ``client`` (in epee's sorted field order)."""
    section = epee.decode(body)
    epee.remove(section, "client")
    epee.set_string(section, "client", client_id.encode())
    return epee.encode(section)


def epee_status(answer: bytes) -> str | None:
    """The epee answer's ``status``, if it has one."""
    try:
        status = epee.get_string(epee.decode(answer), "status")
    except WireError:
        return None
    return status.decode("latin-1") if status is not None else None
