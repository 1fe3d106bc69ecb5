"""monerod's JSON-RPC envelope, statuses and error codes, as the gateway answers them.

Wallets written for monerod 0.15-0.18 branch on these exact numbers and strings, so they are
kept verbatim (src/rpc/core_rpc_server_error_codes.h and epee's JSON-RPC map).
"""

from __future__ import annotations

from typing import Any, Final

JSON = Any

STATUS_OK: Final = "OK"
STATUS_BUSY: Final = "BUSY"
STATUS_PAYMENT_REQUIRED: Final = "PAYMENT REQUIRED"
STATUS_PAYMENT_NOT_NECESSARY: Final = "Payment not necessary"

# JSON-RPC 2.0 errors as epee emits them.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602

# core_rpc_server_error_codes.h
ERROR_WRONG_PARAM: Final = -1
ERROR_INTERNAL: Final = -5
ERROR_WRONG_BLOCKBLOB: Final = -6
ERROR_PAYMENT_REQUIRED: Final = -14
ERROR_INVALID_CLIENT: Final = -15
ERROR_PAYMENT_TOO_LOW: Final = -16
ERROR_DUPLICATE_PAYMENT: Final = -17
ERROR_STALE_PAYMENT: Final = -18
ERROR_PAYMENTS_NOT_ENABLED: Final = -21

# rpcpay's own codes, outside monerod's range, for refusals monerod never makes.
ERROR_UPSTREAM: Final = -32003
ERROR_RATE_LIMITED: Final = -32005
ERROR_STALE_CLIENT_ID: Final = -32006

MESSAGE_INVALID_CLIENT: Final = "Invalid client ID"
MESSAGE_STALE_CLIENT_ID: Final = (
    "Client id already used: sign each share with a newer timestamp; nothing was charged"
)
MESSAGE_BAD_HASH: Final = (
    "Hash does not meet difficulty (could be wrong PoW hash, or mining at lower difficulty "
    "than required, or attempt to defraud)"
)


def signature_status(rpc: str) -> str:
    """The status monerod puts in a charged answer whose client id fails to verify."""
    return f"Client signature does not verify for {rpc}"


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
