"""Byte-transparent JSON, as epee writes it.

monerod's JSON is not always UTF-8: epee writes binary blobs (``get_output_distribution`` with
``binary: true``, for one) as raw bytes inside strings, control characters included. Decoding
as Latin-1 maps every byte to one code point, so any such answer parses; encoding back with
Latin-1 restores every byte 0x80-0xFF exactly, and bytes below 0x20 come out as ``\\u00XX``
escapes, which epee's parser turns back into the same single byte. Valid UTF-8 text
round-trips byte for byte too.
"""

from __future__ import annotations

import json
from typing import Any

JSON = Any


def decode_json(body: bytes) -> JSON:
    """Parse epee-style JSON; ``ValueError`` if it is not JSON at all."""
    return json.loads(body.decode("latin-1"), strict=False)


def encode_json(document: JSON) -> bytes:
    """Serialise so that every string decoded by ``decode_json`` keeps its original bytes."""
    return json.dumps(document, ensure_ascii=False).encode("latin-1")
