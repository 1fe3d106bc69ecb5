"""The pay-for-RPC protocol's constants, shared by the gateway and every client.

One place for the numbers and strings both sides branch on: monerod 0.18's statuses and error
codes (wallets written for monerod compare them verbatim), JSON-RPC 2.0's standard errors, and
rpcpay's own codes and HTTP headers for the paywall in front of any JSON-RPC backend
(docs/gateway.md, "The paywall for JSON-RPC backends").
"""

from __future__ import annotations

from typing import Final

# --- monerod's statuses (core_rpc_server_commands_defs.h) -----------------------------------
STATUS_OK: Final = "OK"
STATUS_BUSY: Final = "BUSY"
STATUS_PAYMENT_REQUIRED: Final = "PAYMENT REQUIRED"
STATUS_PAYMENT_NOT_NECESSARY: Final = "Payment not necessary"
SIGNATURE_STATUS_PREFIX: Final = "Client signature does not verify for "

# --- JSON-RPC 2.0 errors (the spec's, as epee and every standard server emit them) ------------
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602

# --- core_rpc_server_error_codes.h ------------------------------------------------------------
ERROR_WRONG_PARAM: Final = -1
ERROR_INTERNAL: Final = -5
ERROR_WRONG_BLOCKBLOB: Final = -6
ERROR_PAYMENT_REQUIRED: Final = -14
ERROR_INVALID_CLIENT: Final = -15
ERROR_PAYMENT_TOO_LOW: Final = -16
ERROR_DUPLICATE_PAYMENT: Final = -17
ERROR_STALE_PAYMENT: Final = -18
ERROR_PAYMENTS_NOT_ENABLED: Final = -21

# --- rpcpay's own codes, in JSON-RPC's implementation-defined range -------------------------
ERROR_UPSTREAM: Final = -32003
"""The backend failed (unreachable, non-200, not JSON); the charge was refunded."""
ERROR_PAYWALL: Final = -32004
"""A JSON-RPC backend's call was not paid (HTTP 402); ``error.data`` holds the terms."""
ERROR_RATE_LIMITED: Final = -32005
ERROR_STALE_CLIENT_ID: Final = -32006
"""A share or charge signed with a timestamp not newer than the client's last: a replay.
Nothing is charged, no penalty is booked and no budget is spent."""
ERROR_CHEQUE_REFUSED: Final = -40
"""Any refusal of ``lottery_pay_cheque``: the message starts with the refusal's code."""

# --- messages -------------------------------------------------------------------------------
MESSAGE_INVALID_CLIENT: Final = "Invalid client ID"
MESSAGE_STALE_CLIENT_ID: Final = (
    "Client id already used: sign each share with a newer timestamp; nothing was charged"
)
MESSAGE_PAYMENT_REQUIRED: Final = "Payment required"
MESSAGE_UPSTREAM_FAILED: Final = "Upstream unavailable; nothing was charged"
MESSAGE_BUSY: Final = "Server busy: paid calls are served first; nothing was charged"
"""A call shed from the gateway's full upstream line (``ERROR_RATE_LIMITED``, HTTP 200)."""

# --- HTTP ---------------------------------------------------------------------------------
HTTP_PAYMENT_REQUIRED: Final = 402
HEADER_CLIENT: Final = "X-Rpc-Client"
"""Where a JSON-RPC client sends its 208-character client id (any params shape, batches)."""
HEADER_CREDITS: Final = "X-Rpc-Credits"
HEADER_TOP_HASH: Final = "X-Rpc-Top-Hash"
HEADER_BID: Final = "X-Rpc-Bid"
"""Credits a paying client offers per call beyond the price, to go first among paid calls
waiting for the upstream (a gateway run with ``--bids``; monerod ignores it)."""

# --- the gateway's own methods --------------------------------------------------------------
ACCESS_INFO: Final = "rpc_access_info"
SUBMIT_NONCE: Final = "rpc_access_submit_nonce"
ACCESS_PAY: Final = "rpc_access_pay"
LOTTERY_INFO: Final = "lottery_info"
LOTTERY_PAY_CHEQUE: Final = "lottery_pay_cheque"


def signature_status(rpc: str) -> str:
    """The status monerod puts in a charged answer whose client id fails to verify."""
    return SIGNATURE_STATUS_PREFIX + rpc


def is_payment_refusal_status(status: str) -> bool:
    """A status that means "pay first": no or a bad client id, or too few credits."""
    return status == STATUS_PAYMENT_REQUIRED or status.startswith(SIGNATURE_STATUS_PREFIX)
