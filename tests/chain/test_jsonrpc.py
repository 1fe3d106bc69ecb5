"""``JsonRpcChain`` on its own: transaction signing, simulation, and nodes that misbehave.

The protocol itself is tested on anvil by the whole conformance suite (conftest.py);
here are the parts only a JSON-RPC chain has.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import rlp
from eth.vm.forks.cancun.transactions import CancunTransactionBuilder

from rpcpay.chain import dev_keys
from rpcpay.chain.jsonrpc import HttpTransport, JsonRpcChain, redact_url
from rpcpay.chain.transaction import Eip1559Transaction, rlp_encode, sign_transaction
from rpcpay.errors import ChainError, ChainRpcError, TransactionReverted
from tests.chain.conftest import DEPOSIT, PARAMS
from tests.support.anvil import AnvilPool, AnvilProcess

Handler = Callable[[str, list[Any]], Any]


class Tap:
    """A transport to a real node that lets a test answer chosen methods itself."""

    def __init__(self, url: str, overrides: dict[str, Handler] | None = None) -> None:
        self.inner = HttpTransport(url)
        self.name = self.inner.name
        self.overrides = overrides or {}
        self.seen: list[str] = []

    def post(self, body: bytes) -> bytes:
        request = json.loads(body)
        method = request["method"]
        self.seen.append(method)
        if method in self.overrides:
            result = self.overrides[method](method, request["params"])
            return json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        return self.inner.post(body)

    def close(self) -> None:
        self.inner.close()


class Canned:
    """A transport that answers every request with one fixed body (a broken node)."""

    name = "http://broken:1"

    def __init__(self, answer: Callable[[dict[str, Any]], bytes]) -> None:
        self.answer = answer

    def post(self, body: bytes) -> bytes:
        return self.answer(json.loads(body))

    def close(self) -> None:
        pass


def _reply(request: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request["id"], **fields}).encode()


def _chain_id_then(rest: Callable[[dict[str, Any]], bytes]) -> Canned:
    def answer(request: dict[str, Any]) -> bytes:
        if request["method"] == "eth_chainId":
            return _reply(request, result="0x539")
        return rest(request)

    return Canned(answer)


# --- signing (no node) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [b"", b"\x00", b"\x7f", b"\x80", b"x" * 55, b"y" * 56, b"z" * 1024, 0, 1, 127, 128, 2**256 - 1,
     [], [b"", [1, [2]], b"abc" * 30]],
)  # fmt: skip
def test_rlp_agrees_with_the_reference_package(item: Any) -> None:
    assert rlp_encode(item) == rlp.encode(item)


def test_signed_transaction_decodes_in_py_evm_with_our_sender() -> None:
    key = dev_keys(1)[0]
    for to in (b"\x11" * 20, b""):
        tx = Eip1559Transaction(1337, 7, 10**9, 3 * 10**9, 90_000, to, 12345, b"\x01\x02")
        raw, tx_hash = sign_transaction(key, tx)
        decoded = CancunTransactionBuilder.decode(raw)
        assert decoded.sender == key.address
        assert decoded.hash == tx_hash
        assert (decoded.chain_id, decoded.nonce, decoded.gas, decoded.value) == (
            1337,
            7,
            90_000,
            12345,
        )
        assert (decoded.max_priority_fee_per_gas, decoded.max_fee_per_gas) == (10**9, 3 * 10**9)
        assert decoded.to == to and decoded.data == b"\x01\x02"
    with pytest.raises(ValueError):
        Eip1559Transaction(1, 0, 5, 4, 21_000, b"", 0, b"")
    with pytest.raises(ValueError):
        rlp_encode(-1)


def test_urls_are_redacted() -> None:
    assert redact_url("https://user:pw@node.example:8545/v3/SECRETKEY?k=1") == (
        "https://node.example:8545"
    )
    with pytest.raises(ChainError, match="http:// or https://"):
        HttpTransport("ws://127.0.0.1:8545")


# --- broken nodes (no node) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda r: b"<html>", "non-JSON"),
        (lambda r: json.dumps({"jsonrpc": "2.0", "id": 999, "result": "0x1"}).encode(), "answered"),
        (lambda r: _reply(r), "no result"),
        (lambda r: _reply(r, error="boom"), "error 'boom'"),
        (lambda r: _reply(r, result="12"), "not a hex quantity"),
    ],
)
def test_garbage_from_a_node_is_a_clear_chain_error(
    answer: Callable[[dict[str, Any]], bytes], message: str
) -> None:
    with pytest.raises(ChainError, match=message):
        JsonRpcChain(Canned(answer))


def test_node_errors_and_a_wrong_chain_id() -> None:
    def refuse(request: dict[str, Any]) -> bytes:
        return _reply(request, error={"code": -32000, "message": "header not found"})

    chain = JsonRpcChain(_chain_id_then(refuse))
    with pytest.raises(ChainRpcError, match="header not found") as info:
        chain.block_number()
    assert info.value.code == -32000 and info.value.method == "eth_blockNumber"
    with pytest.raises(ChainError, match="no settlement contract"):
        chain.contract  # noqa: B018
    with pytest.raises(ChainError, match="serves chain id 1337, not 1"):
        JsonRpcChain(_chain_id_then(refuse), chain_id=1)


def test_a_real_chain_cannot_mine_on_demand() -> None:
    def no_dev_methods(request: dict[str, Any]) -> bytes:
        if request["method"] in ("anvil_mine", "evm_mine"):
            return _reply(request, error={"code": -32601, "message": "the method does not exist"})
        return _reply(request, result="0x10")

    chain = JsonRpcChain(_chain_id_then(no_dev_methods))
    assert chain.mine(0) == 16
    with pytest.raises(ChainError, match="cannot mine on demand"):
        chain.mine(1)


@pytest.fixture
def http_node() -> Iterator[tuple[str, list[int]]]:
    """A local HTTP server answering 503 first, then a chain id; records its request paths."""
    statuses = [503, 200]
    paths: list[str] = []

    class Node(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            paths.append(f"{self.path} {self.headers.get('Authorization')}")
            status = statuses.pop(0) if statuses else 200
            out = _reply(body, result="0x7") if status == 200 else b"overloaded"
            self.send_response(status)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", paths  # type: ignore[misc]
    server.shutdown()
    server.server_close()


def test_http_transport_reports_status_and_keeps_secrets_out(
    http_node: tuple[str, list[str]],
) -> None:
    url, paths = http_node
    secret_url = url.replace("http://", "http://alice:pw@") + "/v3/SECRETKEY"
    with pytest.raises(ChainError, match="HTTP 503") as info:
        JsonRpcChain(secret_url)
    assert "SECRETKEY" not in str(info.value) and "pw" not in str(info.value)
    chain = JsonRpcChain(secret_url)  # the node recovered
    assert chain.chain_id == 7 and chain.node == url
    # The path (with its key) and the basic auth reached the node.
    assert paths[-1] == "/v3/SECRETKEY Basic YWxpY2U6cHc="


def test_unreachable_node_is_a_clear_error() -> None:
    from tests.support.monerod import free_port

    with pytest.raises(ChainError, match=r"cannot reach the chain at http://127\.0\.0\.1:"):
        JsonRpcChain(f"http://127.0.0.1:{free_port()}")


# --- on anvil: simulation, receipts -----------------------------------------------------------


@pytest.fixture
def node(anvil_pool: AnvilPool) -> AnvilProcess:
    node = anvil_pool.fresh(1337)
    for key in dev_keys(8):
        node.set_balance(key.address, 10**24)
    return node


@pytest.mark.anvil
def test_preflight_refuses_without_sending(node: AnvilProcess) -> None:
    keys = dev_keys(3)
    tap = Tap(node.url)
    chain = JsonRpcChain(tap)
    chain.deploy(keys[0], PARAMS)
    head = chain.block_number()
    balance = chain.balance(keys[1].address)
    with pytest.raises(TransactionReverted) as info:
        chain.deposit_stamper(keys[1], 0)
    assert info.value.reason == "no deposit"
    assert (info.value.gas_used, info.value.fee) == (0, 0)
    # Nothing was sent, mined or paid.
    assert "eth_sendRawTransaction" not in tap.seen[-3:]
    assert chain.block_number() == head and chain.balance(keys[1].address) == balance
    r = chain.deposit_stamper(keys[1], DEPOSIT)
    assert r.block_number == head + 1 and r.gas_used > 21_000
    assert chain.balance(keys[1].address) == balance - DEPOSIT - r.fee


@pytest.mark.anvil
def test_a_revert_after_a_stale_simulation_is_mined_and_explained(node: AnvilProcess) -> None:
    """The simulation passed, then the state changed: the transaction reverts on chain."""
    keys = dev_keys(3)
    tap = Tap(node.url)
    chain = JsonRpcChain(tap)
    chain.deploy(keys[0], PARAMS)
    tap.overrides["eth_estimateGas"] = lambda m, p: hex(100_000)
    with pytest.raises(TransactionReverted) as info:
        chain.request_exit(keys[1])  # not a stamper: the contract refuses it
    assert info.value.reason == "not active"
    assert info.value.gas_used > 21_000 and info.value.fee > 0


@pytest.mark.anvil
def test_receipt_wait_gives_up_with_the_hash(node: AnvilProcess) -> None:
    keys = dev_keys(2)
    tap = Tap(node.url, {"eth_getTransactionReceipt": lambda m, p: None})
    naps: list[float] = []
    chain = JsonRpcChain(tap, receipt_timeout=0.0, sleep=naps.append)
    with pytest.raises(ChainError, match=r"transaction 0x[0-9a-f]{64} not mined within 0 s"):
        chain.send_transaction(keys[0], keys[1].address, b"", value=1, gas=21_000)
    slow = JsonRpcChain(Tap(node.url, {"eth_getTransactionReceipt": lambda m, p: None}),
                        receipt_timeout=0.05, poll_interval=0.001)  # fmt: skip
    with pytest.raises(ChainError, match="not mined"):
        slow.send_transaction(keys[0], keys[1].address, b"", value=1, gas=21_000)


@pytest.mark.anvil
def test_resending_a_known_transaction_waits_for_it(node: AnvilProcess) -> None:
    keys = dev_keys(2)

    class KnownTap(Tap):
        def post(self, body: bytes) -> bytes:
            request = json.loads(body)
            if request["method"] == "eth_sendRawTransaction":
                node.rpc("eth_sendRawTransaction", request["params"])  # it got there before
                return _reply(request, error={"code": -32000, "message": "already known"})
            return super().post(body)

    chain = JsonRpcChain(KnownTap(node.url))
    before = chain.balance(keys[1].address)
    r = chain.send_transaction(keys[0], keys[1].address, b"", value=5, gas=21_000)
    assert chain.balance(keys[1].address) == before + 5 and r.gas_used == 21_000


@pytest.mark.anvil
def test_attach_checks_the_contract_and_the_chain(
    node: AnvilProcess, anvil_pool: AnvilPool
) -> None:
    keys = dev_keys(2)
    chain = JsonRpcChain(node.url)
    address = chain.deploy(keys[0], PARAMS)
    fresh = JsonRpcChain(node.url, chain_id=1337)
    fresh.attach(address)
    assert fresh.params() == PARAMS
    with pytest.raises(ChainError, match="no settlement contract"):
        fresh.attach(keys[1].address)  # an account, not a contract
    assert fresh.contract == address  # a refused attach changes nothing
