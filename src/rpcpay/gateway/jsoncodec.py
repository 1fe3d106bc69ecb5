"""Byte-transparent JSON, as epee writes it.

monerod's JSON is not always UTF-8: epee writes binary blobs (``get_output_distribution`` with
``binary: true``, for one) as raw bytes inside strings, control characters included. Decoding
as Latin-1 maps every byte to one code point, so any such answer parses; encoding back with
Latin-1 restores every byte 0x80-0xFF exactly, and bytes below 0x20 come out as ``\\u00XX``
escapes, which epee's parser turns back into the same single byte. Valid UTF-8 text
round-trips byte for byte too.

Characters above U+00FF can only have come from ``\\uXXXX`` escapes in the input; they go
out as JSON escapes again (surrogate pairs above U+FFFF), never as an encoding error.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

JSON = Any


def _json_escape(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: write unencodable characters as JSON ``\\uXXXX`` escapes."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    parts = []
    for char in error.object[error.start : error.end]:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            parts.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            parts.append(f"\\u{code:04x}")
    return "".join(parts), error.end


codecs.register_error("rpcpay-json-escape", _json_escape)


def decode_json(body: bytes) -> JSON:
    """Parse epee-style JSON; ``ValueError`` if it is not JSON at all."""
    return json.loads(body.decode("latin-1"), strict=False)


def encode_json(document: JSON) -> bytes:
    """Serialise so that every string decoded by ``decode_json`` keeps its original bytes."""
    return json.dumps(document, ensure_ascii=False).encode("latin-1", "rpcpay-json-escape")
