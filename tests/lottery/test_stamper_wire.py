"""The payer <-> stamper JSON: round trips, and every malformed field named."""

from __future__ import annotations

from typing import Any

import pytest

from rpcpay.lottery.cheque import Cheque, Domain, StampedCheque
from rpcpay.lottery.stamper import StampRecord, StampRequest
from rpcpay.lottery.stamper_wire import (
    StampResult,
    request_from_json,
    request_to_json,
    result_from_json,
    result_to_json,
)

C = Cheque(b"\x01" * 32, b"\x02" * 20, 2**200, 7)
DOMAIN = Domain(1337, b"\xcc" * 20)


def test_round_trips() -> None:
    for fee_sig in (b"\x04" * 65, None):
        request = StampRequest(C, b"\x03" * 65, fee_sig)
        assert request_from_json(request_to_json(request)) == request
    fee = StampRecord(
        Cheque(C.lottery, b"\x05" * 20, C.end, 1), b"\x06" * 65, b"\x07" * 65, True, 0
    )
    sc = StampedCheque(C, b"\x08" * 65, b"\x09" * 65)
    body = result_to_json(DOMAIN, StampResult(sc, fee, C.end + 1, False))
    assert body["fee"]["start"] == str(C.end) and body["repeat"] is False
    assert result_from_json(body) == (DOMAIN, sc, C.end + 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lottery": "0x" + "01" * 31}, "lottery must be 0x and 64 hex digits"),
        ({"recipient": "02" * 20}, "recipient must be 0x"),
        ({"recipient": "0x" + "zz" * 20}, "recipient must be 0x"),
        ({"start": 5}, "start must be a decimal string"),
        ({"start": "+5"}, "start must be a decimal string"),
        ({"value": "٣"}, "value must be a decimal string"),  # a non-ASCII digit
        ({"value": str(2**256)}, r"value must be below 2\*\*256"),
        ({"payer_sig": None}, "payer_sig must be 0x"),
        ({"fee_sig": "0x00"}, "fee_sig must be 0x and 130 hex digits"),
    ],
)
def test_malformed_requests_name_the_field(change: dict[str, Any], message: str) -> None:
    body = {**request_to_json(StampRequest(C, b"\x03" * 65, b"\x04" * 65)), **change}
    with pytest.raises(ValueError, match=message):
        request_from_json(body)


def test_malformed_answers() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        result_from_json([])
    with pytest.raises(ValueError, match="stamped must be 0x-hex"):
        result_from_json({"stamped": 5})
    with pytest.raises(ValueError, match="stamped: a stamped cheque is 274 bytes"):
        result_from_json({"stamped": "0x00", "next_start": "1"})
