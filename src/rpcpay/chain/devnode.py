"""``rpcpay chain``: the embedded EVM (py-evm) served over a minimal Ethereum JSON-RPC.

The in-process chain lives and dies with one process, so a payer, a stamper and the
gateways cannot share it. ``DevNode`` keeps one py-evm chain in memory, with funded
development keys and the shipped settlement contract deployed at start, and answers
exactly the JSON-RPC methods ``JsonRpcChain`` uses (docs/lottery.md §14) on 127.0.0.1:

``eth_chainId``, ``eth_blockNumber``, ``eth_getBlockByNumber``, ``eth_getBalance``,
``eth_getTransactionCount``, ``eth_call``, ``eth_estimateGas``, ``eth_sendRawTransaction``,
``eth_getTransactionReceipt``, ``eth_gasPrice``, ``eth_maxPriorityFeePerGas``,
``anvil_mine``, ``evm_mine`` (and ``net_version``, ``web3_clientVersion``). Anything else is
JSON-RPC error -32601 naming the method.

Blocks: with ``block_time`` 0 each transaction is mined at once in a block of its own
(anvil's automine); ``anvil_mine``/``evm_mine`` add empty blocks. With ``block_time`` N an
empty block is also mined every N seconds, so lotteries reveal as time passes.
State is in memory only: a restart is a new chain (with the same keys and, as the
deployment is deterministic, the same contract address).

Requests are served one at a time on the event loop (py-evm is CPU-bound and not
thread-safe; a transaction takes ~5 ms), which also makes every answer consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.exceptions import Revert
from eth.vm.forks.cancun import CancunVM
from eth.vm.spoof import SpoofTransaction
from eth_keys.datatypes import PrivateKey

from rpcpay.chain.abi import ContractAbi
from rpcpay.chain.artifact import load_artifact
from rpcpay.chain.inprocess import DEV_BALANCE, dev_keys
from rpcpay.chain.settlement import DEFAULT_PARAMS, ContractParams
from rpcpay.errors import ChainError
from rpcpay.lottery.eth import EthKey

__all__ = ["DevNode", "DevNodeConfig", "RpcFailure", "serve_in_thread"]

log = logging.getLogger("rpcpay.chain.devnode")

BLOCK_GAS_LIMIT = 30_000_000
DEPLOY_GAS = 6_000_000
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INVALID_REQUEST = -32600
PARSE_ERROR = -32700
EXECUTION_REVERTED = 3  # what geth and anvil answer for a revert in eth_call/eth_estimateGas
TX_REJECTED = -32000
_ZERO = bytes(20)


class RpcFailure(Exception):
    """A JSON-RPC error to answer with (``code``, ``message``, optional ``data``)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True)
class DevNodeConfig:
    """What ``rpcpay chain`` is told: where to listen, the chain, its contract, its keys."""

    host: str = "127.0.0.1"
    port: int = 8545
    chain_id: int = 1337
    keys: int = 10
    balance: int = DEV_BALANCE
    block_time: float = 0.0
    params: ContractParams = DEFAULT_PARAMS
    deploy: bool = True  # False: start at genesis with no contract (conformance tests deploy)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _q(n: int) -> str:
    return hex(n)


