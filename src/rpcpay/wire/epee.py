"""epee "portable storage": the binary format of monerod's ``*.bin`` RPC endpoints.

/get_blocks.bin, /get_hashes.bin, /get_o_indexes.bin, /get_outs.bin,
/get_blocks_by_height.bin and /get_output_distribution.bin take and return this format, so
a gateway that charges for them must read a request's ``client`` field, strip it, and add
``credits`` and ``top_hash`` to the response without disturbing anything else.  Facts below
come from Monero v0.18.0.0 ``contrib/epee/include/storages/portable_storage_*.h``:

* A message is the 8 signature bytes ``01 11 01 01 01 01 02 01`` and the format version
  byte ``01``, then the root section.
* A *size* (counts and string lengths) is little-endian in 1, 2, 4 or 8 bytes; the low two
  bits of the first byte say which width (0..3) and the value is the whole integer shifted
  right by two.  epee's writer always picks the smallest width.
* A section is a size (number of fields), then per field: a name length byte (1..255), the
  name, a type byte and the value.  epee keeps fields in a ``std::map``, so its writer
  emits them sorted by name (byte order); its reader accepts any order but refuses a
  duplicate name.
* Type codes 1..8 are int64, int32, int16, int8, uint64, uint32, uint16, uint8 (little
  endian), 9 a double, 10 a string (size + raw bytes: every binary blob is a string), 11 a
  bool (one byte, 0 or 1), 12 an object (a nested section).  ``code | 0x80`` is an array:
  a size, then that many values of ``code`` written without their own type byte.

What this codec refuses although epee's reader would take it, because such bytes could not
be re-encoded identically and epee's writer never produces them: a size written wider than
needed, bytes after the root section, type 13 (a bare "array" entry) and arrays of arrays
(epee's reader throws on the latter when they are non-empty anyway).  Everything else epee
refuses is refused too (bad signature or version, unknown type codes, empty or duplicate
names, bools other than 0/1, strings of 2e9 bytes or more), and so are counts larger than
the bytes left could hold, before anything is allocated.  Every refusal is a ``WireError``.

Values keep their exact epee type (``Int`` carries its type code, arrays carry their element
type) and sections keep their field order, so ``encode(decode(b)) == b`` for every ``b``
that ``decode`` accepts, including all of monerod's messages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import TypeAlias, TypeVar

from rpcpay.errors import WireError

__all__ = [
    "ARRAY_FLAG",
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "SIGNATURE",
    "Array",
    "Int",
    "PackedArray",
    "Section",
    "Type",
    "Value",
    "decode",
    "encode",
    "encode_element",
    "get_int",
    "get_string",
    "remove",
    "set_string",
    "set_uint64",
]

#: The two little-endian uint32 signatures (0x01011101, 0x01020101) as they appear on the wire.
SIGNATURE = bytes([0x01, 0x11, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01])
#: The only format version epee knows.
FORMAT_VERSION = 1
_HEADER = SIGNATURE + bytes([FORMAT_VERSION])

#: Set on a type byte to mean "array of that type".
ARRAY_FLAG = 0x80
#: Deepest nesting of objects/arrays we follow; epee stops at a similar (call-count) limit
#: of 100, and a bound keeps hostile input from exhausting Python's stack.
MAX_DEPTH = 100
#: epee refuses strings of this length or more (MAX_STRING_LEN_POSSIBLE).
_MAX_STRING_LEN = 2_000_000_000
#: Field names are prefixed by one length byte.
_MAX_NAME_LEN = 255
#: The largest size epee can write: 8 bytes minus the 2 width bits.
_MAX_SIZE = 2**62 - 1
#: Smallest encoding of a field: name length, 1-byte name, type byte, 1-byte value.
_MIN_FIELD_BYTES = 4


class Type(IntEnum):
    """epee's type codes (SERIALIZE_TYPE_*)."""

    INT64 = 1
    INT32 = 2
    INT16 = 3
    INT8 = 4
    UINT64 = 5
    UINT32 = 6
    UINT16 = 7
    UINT8 = 8
    DOUBLE = 9
    STRING = 10
    BOOL = 11
    OBJECT = 12
    ARRAY = 13


