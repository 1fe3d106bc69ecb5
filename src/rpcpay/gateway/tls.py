"""TLS on the public listener without a proxy, as monerod's ``--rpc-ssl-certificate`` and
``--rpc-ssl-private-key``.

Contract: ``server_tls_context(cert, key)`` is a server context (TLS 1.2 or newer, Python's
default ciphers) holding the PEM certificate chain and its private key; any problem (missing
file, not PEM, key not matching the certificate, encrypted key) is a ``ConfigError`` naming the
flag and the fix, raised before anything listens. Both flags or neither: one alone is refused.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from rpcpay.errors import ConfigError
from rpcpay.gateway.preflight import check_readable_file

CERT_FLAG = "--rpc-ssl-certificate"
KEY_FLAG = "--rpc-ssl-private-key"


def server_tls_context(certificate: Path | None, private_key: Path | None) -> ssl.SSLContext | None:
    """The public listener's TLS context, or None for plain HTTP."""
    if certificate is None and private_key is None:
        return None
    # A certificate is useless without its key, and the other way round.
    if certificate is None or private_key is None:
        raise ConfigError(f"{CERT_FLAG} and {KEY_FLAG} go together; give both or neither")
    check_readable_file(CERT_FLAG, certificate)
    check_readable_file(KEY_FLAG, private_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_password() -> str:
        raise ConfigError(f"{KEY_FLAG} {private_key} is encrypted; give an unencrypted PEM key")

    try:
        context.load_cert_chain(certificate, private_key, password=no_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{CERT_FLAG} {certificate} / {KEY_FLAG} {private_key}: {exc.reason or exc}; give "
            "a PEM certificate and the PEM private key that belongs to it"
        ) from None
    return context


__all__ = ["server_tls_context"]
