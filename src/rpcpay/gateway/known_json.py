"""JSON objects whose encoding is partly known in advance, so a cached answer is encoded once.

A cached ``get_info`` answer is served on most paid calls, each time with only the client's
``credits`` and ``top_hash`` added: encoding its ~40 fields again per call was about 8 µs.
``KnownObject`` is that answer (a ``dict``, so nothing else changes) carrying the bytes of
its cached fields, made once with ``encode_json``; ``encode_known`` then encodes only the keys
added after them and splices them in. Contract: ``encode_known(doc) == encode_json(doc)``,
byte for byte, for every document (``json.dumps`` encodes each value on its own, so pieces
encoded apart join into the same text). A ``KnownObject`` whose known keys are assigned or
deleted forgets its bytes and is encoded whole; mutators that could change them in bulk
(``update``, ``pop``, ...) are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from json.encoder import encode_basestring
from typing import Any, NoReturn

from rpcpay.gateway.jsoncodec import ENCODER, encode_json

JSON = Any


class KnownObject(dict[str, JSON]):
    """A JSON object whose first ``known`` keys (those it was made with) encode to ``head``."""

    __slots__ = ("_head", "_known")

    def __init__(self, fields: dict[str, JSON], head: bytes) -> None:
        super().__init__(fields)
        self._head: bytes | None = head
        self._known = len(fields)

    def __setitem__(self, key: str, value: JSON) -> None:
        # Replacing a value may change a known one: the bytes no longer match.
        if key in self:
            self._head = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._head = None
        super().__delitem__(key)

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a KnownObject changes only by item assignment or deletion")

    update = setdefault = pop = popitem = clear = __ior__ = _refuse

    def encoded(self) -> bytes:
        """``encode_json(self)``, encoding only the keys added after the known ones."""
        head = self._head
        if head is None:
            return encode_json(dict(self))
        if len(self) == self._known:
            return head
        added = _members(islice(self.items(), self._known, None))
        # A key json.dumps would turn into text, or no known keys: encode the whole.
        if added is None or self._known == 0:
            return encode_json(dict(self))
        return head[:-1] + b", " + _latin1(added) + b"}"


def known_object(fields: dict[str, JSON]) -> KnownObject:
    """``fields`` as a ``KnownObject``, encoded once now."""
    return KnownObject(fields, encode_json(fields))


def encode_known(document: JSON) -> bytes:
    """``encode_json(document)``, reusing the known bytes of a ``KnownObject`` that is the
    document or one of its values (a JSON-RPC answer's ``result``)."""
    if isinstance(document, KnownObject):
        return document.encoded()
    if type(document) is dict and any(isinstance(v, KnownObject) for v in document.values()):
        parts = []
        for key, value in document.items():
            # json.dumps turns other keys into text its own way: leave those to it.
            if type(key) is not str:
                return encode_json(document)
            if isinstance(value, KnownObject):
                parts.append(_latin1(encode_basestring(key) + ": ") + value.encoded())
            else:
                parts.append(_latin1(f"{encode_basestring(key)}: {_text(value)}"))
        return b"{" + b", ".join(parts) + b"}"
    return encode_json(document)


def _text(value: JSON) -> str:
    """``json.dumps(value, ensure_ascii=False)``, with strings and ints (most values) written
    as the encoder writes them, without its per-call setup."""
    if type(value) is str:
        return encode_basestring(value)
    if type(value) is int:
        return int.__repr__(value)
    return ENCODER.encode(value)


def _members(items: Iterable[tuple[str, JSON]]) -> str | None:
    """The ``"key": value`` members of an object, as json.dumps separates them; None if a
    key is not a string."""
    members = []
    for key, value in items:
        if type(key) is not str:
            return None
        members.append(f"{encode_basestring(key)}: {_text(value)}")
    return ", ".join(members)


def _latin1(text: str) -> bytes:
    """``text`` as ``encode_json`` turns its JSON text into bytes."""
    return text.encode("latin-1", "rpcpay-json-escape")
