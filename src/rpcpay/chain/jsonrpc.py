"""``JsonRpcChain``: the settlement contract on any Ethereum node, over JSON-RPC.

Reads are ``eth_call`` at a block number; transactions are EIP-1559, signed here
(``rpcpay.chain.transaction``) and sent raw, so the node never holds a key. Each
call returns once the transaction is mined (its receipt is polled).

Refusals. By default every transaction is simulated first (``eth_estimateGas``, which
also sizes its gas): one the contract would refuse raises ``TransactionReverted`` with
the contract's message and is never sent, so it costs nothing. A transaction that is
sent and reverts anyway (the state changed in between) is mined and costs gas; its
reason comes from replaying it with ``eth_call`` at the block it was mined in. A
revert leaves the contract as it was, so that state is the one the transaction met,
with the same ``block.number`` (exact on anvil, where each transaction has a block of
its own; on a busy chain, transactions after it in the same block can make the replay
differ, and the message says so).
``preflight=False`` sends without simulating, with fixed gas limits, as the
in-process chain does (tests use it to run the same assertions on both).

The transport is swappable (``JsonRpcTransport``: one POST of bytes, one answer of
bytes): ``HttpTransport`` for http(s) URLs, test doubles for broken nodes. Node URLs
often carry an API key in the path or query: only ``scheme://host:port`` ever
appears in errors and logs (``redact_url``).
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from rpcpay.chain.abi import (
    ContractAbi,
    decode_revert,
)
from rpcpay.chain.artifact import ContractArtifact, load_artifact
from rpcpay.chain.contract_calls import ContractCalls
from rpcpay.chain.settlement import ContractParams, LogEntry, Receipt, SettlementChain
from rpcpay.chain.transaction import Eip1559Transaction, sign_transaction
from rpcpay.errors import ChainError, ChainRpcError, TransactionReverted
from rpcpay.lottery.eth import EthKey

__all__ = [
    "CALL_GAS",
    "DEPLOY_GAS",
    "HttpTransport",
    "JsonRpcChain",
    "JsonRpcTransport",
    "redact_url",
]

log = logging.getLogger("rpcpay.chain")

CALL_GAS = 1_000_000
"""Gas limit of a contract call sent without simulation (no rpcpay call needs 250k)."""
DEPLOY_GAS = 6_000_000
GAS_MARGIN_PERCENT = 20
"""Added to a simulated gas figure: state can change a little before the transaction runs."""
METHOD_NOT_FOUND = -32601


def redact_url(url: str) -> str:
    """``scheme://host:port`` of a node URL: what may appear in logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class JsonRpcTransport(Protocol):
    """Carries one JSON-RPC request body to a node and brings back its answer."""

    @property
    def name(self) -> str:
        """What to call the node in messages (never a secret)."""
        ...

    def post(self, body: bytes) -> bytes:
        """Send ``body``; return the answer's body. Raises ``ChainError`` if it cannot."""
        ...

    def close(self) -> None: ...


