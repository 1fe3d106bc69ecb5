"""``PayingHTTPProvider``: web3.py code pays for its calls without changing.

    from web3 import Web3
    from rpcpay import MiningFunder, PayingHTTPProvider

    w3 = Web3(PayingHTTPProvider("http://127.0.0.1:18089", funder=MiningFunder()))
    w3.eth.block_number        # signed, paid, mined for when the balance is short

Every request goes through a ``SyncPayingClient`` (one key, strictly increasing timestamps,
shared by web3's threads): a refusal for payment makes the funder earn credits (hashes, or a
lottery cheque with ``ChequeFunder``) and the call is retried. The node's own errors come back
as JSON-RPC error responses, so web3.py raises exactly what it raises for any node (a
revert is a ``ContractLogicError``); a call that cannot be paid raises ``PaymentRequired``.
Batches (``w3.batch_requests()``) are one batch, charged once.
"""

from __future__ import annotations

from typing import Any

from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from rpcpay.wallet.client import Funder, NodeError, SyncPayingClient
from rpcpay.wallet.keys import ClientKey


def _error_response(request_id: int, error: NodeError) -> RPCResponse:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}  # type: ignore[typeddict-item]


class PayingHTTPProvider(JSONBaseProvider):
    """A web3.py provider for a paying gateway (``rpcpay serve``) or the local proxy."""

    def __init__(
        self,
        endpoint_uri: str,
        key: ClientKey | None = None,
        *,
        funder: Funder | None = None,
        client: SyncPayingClient | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_uri = endpoint_uri
        self.client = client or SyncPayingClient(endpoint_uri, key, funder=funder)

    def __str__(self) -> str:
        return f"RPC paying connection {self.endpoint_uri}"

    @property
    def credits(self) -> int:
        """The balance the gateway last reported."""
        return self.client.credits

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request_id = next(self.request_counter)
        try:
            result = self.client.call(method, list(params) if params is not None else [])
        except NodeError as error:
            # Unreachable or unusable: a transport failure, not a node's answer.
            if error.code == 0:
                raise
            return _error_response(request_id, error)
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    def make_batch_request(
        self, requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        calls = [
            (method, list(params) if params is not None else []) for method, params in requests
        ]
        answers: list[RPCResponse] = []
        for n, outcome in enumerate(self.client.call_batch(calls)):
            if isinstance(outcome, NodeError):
                answers.append(_error_response(n, outcome))
            else:
                answers.append({"jsonrpc": "2.0", "id": n, "result": outcome})
        return answers

    def close(self) -> None:
        """Close the HTTP session and the client's loop thread."""
        self.client.close()
