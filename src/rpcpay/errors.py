"""The one exception tree of rpcpay.

Every error rpcpay raises on purpose derives from ``RpcPayError``::

    RpcPayError
    ├── ConfigError            bad flag, price file or data dir (reported, never a traceback)
    ├── WireError              bytes that do not parse as monerod's formats
    │   ├── ClientIdError      a malformed 208-character client id
    │   └── BlockFormatError   a block or transaction blob we cannot parse
    ├── PowError               RandomX could not be loaded or run
    │   └── VerifierBusy       too many shares queued; the share was not checked
    ├── LedgerError            the ledger store failed; no balance changed
    │   └── LedgerBusy         every database connection is in use and the queue is full
    ├── UpstreamError          the backend behind the gateway failed; nobody was charged
    ├── ChainError             the settlement chain failed, or its contract is not the shipped one
    │   ├── TransactionReverted  the contract refused a transaction (the reason is its message)
    │   └── ChainRpcError        the chain's JSON-RPC node answered with an error object
    ├── StampStoreError        the stamper's record of stamped ranges failed; nothing was stamped
    └── LotteryPaymentError    the lottery payer's stamper or server is unreachable or refuses
"""


class RpcPayError(Exception):
    """Base of every error rpcpay raises on purpose."""


class ConfigError(RpcPayError):
    """A flag, price file or data directory is unusable."""


class WireError(RpcPayError):
    """Bytes that do not parse as one of monerod's wire formats."""


class ClientIdError(WireError):
    """A client id that is not 208 hex-and-timestamp characters."""


class BlockFormatError(WireError):
    """A block or transaction blob that does not parse."""


class PowError(RpcPayError):
    """RandomX could not be loaded or run."""


class VerifierBusy(PowError):
    """The share queue is full: the share was refused unchecked, costing the server nothing."""


class LedgerError(RpcPayError):
    """The ledger store failed; the operation changed no balance."""


class LedgerBusy(LedgerError):
    """No ledger connection came free in time, or too many calls already wait for one."""


class UpstreamError(RpcPayError):
    """The backend behind the gateway failed or answered garbage; nobody was charged."""


class ChainError(RpcPayError):
    """The settlement chain could not be reached or used, or its contract is not the shipped one."""


class TransactionReverted(ChainError):
    """The settlement contract refused a transaction; ``reason`` is its revert message.

    On a real chain a reverted transaction is still mined and still costs gas;
    ``gas_used`` says how much, ``fee`` what the sender paid for it.
    """

    def __init__(self, reason: str, gas_used: int = 0, fee: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.gas_used = gas_used
        self.fee = fee


class ChainRpcError(ChainError):
    """A JSON-RPC node answered a request with an error object (``code``, ``message``, ``data``)."""

    def __init__(self, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class StampStoreError(RpcPayError):
    """The stamper's durable record of stamped ranges failed; nothing was stamped."""


class LotteryPaymentError(RpcPayError):
    """The lottery payer could not pay: its stamper or a server is unreachable or refuses."""