class HttpTransport:
    """HTTP(S) POSTs to one node URL over a kept-alive connection (thread-safe)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        # Only HTTP(S) nodes are reachable this way.
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainError(f"chain URL must be http:// or https://host, got {redact_url(url)}")
        self.name = redact_url(url)
        self._host = parts.hostname
        self._port = parts.port
        self._https = parts.scheme == "https"
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if parts.username is not None:
            userinfo = f"{urllib.parse.unquote(parts.username)}:"
            userinfo += urllib.parse.unquote(parts.password or "")
            self._headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            klass = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = klass(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, body: bytes) -> bytes:
        with self._lock:
            for attempt in (1, 2):
                try:
                    conn = self._connect()
                    conn.request("POST", self._target, body=body, headers=self._headers)
                    response = conn.getresponse()
                    data = response.read()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # A kept-alive connection the node closed: reconnect once. Resending
                    # is safe: reads are idempotent, and a raw transaction has one hash.
                    self._drop()
                    if attempt == 2:
                        raise ChainError(f"{self.name} closed the connection") from None
                    continue
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    raise ChainError(f"cannot reach the chain at {self.name}: {exc}") from exc
                # A JSON-RPC answer comes with HTTP 200.
                if response.status != 200:
                    self._drop()
                    snippet = data[:200].decode(errors="replace")
                    raise ChainError(f"{self.name} answered HTTP {response.status}: {snippet}")
                return data
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._drop()


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(value: Any, what: str) -> bytes:
    # The node sends byte strings as 0x-prefixed hex.
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"node sent {what} that is not hex: {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ChainError(f"node sent {what} that is not hex: {value!r}") from exc


def _quantity(value: Any, what: str) -> int:
    # The node sends numbers as 0x-prefixed hex quantities.
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"node sent {what} that is not a hex quantity: {value!r}")
    try:
        return int(value, 16)
    except ValueError as exc:
        raise ChainError(f"node sent {what} that is not a hex quantity: {value!r}") from exc


def _tag(block: int | None) -> str:
    return "latest" if block is None else hex(block)


def _revert_reason(error: ChainRpcError) -> str | None:
    """The contract's message if ``error`` is a revert, ``None`` if it is anything else."""
    data = error.data
    if isinstance(data, dict):  # some nodes nest it: {"data": {"data": "0x..."}}
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            reason = decode_revert(bytes.fromhex(data[2:]))
        except ValueError:
            reason = None
        if reason is not None:
            return reason
    text = error.message
    # Nodes phrase a revert without a message as "execution reverted".
    if "revert" in text.lower():
        for prefix in ("execution reverted: ", "execution reverted"):
            if text.startswith(prefix) and text[len(prefix) :].strip():
                return text[len(prefix) :].strip()
        return text
    return None