_INT_STRUCTS: dict[Type, struct.Struct] = {
    Type.INT64: struct.Struct("<q"),
    Type.INT32: struct.Struct("<i"),
    Type.INT16: struct.Struct("<h"),
    Type.INT8: struct.Struct("<b"),
    Type.UINT64: struct.Struct("<Q"),
    Type.UINT32: struct.Struct("<I"),
    Type.UINT16: struct.Struct("<H"),
    Type.UINT8: struct.Struct("<B"),
}
_INT_RANGES: dict[Type, tuple[int, int]] = {
    code: (-(2 ** (8 * s.size - 1)), 2 ** (8 * s.size - 1) - 1)
    if code <= Type.INT8
    else (0, 2 ** (8 * s.size) - 1)
    for code, s in _INT_STRUCTS.items()
}
_INT_BY_CODE: dict[int, struct.Struct] = {int(c): s for c, s in _INT_STRUCTS.items()}
_DOUBLE = struct.Struct("<d")
#: Fewest bytes one array element of each type takes, to bound counts by the bytes left.
_MIN_ELEMENT_BYTES: dict[Type, int] = {
    **{code: s.size for code, s in _INT_STRUCTS.items()},
    Type.DOUBLE: 8,
    Type.BOOL: 1,
    Type.STRING: 1,
    Type.OBJECT: 1,
}


@dataclass(frozen=True, slots=True)
class Int:
    """An integer with its epee type, so that a uint32 is not re-encoded as a uint64."""

    code: Type
    value: int

    def __post_init__(self) -> None:
        # only the eight integer codes have a fixed-size integer encoding
        if self.code not in _INT_STRUCTS:
            raise WireError(f"not an integer type code: {self.code!r}")
        object.__setattr__(self, "code", Type(self.code))
        lo, hi = _INT_RANGES[self.code]
        # the value must fit the type, or the encoder could not write it
        if not lo <= self.value <= hi:
            raise WireError(f"{self.value} does not fit in {self.code.name.lower()}")


@dataclass(frozen=True, slots=True)
class Array:
    """A homogeneous epee array: ``code`` is the element type, kept even when empty."""

    code: Type
    items: tuple[Value, ...]

    def __post_init__(self) -> None:
        # epee's writer never emits arrays of arrays and its reader refuses them
        if self.code not in _MIN_ELEMENT_BYTES:
            raise WireError(f"not an array element type code: {self.code!r}")
        object.__setattr__(self, "code", Type(self.code))
        for item in self.items:
            # epee arrays are homogeneous: one type byte covers every element
            if _type_of(item) != self.code:
                raise WireError(f"{self.code.name.lower()} array holds {item!r}")

    @classmethod
    def of_ints(cls, code: Type, values: list[int] | tuple[int, ...]) -> Array:
        """An array of ``code`` integers, e.g. ``Array.of_ints(Type.UINT64, [1, 2])``."""
        return cls(code, tuple(Int(code, v) for v in values))


@dataclass(frozen=True, slots=True)
class PackedArray:
    """An array whose ``count`` elements of type ``code`` are already encoded, one after
    another, in ``body`` (each as ``encode_element`` writes it).

    Why: a cache that keeps settled blocks as bytes can send a thousand of them again by
    joining bytes instead of rebuilding and re-encoding a thousand sections.  Only the
    encoder takes it; ``decode`` always returns ``Array``.
    """

    code: Type
    count: int
    body: bytes


