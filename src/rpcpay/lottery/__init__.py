"""Stamped lottery cheques (issue 5; spec in docs/lottery.md).

- ``eth``: secp256k1 keys, 65-byte signatures and addresses, through libsecp256k1.
- ``cheque``: lottery terms and ids, cheques, stamped cheques, ticket ranges, the draw,
  the wire form.
- ``eip712``: typed-data digests of cheques and stamps; signing and recovery.
- ``state``: the contract's lottery and stamper records as plain values.
- ``rules``: the payee's checks (``check_cheque``) and the fraud-proof rule.
- ``stamper``: the stamper's rules (``check_request``, the fee, ``judge_overlaps``);
  ``stamper_store``: the durable record of stamped ranges; ``stamper_wire``: the
  payer <-> stamper JSON; ``stamper_server``: the HTTP service; ``stamper_commands``:
  ``rpcpay stamper``; ``keyfile``: the stamper's key on disk.
"""

from rpcpay.lottery.cheque import (
    Cheque,
    Domain,
    LotteryTerms,
    StampedCheque,
    decode_stamped,
    encode_stamped,
    lottery_id,
)
from rpcpay.lottery.eip712 import cheque_hash, sign_cheque, sign_stamp
from rpcpay.lottery.eth import EthKey, recover_signer
from rpcpay.lottery.rules import (
    Accepted,
    ChequeRefusal,
    PayeePolicy,
    Refused,
    check_cheque,
    is_fraud_pair,
)
from rpcpay.lottery.state import LotteryState, StamperState

__all__ = [
    "Accepted",
    "Cheque",
    "ChequeRefusal",
    "Domain",
    "EthKey",
    "LotteryState",
    "LotteryTerms",
    "PayeePolicy",
    "Refused",
    "StampedCheque",
    "StamperState",
    "check_cheque",
    "cheque_hash",
    "decode_stamped",
    "encode_stamped",
    "is_fraud_pair",
    "lottery_id",
    "recover_signer",
    "sign_cheque",
    "sign_stamp",
]