class JsonRpcChain(ContractCalls):
    """The settlement contract on the chain behind one JSON-RPC node."""

    def __init__(
        self,
        node: str | JsonRpcTransport,
        *,
        chain_id: int | None = None,
        artifact: ContractArtifact | None = None,
        preflight: bool = True,
        priority_fee: int | None = None,
        receipt_timeout: float = 180.0,
        poll_interval: float = 0.005,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Connect to ``node`` (a URL or a transport) and learn its chain id.

        ``chain_id``: refuse a node on another chain (a payer's cheques name one).
        ``priority_fee``: the tip in wei per gas (default: the node's
        ``eth_maxPriorityFeePerGas``). Receipts are polled from ``poll_interval``
        seconds, doubling up to 1 s, for at most ``receipt_timeout`` seconds.
        """
        self._transport = HttpTransport(node) if isinstance(node, str) else node
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._artifact = artifact or load_artifact()
        self._abi = ContractAbi(self._artifact.abi)
        self._contract: bytes | None = None
        self._preflight = preflight
        self._priority_fee = priority_fee
        self._receipt_timeout = receipt_timeout
        self._poll_interval = poll_interval
        self._sleep = sleep
        self._chain_id = _quantity(self.rpc("eth_chainId", []), "a chain id")
        # The node serves the chain the caller means.
        if chain_id is not None and chain_id != self._chain_id:
            raise ChainError(
                f"{self._transport.name} serves chain id {self._chain_id}, not {chain_id}"
            )

    # --- JSON-RPC ------------------------------------------------------------------
    def rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; its ``result``, or ``ChainRpcError`` with the node's error."""
        request_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        raw = self._transport.post(body.encode())
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise ChainError(f"{self._transport.name} answered {method} with non-JSON") from exc
        # The answer is a JSON-RPC response to this request.
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise ChainError(f"{self._transport.name} answered {method} with {str(answer)[:200]}")
        error = answer.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise ChainError(f"{self._transport.name} answered {method} with error {error!r}")
            code = error.get("code")
            raise ChainRpcError(
                method,
                code if isinstance(code, int) else 0,
                str(error.get("message", "")),
                error.get("data"),
            )
        # A successful answer has a result (null included).
        if "result" not in answer:
            raise ChainError(f"{self._transport.name} answered {method} with no result")
        return answer["result"]

    def close(self) -> None:
        self._transport.close()

    # --- identity --------------------------------------------------------------------
    @property
    def node(self) -> str:
        """The node's redacted URL."""
        return self._transport.name

    # --- transactions ------------------------------------------------------------------
    def _simulate_gas(self, call: dict[str, str]) -> int:
        try:
            estimate = _quantity(self.rpc("eth_estimateGas", [call]), "a gas estimate")
        except ChainRpcError as exc:
            reason = _revert_reason(exc)
            if reason is None:
                raise
            raise TransactionReverted(reason) from exc
        return estimate + estimate * GAS_MARGIN_PERCENT // 100

    def _fees(self) -> tuple[int, int]:
        """``(max_priority_fee_per_gas, max_fee_per_gas)``: the tip, and room for the base
        fee to double before the transaction is included."""
        block = self.rpc("eth_getBlockByNumber", ["latest", False])
        if not isinstance(block, dict):
            raise ChainError(f"{self._transport.name} has no latest block")
        base = _quantity(block.get("baseFeePerGas", "0x0"), "a base fee")
        tip = self._priority_fee
        if tip is None:
            tip = _quantity(self.rpc("eth_maxPriorityFeePerGas", []), "a priority fee")
        return tip, 2 * base + tip

    def _wait_receipt(self, tx_hash: bytes) -> dict[str, Any]:
        deadline = time.monotonic() + self._receipt_timeout
        interval = self._poll_interval
        while True:
            receipt = self.rpc("eth_getTransactionReceipt", [_hex(tx_hash)])
            if isinstance(receipt, dict) and receipt.get("blockNumber"):
                return receipt
            if time.monotonic() >= deadline:
                raise ChainError(
                    f"transaction {_hex(tx_hash)} not mined within {self._receipt_timeout:.0f} s "
                    "(it may still be)"
                )
            self._sleep(interval)
            interval = min(interval * 2, 1.0)

    def _replay_reason(self, call: dict[str, str], block: int) -> str:
        """Why a mined transaction reverted: the same call again at its block.

        Not at the block before: ``eth_call`` runs with the block number of the block
        it is given, and the contract's rules depend on ``block.number``.
        """
        try:
            self.rpc("eth_call", [call, hex(block)])
        except ChainRpcError as exc:
            reason = _revert_reason(exc)
            if reason is not None:
                return reason
            return exc.message
        return "reverted (a replay at its block succeeds: later transactions changed the state)"

    def send_transaction(
        self, key: EthKey, to: bytes, data: bytes, value: int = 0, gas: int | None = None
    ) -> Receipt:
        """Sign, send and wait for one transaction (``to=b""`` creates a contract, and then
        ``output`` is the new address). For tests and tools; services use the named methods.
        """
        call: dict[str, str] = {"from": _hex(key.address), "data": _hex(data), "value": hex(value)}
        if to:
            call["to"] = _hex(to)
        with self._lock:
            if gas is None and self._preflight:
                gas = self._simulate_gas(call)
            elif gas is None:
                gas = CALL_GAS if to else DEPLOY_GAS
            call["gas"] = hex(gas)
            nonce = _quantity(
                self.rpc("eth_getTransactionCount", [_hex(key.address), "pending"]), "a nonce"
            )
            tip, fee_cap = self._fees()
            tx = Eip1559Transaction(self._chain_id, nonce, tip, fee_cap, gas, to, value, data)
            raw, tx_hash = sign_transaction(key, tx)
            try:
                sent = self.rpc("eth_sendRawTransaction", [_hex(raw)])
            except ChainRpcError as exc:
                # A resent transaction the node already has is not an error: wait for it.
                if "already known" not in exc.message.lower():
                    raise
                sent = _hex(tx_hash)
            if _unhex(sent, "a transaction hash") != tx_hash:
                raise ChainError(f"{self._transport.name} reports another transaction hash")
            receipt = self._wait_receipt(tx_hash)
            block = _quantity(receipt["blockNumber"], "a block number")
            gas_used = _quantity(receipt["gasUsed"], "gas used")
            price = _quantity(receipt.get("effectiveGasPrice", hex(fee_cap)), "a gas price")
            fee = gas_used * price
            # Status 1 is success; 0 a revert that was mined (and paid for).
            if _quantity(receipt.get("status", "0x1"), "a status") == 0:
                raise TransactionReverted(self._replay_reason(call, block), gas_used, fee)
            logs = tuple(
                LogEntry(
                    address=_unhex(entry["address"], "a log address"),
                    topics=tuple(_unhex(t, "a log topic") for t in entry["topics"]),
                    data=_unhex(entry["data"], "log data"),
                )
                for entry in receipt.get("logs", [])
            )
            created = receipt.get("contractAddress")
            output = _unhex(created, "a contract address") if not to and created else b""
            log.debug(
                "transaction mined",
                extra={"tx": _hex(tx_hash), "block": block, "gas_used": gas_used, "fee": fee},
            )
            return Receipt(tx_hash, block, gas_used, fee, output, logs)

    def deploy(self, key: EthKey, params: ContractParams) -> bytes:
        code = self._abi.deployment(self._artifact.bytecode, params)
        receipt = self.send_transaction(key, b"", code)
        # A deployment's receipt names the new contract.
        if len(receipt.output) != 20:
            raise ChainError("the deployment's receipt names no contract address")
        self._contract = receipt.output
        return receipt.output

    # --- reads -------------------------------------------------------------------------
    def call_view(self, name: str, *args: Any, block: int | None = None) -> tuple[Any, ...]:
        call = {"to": _hex(self.contract), "data": _hex(self._abi.calldata(name, *args))}
        try:
            output = _unhex(self.rpc("eth_call", [call, _tag(block)]), "call output")
        except ChainRpcError as exc:
            raise ChainError(f"call {name} failed: {exc}") from exc
        try:
            return self._abi.result(name, output)
        except Exception as exc:
            raise ChainError(f"call {name} returned undecodable {output[:64].hex()}") from exc

    def block_number(self) -> int:
        return _quantity(self.rpc("eth_blockNumber", []), "a block number")

    def block_hash(self, number: int) -> bytes:
        block = self.rpc("eth_getBlockByNumber", [hex(number), False])
        # A block that is not mined has no hash yet.
        if not isinstance(block, dict):
            raise ChainError(f"no block {number}")
        return _unhex(block.get("hash"), "a block hash")

    def balance(self, address: bytes, block: int | None = None) -> int:
        return _quantity(self.rpc("eth_getBalance", [_hex(address), _tag(block)]), "a balance")

    # --- development -------------------------------------------------------------------
    def mine(self, blocks: int = 1) -> int:
        """Mine empty blocks on a development node (anvil's ``anvil_mine``, else ``evm_mine``)."""
        # A block count is never negative.
        if blocks < 0:
            raise ValueError("blocks must be >= 0")
        if blocks == 0:
            return self.block_number()
        try:
            self.rpc("anvil_mine", [hex(blocks)])
        except ChainRpcError as exc:
            if exc.code != METHOD_NOT_FOUND:
                raise
            try:
                for _ in range(blocks):
                    self.rpc("evm_mine", [])
            except ChainRpcError as inner:
                raise ChainError(
                    f"{self._transport.name} cannot mine on demand (a real chain mines on its own)"
                ) from inner
        return self.block_number()


def _conforms(chain: JsonRpcChain) -> SettlementChain:
    """Never called: makes mypy prove that ``JsonRpcChain`` is a ``SettlementChain``."""
    return chain
