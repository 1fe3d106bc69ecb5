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
import re
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


MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted. monerod's requests nest 3 deep at most;
Python's parser recurses once per level and a 100,000-deep document would exhaust the stack
(``RecursionError``), so depth is measured before parsing."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body`` (brackets inside strings not counted):
    ``MAX_DEPTH`` when there are too few brackets to nest deeper, ``MAX_DEPTH + 1`` for
    anything deeper or for brackets that do not pair up (not JSON either way).

    Cheap and linear in C: two ``bytes.count`` calls for most bodies; otherwise strings are
    cut out, and innermost ``[]``/``{}`` pairs are deleted by one regex pass per level, so a
    100,000-deep document is refused after one pass that deletes nothing.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return MAX_DEPTH
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for depth in range(MAX_DEPTH + 1):
        if not brackets:
            return depth
        inner = _PAIR.sub(b"", brackets)
        # Nothing paired up: unbalanced, or the innermost level is out of reach.
        if len(inner) == len(brackets):
            break
        brackets = inner
    return MAX_DEPTH + 1


DECODER = json.JSONDecoder(strict=False)
"""``json.loads(..., strict=False)``'s decoder, made once (json.loads makes one per call; its
BOM check cannot fire on Latin-1 text, whose code points stop at U+00FF)."""


def decode_json(body: bytes) -> JSON:
    """Parse epee-style JSON; ``ValueError`` if it is not JSON at all or nests deeper than
    ``MAX_DEPTH``."""
    # Depth is bounded before the recursive parser sees the document.
    if nesting_depth(body) > MAX_DEPTH:
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        return DECODER.decode(body.decode("latin-1"))
    except RecursionError as exc:  # a depth the scan missed cannot take the stack down
        raise ValueError("JSON nests too deep") from exc


ENCODER = json.JSONEncoder(ensure_ascii=False)
"""``json.dumps(..., ensure_ascii=False)``'s encoder, made once (json.dumps makes one per call)."""


def encode_json(document: JSON) -> bytes:
    """Serialise so that every string decoded by ``decode_json`` keeps its original bytes."""
    return ENCODER.encode(document).encode("latin-1", "rpcpay-json-escape")
