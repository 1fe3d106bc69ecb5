"""The payer <-> stamper protocol's JSON bodies (docs/lottery.md §13), both directions.

Byte strings travel as ``0x`` hex and numbers as decimal strings (a uint256 does not
fit a JSON number everywhere). The payer's side uses ``request_to_json`` and
``result_from_json``; the stamper's, the other two. Parsing never raises anything but
``ValueError``, with a message that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rpcpay.lottery.cheque import (
    U256_MAX,
    Cheque,
    Domain,
    StampedCheque,
    decode_stamped,
    encode_stamped,
)
from rpcpay.lottery.eth import SIGNATURE_LENGTH
from rpcpay.lottery.stamper import StampRecord, StampRequest

__all__ = [
    "PROTOCOL_VERSION",
    "StampResult",
    "parse_bytes",
    "parse_number",
    "request_from_json",
    "request_to_json",
    "result_from_json",
    "result_to_json",
]

PROTOCOL_VERSION = 1


@dataclass(frozen=True, slots=True)
class StampResult:
    """A stamped request: the payee's stamped cheque, the stamper's fee cheque (``None``
    when the fee is 0), where the payer's next range starts, and whether this was a
    retry of a request stamped before."""

    stamped: StampedCheque
    fee: StampRecord | None
    next_start: int
    repeat: bool


def parse_bytes(obj: dict[str, Any], name: str, length: int) -> bytes:
    """``obj[name]`` as ``length`` bytes given in 0x-hex."""
    value = obj.get(name)
    # The field is 0x-hex of exactly the length.
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * length:
        raise ValueError(f"{name} must be 0x and {2 * length} hex digits")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError(f"{name} must be 0x and {2 * length} hex digits") from None


def parse_number(obj: dict[str, Any], name: str) -> int:
    """``obj[name]`` as a uint256 given as a decimal string."""
    value = obj.get(name)
    # A decimal string of at most 78 digits, no sign, no spaces.
    if not isinstance(value, str) or not value.isdecimal() or not value.isascii():
        raise ValueError(f"{name} must be a decimal string")
    if len(value) > 78 or int(value) > U256_MAX:
        raise ValueError(f"{name} must be below 2**256")
    return int(value)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def request_to_json(request: StampRequest) -> dict[str, Any]:
    """The body a payer POSTs to ``/stamp``."""
    c = request.cheque
    return {
        "lottery": _hex(c.lottery),
        "recipient": _hex(c.recipient),
        "start": str(c.start),
        "value": str(c.value),
        "payer_sig": _hex(request.payer_sig),
        "fee_sig": None if request.fee_sig is None else _hex(request.fee_sig),
    }


def request_from_json(obj: Any) -> StampRequest:
    """Parse a ``/stamp`` body; ``ValueError`` names what is wrong."""
    # The body is one JSON object.
    if not isinstance(obj, dict):
        raise ValueError("the request must be a JSON object")
    cheque = Cheque(
        lottery=parse_bytes(obj, "lottery", 32),
        recipient=parse_bytes(obj, "recipient", 20),
        start=parse_number(obj, "start"),
        value=parse_number(obj, "value"),
    )
    payer_sig = parse_bytes(obj, "payer_sig", SIGNATURE_LENGTH)
    fee_sig = None if obj.get("fee_sig") is None else parse_bytes(obj, "fee_sig", SIGNATURE_LENGTH)
    return StampRequest(cheque=cheque, payer_sig=payer_sig, fee_sig=fee_sig)


def result_to_json(domain: Domain, result: StampResult) -> dict[str, Any]:
    """The ``/stamp`` answer: the stamp, the wire form for the payee, the fee, the cursor."""
    fee = result.fee
    return {
        "stamp": _hex(result.stamped.stamp_sig),
        "stamped": _hex(encode_stamped(domain, result.stamped)),
        "fee": None
        if fee is None
        else {
            "start": str(fee.cheque.start),
            "value": str(fee.cheque.value),
            "stamp": _hex(fee.stamp_sig),
        },
        "next_start": str(result.next_start),
        "repeat": result.repeat,
    }


def result_from_json(obj: Any) -> tuple[Domain, StampedCheque, int]:
    """The payer's reading of a ``/stamp`` answer: the stamped cheque's domain, the
    stamped cheque (to send to the payee as is), and the next free start."""
    # The answer is one JSON object.
    if not isinstance(obj, dict):
        raise ValueError("the answer must be a JSON object")
    stamped = obj.get("stamped")
    if not isinstance(stamped, str) or not stamped.startswith("0x"):
        raise ValueError("stamped must be 0x-hex")
    try:
        domain, sc = decode_stamped(bytes.fromhex(stamped[2:]))
    except ValueError as exc:
        raise ValueError(f"stamped: {exc}") from None
    return domain, sc, parse_number(obj, "next_start")
