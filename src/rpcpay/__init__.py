"""rpcpay: pay-as-you-go RPC with no accounts and no middleman.

Subpackages, one per layer:

- ``rpcpay.wire``    monerod's pay-for-RPC wire protocol and its crypto (client ids, block blobs)
- ``rpcpay.pow``     proof of work: RandomX binding, share checks, verifier pool
- ``rpcpay.ledger``  the credit ledger every payment rail feeds
- ``rpcpay.gateway`` the HTTP gateway in front of any backend (``rpcpay serve``)
- ``rpcpay.wallet``  the paying client: signs calls, mines credits
"""

__version__ = "0.1.0"
