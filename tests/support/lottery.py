"""The params of ``lottery_pay_cheque`` as a payer sends them: the cheque and the payer's
``Credit(cheque, account)`` signature naming the client it pays for."""

from __future__ import annotations

from rpcpay.lottery.cheque import decode_stamped
from rpcpay.lottery.eip712 import sign_credit
from rpcpay.lottery.eth import EthKey
from rpcpay.wallet.keys import ClientKey


def pay_params(
    client: ClientKey, cheque_hex: str, payer: EthKey, account: bytes | None = None
) -> dict[str, str]:
    """``account`` (default: the client's own key) is what the payer signs it for."""
    try:
        domain, sc = decode_stamped(bytes.fromhex(cheque_hex))
    except ValueError:  # a malformed cheque: the gateway refuses it before the signature
        return {"client": client.client_id(), "cheque": cheque_hex, "account_sig": "00" * 65}
    sig = sign_credit(payer, domain, sc.cheque, account or client.public)
    return {"client": client.client_id(), "cheque": cheque_hex, "account_sig": sig.hex()}