def _bytes_param(value: Any, what: str, length: int | None = None) -> bytes:
    # Byte strings arrive as 0x-hex (of a fixed length for addresses and hashes).
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcFailure(INVALID_PARAMS, f"{what} must be 0x-hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise RpcFailure(INVALID_PARAMS, f"{what} must be 0x-hex") from None
    if length is not None and len(raw) != length:
        raise RpcFailure(INVALID_PARAMS, f"{what} must be {length} bytes")
    return raw


def _quantity_param(value: Any, what: str) -> int:
    # Numbers arrive as 0x-hex quantities.
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcFailure(INVALID_PARAMS, f"{what} must be a 0x-hex quantity")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcFailure(INVALID_PARAMS, f"{what} must be a 0x-hex quantity") from None


@dataclass
class _MinedTx:
    receipt: dict[str, Any]


@dataclass
class DevNode:
    """One in-memory chain with funded keys and the settlement contract, and its JSON-RPC."""

    config: DevNodeConfig = field(default_factory=DevNodeConfig)

    def __post_init__(self) -> None:
        self.keys: list[EthKey] = dev_keys(self.config.keys)
        klass = MiningChain.configure(
            __name__="RpcpayDevNode",
            vm_configuration=((0, CancunVM),),
            chain_id=self.config.chain_id,
        )
        genesis = {
            "difficulty": 0, "gas_limit": BLOCK_GAS_LIMIT, "timestamp": 1_700_000_000,
            "nonce": bytes(8), "mix_hash": bytes(32), "coinbase": _ZERO, "extra_data": b"",
        }  # fmt: skip
        state = {
            k.address: {"balance": self.config.balance, "nonce": 0, "code": b"", "storage": {}}
            for k in self.keys
        }
        self.chain: Any = cast(Any, klass).from_genesis(AtomicDB(), genesis, state)
        self._receipts: dict[bytes, _MinedTx] = {}
        self._lock = threading.Lock()
        self.contract: bytes | None = self._deploy() if self.config.deploy else None
        self.methods: dict[str, Callable[[list[Any]], Any]] = {
            "eth_chainId": lambda p: _q(self.config.chain_id),
            "net_version": lambda p: str(self.config.chain_id),
            "web3_clientVersion": lambda p: "rpcpay-devnode/py-evm",
            "eth_blockNumber": lambda p: _q(self.head.block_number),
            "eth_getBlockByNumber": self._get_block,
            "eth_getBalance": self._get_balance,
            "eth_getTransactionCount": self._get_nonce,
            "eth_call": self._call,
            "eth_estimateGas": self._estimate_gas,
            "eth_sendRawTransaction": self._send_raw,
            "eth_getTransactionReceipt": self._get_receipt,
            "eth_gasPrice": lambda p: _q(self.chain.header.base_fee_per_gas),
            "eth_maxPriorityFeePerGas": lambda p: _q(0),
            "anvil_mine": self._mine,
            "evm_mine": lambda p: self.mine(1) and "0x0",
        }

    # --- chain -------------------------------------------------------------------
    @property
    def head(self) -> Any:
        return self.chain.get_canonical_head()

    def mine(self, blocks: int = 1) -> int:
        """Mine empty blocks; the new head number."""
        with self._lock:
            for _ in range(blocks):
                self.chain.mine_block()
            return int(self.head.block_number)

    def _deploy(self) -> bytes:
        artifact = load_artifact()
        code = ContractAbi(artifact.abi).deployment(artifact.bytecode, self.config.params)
        deployer = self.keys[0]
        vm = self.chain.get_vm()
        price = self.chain.header.base_fee_per_gas
        tx = vm.create_unsigned_transaction(
            nonce=vm.state.get_nonce(deployer.address), gas_price=price, gas=DEPLOY_GAS, to=b"",
            value=0, data=code,
        ).as_signed_transaction(PrivateKey(deployer.secret))  # fmt: skip
        mined = self._mine_transaction(tx)
        address = mined.receipt["contractAddress"]
        # The deployment succeeded (a failed one would leave no contract).
        if mined.receipt["status"] != "0x1" or address is None:
            raise ChainError("the settlement contract did not deploy")
        return bytes.fromhex(address[2:])

    def _mine_transaction(self, tx: Any) -> _MinedTx:
        with self._lock:
            price = self.chain.header.base_fee_per_gas
            try:
                result, receipts, computations = self.chain.mine_all([tx])
            except Exception as exc:  # py-evm refuses what it cannot include: say why
                raise RpcFailure(TX_REJECTED, f"transaction rejected: {exc}") from None
        computation, receipt = computations[0], receipts[0]
        header = result.imported_block.header
        tip = min(getattr(tx, "max_priority_fee_per_gas", 0), tx.max_fee_per_gas - price)
        created = (
            computation.msg.storage_address if not tx.to and not computation.is_error else None
        )
        logs = [
            {"address": _hex(bytes(address)),
             "topics": [_hex(t.to_bytes(32, "big")) for t in topics],
             "data": _hex(bytes(data)), "blockNumber": _q(header.block_number),
             "transactionHash": _hex(tx.hash), "logIndex": _q(i)}
            for i, (address, topics, data) in enumerate(computation.get_log_entries())
        ]  # fmt: skip
        mined = _MinedTx(
            {
                "transactionHash": _hex(tx.hash),
                "transactionIndex": "0x0",
                "blockNumber": _q(header.block_number),
                "blockHash": _hex(header.hash),
                "from": _hex(tx.sender),
                "to": _hex(tx.to) if tx.to else None,
                "gasUsed": _q(receipt.gas_used),
                "cumulativeGasUsed": _q(receipt.gas_used),
                "effectiveGasPrice": _q(price + max(tip, 0)),
                "status": "0x0" if computation.is_error else "0x1",
                "contractAddress": _hex(created) if created else None,
                "logs": logs,
                "type": _q(getattr(tx, "type_id", None) or 0),
            }
        )
        self._receipts[tx.hash] = mined
        log.info(
            "transaction mined",
            extra={"block": header.block_number, "gas_used": receipt.gas_used,
                   "status": mined.receipt["status"]},
        )  # fmt: skip
        return mined

    def _header(self, tag: Any) -> Any:
        """The header a block tag names: latest/safe/finalized (the head), pending, earliest,
        or a number."""
        if tag in (None, "latest", "safe", "finalized"):
            return self.head
        if tag == "pending":
            return self.chain.header
        if tag == "earliest":
            tag = "0x0"
        number = _quantity_param(tag, "block")
        try:
            return self.chain.get_canonical_block_header_by_number(number)
        except Exception:
            raise RpcFailure(INVALID_PARAMS, f"no block {number}") from None

    # --- methods -------------------------------------------------------------------
    def _get_block(self, params: list[Any]) -> Any:
        tag = params[0] if params else "latest"
        if tag not in ("latest", "pending", "earliest", "safe", "finalized"):
            number = _quantity_param(tag, "block")
            if number > self.head.block_number:
                return None  # not mined yet
        h = self._header(tag)
        return {
            "number": _q(h.block_number),
            "hash": _hex(h.hash) if tag != "pending" else None,
            "parentHash": _hex(h.parent_hash),
            "timestamp": _q(h.timestamp),
            "gasLimit": _q(h.gas_limit),
            "gasUsed": _q(h.gas_used),
            "baseFeePerGas": _q(h.base_fee_per_gas),
            "miner": _hex(h.coinbase),
            "stateRoot": _hex(h.state_root),
            "transactions": [],
        }

    def _state(self, tag: Any) -> Any:
        return self.chain.get_vm(self._header(tag)).state

    def _get_balance(self, params: list[Any]) -> str:
        address = _bytes_param(params[0] if params else None, "address", 20)
        return _q(self._state(params[1] if len(params) > 1 else "latest").get_balance(address))

    def _get_nonce(self, params: list[Any]) -> str:
        address = _bytes_param(params[0] if params else None, "address", 20)
        return _q(self._state(params[1] if len(params) > 1 else "latest").get_nonce(address))

    def _spoof(self, call: Any, header: Any, gas: int) -> Any:
        # A call is an object with at least data or to.
        if not isinstance(call, dict):
            raise RpcFailure(INVALID_PARAMS, "the call must be an object")
        sender = _bytes_param(call["from"], "from", 20) if call.get("from") else _ZERO
        to = _bytes_param(call["to"], "to", 20) if call.get("to") else b""
        data = _bytes_param(call.get("data") or call.get("input") or "0x", "data")
        value = _quantity_param(call.get("value") or "0x0", "value")
        vm = self.chain.get_vm(header)
        unsigned = vm.create_unsigned_transaction(
            nonce=vm.state.get_nonce(sender), gas_price=0, gas=gas, to=to, value=value, data=data
        )
        return SpoofTransaction(unsigned, from_=sender)

    def _execute(self, call: Any, tag: Any) -> bytes:
        """Run a call without cost. At a mined block *N* it meets the state after *N* with
        ``block.number == N`` (as anvil and geth do, and as ``JsonRpcChain``'s replay of a
        reverted transaction needs); ``pending`` runs in the next block."""
        if tag == "pending":
            header = self.head
            with self.chain.get_vm(header).in_costless_state() as state:
                computation = state.costless_execute_transaction(
                    self._spoof(call, header, BLOCK_GAS_LIMIT)
                )
        else:
            header = self._header(tag)
            vm = self.chain.get_vm(header)
            free = header.copy(base_fee_per_gas=0, gas_used=0)
            state = vm.build_state(vm.chaindb.db, free, vm.chain_context, vm.previous_hashes)
            snapshot = state.snapshot()
            try:
                computation = state.costless_execute_transaction(
                    self._spoof(call, header, BLOCK_GAS_LIMIT)
                )
            finally:
                state.revert(snapshot)
        if computation.is_error:
            if isinstance(computation.error, Revert):
                raise RpcFailure(
                    EXECUTION_REVERTED, "execution reverted", _hex(bytes(computation.output))
                )
            raise RpcFailure(EXECUTION_REVERTED, f"execution failed: {computation.error}")
        return bytes(computation.output)

    def _call(self, params: list[Any]) -> str:
        call = params[0] if params else None
        return _hex(self._execute(call, params[1] if len(params) > 1 else "latest"))

    def _estimate_gas(self, params: list[Any]) -> str:
        call = params[0] if params else None
        self._execute(call, "pending")  # a revert answers with the contract's reason
        header = self.head
        try:
            return _q(self.chain.estimate_gas(self._spoof(call, header, BLOCK_GAS_LIMIT), header))
        except Exception as exc:
            raise RpcFailure(EXECUTION_REVERTED, f"execution failed: {exc}") from None

    def _send_raw(self, params: list[Any]) -> str:
        raw = _bytes_param(params[0] if params else None, "transaction")
        try:
            tx = self.chain.get_vm().get_transaction_builder().decode(raw)
            tx.validate()
        except Exception as exc:
            raise RpcFailure(TX_REJECTED, f"not a valid signed transaction: {exc}") from None
        # One transaction once (a resend answers as nodes do).
        if tx.hash in self._receipts:
            raise RpcFailure(TX_REJECTED, "already known")
        # It is for this chain (EIP-155 / typed transactions carry the id).
        chain_id = getattr(tx, "chain_id", None)
        if chain_id is not None and chain_id != self.config.chain_id:
            raise RpcFailure(TX_REJECTED, f"wrong chain id {chain_id}")
        self._mine_transaction(tx)
        return _hex(tx.hash)

    def _get_receipt(self, params: list[Any]) -> Any:
        tx_hash = _bytes_param(params[0] if params else None, "transaction hash", 32)
        mined = self._receipts.get(tx_hash)
        return None if mined is None else mined.receipt

    def _mine(self, params: list[Any]) -> None:
        count = _quantity_param(params[0], "blocks") if params else 1
        # Bound one request's work (a typo of 10**9 would hang the node).
        if not 0 <= count <= 100_000:
            raise RpcFailure(INVALID_PARAMS, "mine 0 to 100000 blocks at a time")
        self.mine(count)
        return None

    # --- JSON-RPC ------------------------------------------------------------------
    def answer(self, body: bytes) -> dict[str, Any]:
        """One JSON-RPC request body -> its response object (never raises)."""
        request_id: Any = None
        try:
            try:
                request = json.loads(body)
            except ValueError:
                raise RpcFailure(PARSE_ERROR, "parse error: the body is not JSON") from None
            # One request object (batches are not used by JsonRpcChain).
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                raise RpcFailure(INVALID_REQUEST, "expected one request object with a method")
            request_id = request.get("id")
            params = request.get("params", [])
            if not isinstance(params, list):
                raise RpcFailure(INVALID_PARAMS, "params must be an array")
            method = self.methods.get(request["method"])
            if method is None:
                raise RpcFailure(
                    METHOD_NOT_FOUND,
                    f"method {request['method'][:64]} is not served by rpcpay chain (it serves "
                    f"{', '.join(sorted(self.methods))})",
                )
            result = method(params)
            return {"jsonrpc": "2.0", "id": request_id, "result": result}
        except RpcFailure as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        except (KeyError, IndexError, TypeError) as exc:
            error = {"code": INVALID_PARAMS, "message": f"invalid params: {exc}"}
            return {"jsonrpc": "2.0", "id": request_id, "error": error}

    async def handle(self, request: web.BaseRequest) -> web.Response:
        if request.method != "POST":
            return web.json_response(
                {"jsonrpc": "2.0", "id": None,
                 "error": {"code": INVALID_REQUEST, "message": "POST JSON-RPC requests"}},
                status=405,
            )  # fmt: skip
        body = await request.read()
        return web.json_response(self.answer(body))

    async def _block_clock(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.block_time)
            if not stop.is_set():
                self.mine(1)

    @contextlib.asynccontextmanager
    async def serving(self) -> Any:
        """Listen until the context exits; yields the port (0 in the config picks one)."""
        server = web.Server(self.handle, access_log=None)
        runner = web.ServerRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        stop = asyncio.Event()
        clock: asyncio.Task[None] | None = None
        try:
            await site.start()
            port = int(runner.addresses[0][1])
            if self.config.block_time > 0:
                clock = asyncio.create_task(self._block_clock(stop))
            yield port
        finally:
            stop.set()
            if clock is not None:
                await clock
            await runner.cleanup()


@contextlib.contextmanager
def serve_in_thread(config: DevNodeConfig) -> Iterator[tuple[DevNode, str]]:
    """A devnode on its own thread and event loop (for tests and benches that call it
    synchronously); yields the node and its URL, stops on exit."""
    node = DevNode(config)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    holder: dict[str, Any] = {}

    async def main() -> None:
        holder["stop"] = asyncio.Event()
        try:
            async with node.serving() as port:
                holder["port"] = port
                ready.set()
                await holder["stop"].wait()
        except BaseException as exc:
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in holder:
        raise ChainError(f"devnode did not start: {holder['error']}")
    try:
        yield node, f"http://{config.host}:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(30)
        loop.close()
