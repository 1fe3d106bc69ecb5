"""monerod's JSON-RPC envelope, statuses and error codes, as the gateway answers them.

Wallets written for monerod 0.15-0.18 branch on these exact numbers and strings, so they are
kept verbatim (src/rpc/core_rpc_server_error_codes.h and epee's JSON-RPC map).
"""

from __future__ import annotations

from typing import Any, Final

from rpcpay.wire.rpc import (  # the one place for them; re-exported for the gateway
    ERROR_CHEQUE_REFUSED,
    ERROR_DUPLICATE_PAYMENT,
    ERROR_INTERNAL,
    ERROR_INVALID_CLIENT,
    ERROR_PAYMENT_REQUIRED,
    ERROR_PAYMENT_TOO_LOW,
    ERROR_PAYMENTS_NOT_ENABLED,
    ERROR_PAYWALL,
    ERROR_RATE_LIMITED,
    ERROR_STALE_CLIENT_ID,
    ERROR_STALE_PAYMENT,
    ERROR_UPSTREAM,
    ERROR_WRONG_BLOCKBLOB,
    ERROR_WRONG_PARAM,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_INVALID_CLIENT,
    MESSAGE_STALE_CLIENT_ID,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    STATUS_BUSY,
    STATUS_OK,
    STATUS_PAYMENT_NOT_NECESSARY,
    STATUS_PAYMENT_REQUIRED,
    signature_status,
)

JSON = Any

__all__ = [
    "ERROR_CHEQUE_REFUSED",
    "ERROR_DUPLICATE_PAYMENT",
    "ERROR_INTERNAL",
    "ERROR_INVALID_CLIENT",
    "ERROR_PAYMENTS_NOT_ENABLED",
    "ERROR_PAYMENT_REQUIRED",
    "ERROR_PAYMENT_TOO_LOW",
    "ERROR_PAYWALL",
    "ERROR_RATE_LIMITED",
    "ERROR_STALE_CLIENT_ID",
    "ERROR_STALE_PAYMENT",
    "ERROR_UPSTREAM",
    "ERROR_WRONG_BLOCKBLOB",
    "ERROR_WRONG_PARAM",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "JSON",
    "MESSAGE_BAD_HASH",
    "MESSAGE_INVALID_CLIENT",
    "MESSAGE_STALE_CLIENT_ID",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "STATUS_BUSY",
    "STATUS_OK",
    "STATUS_PAYMENT_NOT_NECESSARY",
    "STATUS_PAYMENT_REQUIRED",
    "RpcFault",
    "error_response",
    "result_response",
    "signature_status",
]

MESSAGE_BAD_HASH: Final = (
    "Hash does not meet difficulty (could be wrong PoW hash, or mining at lower difficulty "
    "than required, or attempt to defraud)"
)


def error_response(request_id: JSON, code: int, message: str) -> dict[str, JSON]:
    """A JSON-RPC error object exactly as epee serialises it."""
    return {"error": {"code": code, "message": message}, "id": request_id, "jsonrpc": "2.0"}


def result_response(request_id: JSON, result: dict[str, JSON]) -> dict[str, JSON]:
    """A JSON-RPC success object."""
    return {"id": request_id, "jsonrpc": "2.0", "result": result}


class RpcFault(Exception):
    """A refusal answered as a JSON-RPC error object (code and message as monerod's)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