#: One epee value: ``Int``, ``float`` (double), ``bool``, ``bytes`` (string), a nested
#: ``Section`` (object), an ``Array`` (or, for the encoder, a ``PackedArray``).  A bare ``int``
#: is refused: its width is ambiguous.
Value: TypeAlias = "Int | float | bool | bytes | Section | Array | PackedArray"
#: Field name (bytes decoded as latin-1, so every byte string maps to one ``str`` and ``str``
#: order is epee's byte order) to value, in wire order.
Section: TypeAlias = "dict[str, Value]"


def _type_of(value: object) -> Type:
    """The epee type a Python value is written as (bool before anything numeric)."""
    if isinstance(value, bool):
        return Type.BOOL
    if isinstance(value, Int):
        return value.code
    if isinstance(value, float):
        return Type.DOUBLE
    if isinstance(value, bytes):
        return Type.STRING
    if isinstance(value, dict):
        return Type.OBJECT
    if isinstance(value, Array | PackedArray):
        return Type.ARRAY
    raise WireError(f"not an epee value (wrap integers in Int): {value!r}")


# -- decoding ---------------------------------------------------------------------------

_TYPES: dict[int, Type] = {int(t): t for t in Type}
_T = TypeVar("_T", Int, Array)


def _trusted(cls: type[_T], **fields: object) -> _T:
    """Build an ``Int`` or ``Array`` the decoder has already checked, without checking again
    (decoding a thousand-block answer makes tens of thousands of them)."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


class _Reader:
    """A cursor over one message; every read checks the bytes left first."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        # a read past the end means the message was cut short (or a length lies)
        if n > self.left():
            raise WireError(
                f"truncated at offset {self.pos}: {what} needs {n} bytes, {self.left()} left"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def size(self, what: str) -> int:
        start = self.pos
        # the width marker lives in the first byte, which must exist
        if self.left() < 1:
            raise WireError(f"truncated at offset {start}: {what} size missing")
        width = 1 << (self.data[self.pos] & 0x03)
        value = int.from_bytes(self.take(width, f"{what} size"), "little") >> 2
        # epee writes the narrowest width; a wider one would not re-encode identically
        if _size_width(value) != width:
            raise WireError(f"non-canonical {width}-byte size {value} at offset {start}")
        return value

    def section(self, depth: int) -> Section:
        # hostile nesting must end in WireError, never RecursionError
        if depth > MAX_DEPTH:
            raise WireError(f"nesting deeper than {MAX_DEPTH} at offset {self.pos}")
        count = self.size("section")
        # each field takes at least 4 bytes, so a larger count is a lie
        if count > self.left() // _MIN_FIELD_BYTES:
            raise WireError(f"section claims {count} fields, only {self.left()} bytes left")
        out: Section = {}
        for _ in range(count):
            name_len = self.take(1, "field name length")[0]
            # epee refuses empty names ("Section name is missing")
            if name_len == 0:
                raise WireError(f"empty field name at offset {self.pos - 1}")
            name = self.take(name_len, "field name").decode("latin-1")
            # epee refuses duplicate keys
            if name in out:
                raise WireError(f"duplicate field name {name!r}")
            code = self.take(1, "field type")[0]
            if code & ARRAY_FLAG:
                out[name] = self.array(code & ~ARRAY_FLAG, depth + 1)
            else:
                out[name] = self.value(code, depth)
        return out

    def array(self, code: int, depth: int) -> Array:
        # arrays count towards the nesting limit like objects do
        if depth > MAX_DEPTH:
            raise WireError(f"nesting deeper than {MAX_DEPTH} at offset {self.pos}")
        # arrays of arrays (0x8d) are never written by epee and refused by its reader
        if code == Type.ARRAY:
            raise WireError(f"array of arrays at offset {self.pos - 1}")
        # anything else outside 1..12 is not an epee type
        if code not in _MIN_ELEMENT_BYTES:
            raise WireError(f"unknown array type code {code} at offset {self.pos - 1}")
        elem = Type(code)
        count = self.size("array")
        # bound the count by the bytes left before building anything
        if count > self.left() // _MIN_ELEMENT_BYTES[elem]:
            raise WireError(
                f"{elem.name.lower()} array claims {count} items, only {self.left()} bytes left"
            )
        return _trusted(
            Array, code=elem, items=tuple(self.value(elem, depth) for _ in range(count))
        )

    def value(self, code: int, depth: int) -> Value:
        s = _INT_BY_CODE.get(code)
        if s is not None:
            # unpacked with the type's own struct, the value always fits
            return _trusted(Int, code=_TYPES[code], value=s.unpack(self.take(s.size, "integer"))[0])
        if code == Type.DOUBLE:
            result: float = _DOUBLE.unpack(self.take(8, "double"))[0]
            return result
        if code == Type.STRING:
            n = self.size("string")
            # epee's own cap on string lengths
            if n >= _MAX_STRING_LEN:
                raise WireError(f"string of {n} bytes is too long")
            return self.take(n, "string")
        if code == Type.BOOL:
            b = self.take(1, "bool")[0]
            # epee refuses bools other than 0 and 1
            if b > 1:
                raise WireError(f"invalid bool byte {b} at offset {self.pos - 1}")
            return b == 1
        if code == Type.OBJECT:
            return self.section(depth + 1)
        # a bare type-13 entry is readable by epee but never written (its writer omits it)
        if code == Type.ARRAY:
            raise WireError(f"bare array entry (type 13) at offset {self.pos - 1}")
        raise WireError(f"unknown type code {code} at offset {self.pos - 1}")


def decode(data: bytes) -> Section:
    """Parse one portable-storage message into its root section.

    Raises ``WireError`` for anything that is not exactly one well-formed message.
    """
    # the 9-byte header must be there in full
    if len(data) < len(_HEADER):
        raise WireError(f"message of {len(data)} bytes is shorter than the 9-byte header")
    # both signatures identify the format
    if data[: len(SIGNATURE)] != SIGNATURE:
        raise WireError(f"bad portable-storage signature {data[:8].hex()}")
    # only version 1 exists
    if data[len(SIGNATURE)] != FORMAT_VERSION:
        raise WireError(f"unknown portable-storage version {data[len(SIGNATURE)]}")
    reader = _Reader(data, len(_HEADER))
    root = reader.section(0)
    # epee ignores trailing bytes; we refuse them since they would not survive re-encoding
    if reader.left():
        raise WireError(f"{reader.left()} trailing bytes after the root section")
    return root


# -- encoding ---------------------------------------------------------------------------


def _size_width(n: int) -> int:
    """Bytes epee's pack_varint uses for ``n``."""
    if n <= 63:
        return 1
    if n <= 16383:
        return 2
    if n <= 1073741823:
        return 4
    return 8


def _put_size(out: bytearray, n: int) -> None:
    # epee cannot write sizes of 2**62 or more
    if not 0 <= n <= _MAX_SIZE:
        raise WireError(f"size {n} cannot be encoded")
    width = _size_width(n)
    out += ((n << 2) | (width.bit_length() - 1)).to_bytes(width, "little")


def _put_section(out: bytearray, section: Section, depth: int) -> None:
    # also stops a section that contains itself
    if depth > MAX_DEPTH:
        raise WireError(f"nesting deeper than {MAX_DEPTH}")
    _put_size(out, len(section))
    for name, value in section.items():
        out += _name_bytes(name)
        if isinstance(value, Array):
            out.append(value.code | ARRAY_FLAG)
            _put_array(out, value, depth + 1)
        elif isinstance(value, PackedArray):
            out.append(value.code | ARRAY_FLAG)
            _put_size(out, value.count)
            out += value.body
        else:
            out.append(_type_of(value))
            _put_value(out, value, depth)


def _put_array(out: bytearray, array: Array, depth: int) -> None:
    # arrays nest like objects
    if depth > MAX_DEPTH:
        raise WireError(f"nesting deeper than {MAX_DEPTH}")
    _put_size(out, len(array.items))
    for item in array.items:
        _put_value(out, item, depth)


def _put_value(out: bytearray, value: Value, depth: int) -> None:
    """Write ``value`` without its type byte (arrays share one type byte)."""
    if isinstance(value, bool):
        out.append(1 if value else 0)
    elif isinstance(value, Int):
        out += _INT_STRUCTS[value.code].pack(value.value)
    elif isinstance(value, float):
        out += _DOUBLE.pack(value)
    elif isinstance(value, bytes):
        _put_size(out, len(value))
        out += value
    elif isinstance(value, dict):
        _put_section(out, value, depth + 1)
    else:
        # arrays only occur as fields (handled by the caller); nested ones do not exist
        raise WireError(f"cannot encode {value!r} here")


def encode_element(value: Value) -> bytes:
    """``value`` as it is written as an array element (no type byte), for ``PackedArray``."""
    out = bytearray()
    _put_value(out, value, 1)
    return bytes(out)


def _name_bytes(name: str) -> bytes:
    """The length-prefixed field name, or WireError if epee could not carry it."""
    try:
        raw = name.encode("latin-1")
    except (UnicodeEncodeError, AttributeError) as exc:
        raise WireError(f"field name {name!r} is not a byte string (latin-1)") from exc
    # one length byte, and epee refuses empty names
    if not 1 <= len(raw) <= _MAX_NAME_LEN:
        raise WireError(f"field name must be 1..255 bytes, got {len(raw)}")
    return bytes([len(raw)]) + raw


def encode(section: Section) -> bytes:
    """Serialize ``section`` as a complete message, fields in the dict's order.

    monerod's own messages come out sorted by name (epee's ``std::map``); ``decode`` keeps
    that order and the ``set_*`` helpers preserve it, so re-encoding gives identical bytes.
    """
    out = bytearray(_HEADER)
    _put_section(out, section, 0)
    return bytes(out)


# -- field helpers ----------------------------------------------------------------------


def get_string(section: Section, name: str) -> bytes | None:
    """The string field ``name``, None if absent; WireError if it is another type."""
    value = section.get(name)
    # absent is a normal case (e.g. a request without ``client``)
    if value is None:
        return None
    # a field of the wrong type is a malformed message, not a missing field
    if not isinstance(value, bytes):
        raise WireError(f"field {name!r} is {_type_of(value).name.lower()}, not a string")
    return value


def get_int(section: Section, name: str) -> int | None:
    """The integer field ``name`` (any width), None if absent; WireError if not an integer."""
    value = section.get(name)
    # absent fields are the caller's call
    if value is None:
        return None
    # bools and doubles are not integers in epee
    if not isinstance(value, Int):
        raise WireError(f"field {name!r} is {_type_of(value).name.lower()}, not an integer")
    return value.value


def set_string(section: Section, name: str, value: bytes) -> None:
    """Set string field ``name`` (added in epee's sorted position, see ``_put_field``)."""
    _put_field(section, name, value)


def set_uint64(section: Section, name: str, value: int) -> None:
    """Set uint64 field ``name`` (e.g. ``credits``); WireError if out of range."""
    _put_field(section, name, Int(Type.UINT64, value))


def remove(section: Section, name: str) -> Value | None:
    """Remove field ``name`` and return its value (None if absent).  Order is kept."""
    return section.pop(name, None)


def _put_field(section: Section, name: str, value: Value) -> None:
    """Replace in place, or insert; an insert into a name-sorted section keeps it sorted,
    so a response we extend looks exactly like one monerod would have written."""
    _name_bytes(name)
    if name in section:
        section[name] = value
        return
    names = list(section)
    was_sorted = all(a < b for a, b in pairwise(names))
    section[name] = value
    # unsorted sections (not from epee) keep insertion order
    if was_sorted:
        items = sorted(section.items(), key=lambda kv: kv[0])
        section.clear()
        section.update(items)
