"""A generic EIP-712 encoder written from the EIP's text, to check rpcpay's specialised one.

It handles what the spec's examples and rpcpay's types use: atomic types, strings,
bytes and nested structs (no arrays).
"""

from typing import Any

from rpcpay.wire.keccak import keccak256

Types = dict[str, list[tuple[str, str]]]


def _deps(primary: str, types: Types, found: set[str]) -> set[str]:
    if primary in found or primary not in types:
        return found
    found.add(primary)
    for _, t in types[primary]:
        _deps(t, types, found)
    return found


def encode_type(primary: str, types: Types) -> str:
    deps = sorted(_deps(primary, types, set()) - {primary})
    return "".join(
        f"{name}({','.join(f'{t} {n}' for n, t in types[name])})" for name in [primary, *deps]
    )


def hash_struct(primary: str, types: Types, data: dict[str, Any]) -> bytes:
    enc = keccak256(encode_type(primary, types).encode())
    for name, t in types[primary]:
        v = data[name]
        if t in types:
            enc += hash_struct(t, types, v)
        elif t == "string":
            enc += keccak256(v.encode())
        elif t == "bytes":
            enc += keccak256(v)
        elif t == "address":
            enc += v.rjust(32, b"\0")
        elif t.startswith("uint"):
            enc += v.to_bytes(32, "big")
        elif t.startswith("bytes"):
            enc += v.ljust(32, b"\0")
        else:  # pragma: no cover
            raise ValueError(t)
    return keccak256(enc)


DOMAIN_TYPES: Types = {
    "EIP712Domain": [
        ("name", "string"),
        ("version", "string"),
        ("chainId", "uint256"),
        ("verifyingContract", "address"),
    ]
}


def digest(domain: dict[str, Any], primary: str, types: Types, message: dict[str, Any]) -> bytes:
    sep = hash_struct("EIP712Domain", DOMAIN_TYPES, domain)
    return keccak256(b"\x19\x01" + sep + hash_struct(primary, types, message))
