"""rpcpay: pay-as-you-go RPC with no accounts and no middleman.

The client-facing API (``__all__``), for code that pays for calls::

    from rpcpay import PayingClient, MiningFunder
    async with PayingClient("http://127.0.0.1:18089", funder=MiningFunder()) as client:
        block = await client.call("eth_blockNumber", [])

- paying clients: ``PayingClient`` (asyncio), ``SyncPayingClient`` (threads), ``ClientKey``
- funders (what a refused call does): ``MiningFunder`` (hashes), ``ChequeFunder`` (stamped
  lottery cheques through a ``LotteryPayer``)
- errors: ``ClientError`` and its ``PaymentRequired``, ``ShareRefused``, ``UpstreamDown``,
  ``NodeError``; ``RpcPayError``, the root of every error rpcpay raises on purpose
- integrations: ``PayingHTTPProvider`` (web3.py, ``pip install rpcpay[web3]``),
  ``PayingAuth`` (httpx, ``rpcpay[httpx]``), ``PayingProxy`` (the local paying proxy)
- test helpers live in ``rpcpay.testing``; the protocol's constants in ``rpcpay.wire.rpc``.

Names load on first use, so ``import rpcpay.wire`` stays light and the web3/httpx extras are
needed only by code that uses them.

Subpackages, one per layer:

- ``rpcpay.wire``    monerod's pay-for-RPC wire protocol and its crypto (client ids, block blobs)
- ``rpcpay.pow``     proof of work: RandomX binding, share checks, verifier pool
- ``rpcpay.ledger``  the credit ledger every payment rail feeds
- ``rpcpay.gateway`` the HTTP gateway in front of any backend (``rpcpay serve``)
- ``rpcpay.wallet``  the paying client: signs calls, mines credits, pays cheques, the proxy
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AccessInfo": "rpcpay.wallet.client",
    "ClientError": "rpcpay.wallet.client",
    "NodeError": "rpcpay.wallet.client",
    "PayingClient": "rpcpay.wallet.client",
    "PaymentRequired": "rpcpay.wallet.client",
    "ShareRefused": "rpcpay.wallet.client",
    "SyncPayingClient": "rpcpay.wallet.client",
    "UpstreamDown": "rpcpay.wallet.client",
    "ClientKey": "rpcpay.wallet.keys",
    "MiningFunder": "rpcpay.wallet.funding",
    "ChequeFunder": "rpcpay.wallet.cheque_funding",
    "PayingHTTPProvider": "rpcpay.wallet.web3_provider",
    "PayingAuth": "rpcpay.wallet.httpx_auth",
    "PayingProxy": "rpcpay.wallet.proxy",
    "RpcPayError": "rpcpay.errors",
}

__all__ = [
    "AccessInfo",
    "ChequeFunder",
    "ClientError",
    "ClientKey",
    "MiningFunder",
    "NodeError",
    "PayingAuth",
    "PayingClient",
    "PayingHTTPProvider",
    "PayingProxy",
    "PaymentRequired",
    "RpcPayError",
    "ShareRefused",
    "SyncPayingClient",
    "UpstreamDown",
]

if TYPE_CHECKING:
    from rpcpay.errors import RpcPayError
    from rpcpay.wallet.cheque_funding import ChequeFunder
    from rpcpay.wallet.client import (
        AccessInfo,
        ClientError,
        NodeError,
        PayingClient,
        PaymentRequired,
        ShareRefused,
        SyncPayingClient,
        UpstreamDown,
    )
    from rpcpay.wallet.funding import MiningFunder
    from rpcpay.wallet.httpx_auth import PayingAuth
    from rpcpay.wallet.keys import ClientKey
    from rpcpay.wallet.proxy import PayingProxy
    from rpcpay.wallet.web3_provider import PayingHTTPProvider


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rpcpay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
