"""epee portable storage: known bytes, round trips, refusals, fuzzing, and real monerod traffic."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.errors import WireError
from rpcpay.wire import epee
from rpcpay.wire.epee import (
    MAX_DEPTH,
    SIGNATURE,
    Array,
    Int,
    Section,
    Type,
    Value,
    decode,
    encode,
    get_int,
    get_string,
    remove,
    set_string,
    set_uint64,
)

HEADER = SIGNATURE + b"\x01"
U64 = Type.UINT64

# -- known bytes ------------------------------------------------------------------------


def test_header_and_empty_root() -> None:
    assert SIGNATURE.hex() == "0111010101010201"
    assert encode({}) == bytes.fromhex("0111010101010201 01 00")
    assert decode(HEADER + b"\x00") == {}


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),
        (63, "fc"),
        (64, "0101"),
        (16383, "fdff"),
        (16384, "02000100"),
        (2**30 - 1, "feffffff"),
        (2**30, "0300000001000000"),
    ],
)
def test_size_widths(n: int, encoded: str) -> None:
    # a string of n bytes is the easiest place to see a size; check only its prefix
    out = bytearray()
    epee._put_size(out, n)
    assert out.hex() == encoded


def test_known_message() -> None:
    section: Section = {
        "a": Int(U64, 5),
        "b": b"xy",
        "c": {"d": True, "f": 1.5},
        "g": Array.of_ints(Type.INT8, [-1, 2]),
        "h": Array(Type.OBJECT, ({"x": b""},)),
    }
    expected = bytes.fromhex(
        "0111010101010201 01"  # signature, version
        " 14"  # 5 fields
        " 0161 05 0500000000000000"
        " 0162 0a 08 7879"
        " 0163 0c 08 0164 0b 01 0166 09 000000000000f83f"
        " 0167 84 08 ff02"
        " 0168 8c 04 04 0178 0a 00"
    )
    assert encode(section) == expected
    assert decode(expected) == section


def test_integer_types_are_kept() -> None:
    for code in (Type.INT64, Type.INT32, Type.INT16, Type.INT8):
        msg = encode({"v": Int(code, -1)})
        assert decode(msg) == {"v": Int(code, -1)}
    for code in (Type.UINT64, Type.UINT32, Type.UINT16, Type.UINT8):
        msg = encode({"v": Int(code, 1)})
        back = decode(msg)["v"]
        assert isinstance(back, Int) and back.code is code
        # the type byte follows the field name, the value fills the type's exact width
        assert msg[len(HEADER) + 3] == code
        assert len(msg) == len(HEADER) + 4 + struct.calcsize(epee._INT_STRUCTS[code].format)


# -- hypothesis round trips -------------------------------------------------------------

NAMES = st.text(st.characters(min_codepoint=0, max_codepoint=255), min_size=1, max_size=12)
INT_TYPES = [Type(c) for c in range(1, 9)]
ELEMENT_TYPES = [*INT_TYPES, Type.DOUBLE, Type.STRING, Type.BOOL, Type.OBJECT]


def ints(code: Type) -> st.SearchStrategy[Int]:
    lo, hi = epee._INT_RANGES[code]
    return st.integers(lo, hi).map(lambda v: Int(code, v))


def scalar(code: Type) -> st.SearchStrategy[Value]:
    if code in epee._INT_STRUCTS:
        return ints(code)
    if code is Type.DOUBLE:
        return st.floats(allow_nan=False)
    if code is Type.STRING:
        return st.binary(max_size=40)
    assert code is Type.BOOL
    return st.booleans()


SCALARS: st.SearchStrategy[Value] = st.sampled_from(
    [*INT_TYPES, Type.DOUBLE, Type.STRING, Type.BOOL]
).flatmap(scalar)


def arrays(sections: st.SearchStrategy[Section]) -> st.SearchStrategy[Value]:
    def of(code: Type) -> st.SearchStrategy[Value]:
        elem: st.SearchStrategy[Any] = sections if code is Type.OBJECT else scalar(code)
        return st.lists(elem, max_size=5).map(lambda xs: Array(code, tuple(xs)))

    return st.sampled_from(ELEMENT_TYPES).flatmap(of)


def _extend(inner: st.SearchStrategy[Section]) -> st.SearchStrategy[Section]:
    return st.dictionaries(NAMES, st.one_of(SCALARS, inner, arrays(inner)), max_size=5)


SECTIONS: st.SearchStrategy[Section] = st.recursive(
    st.dictionaries(NAMES, st.one_of(SCALARS, arrays(st.just({}))), max_size=5),
    _extend,
    max_leaves=25,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(SECTIONS)
def test_round_trip(section: Section) -> None:
    data = encode(section)
    back = decode(data)
    assert back == section
    assert list(back) == list(section)  # field order is kept
    assert encode(back) == data


@given(st.binary(min_size=8, max_size=8))
def test_double_bits_survive(bits: bytes) -> None:
    # any 8 bytes, NaN payloads and negative zero included, re-encode identically
    data = HEADER + b"\x04" + b"\x01d\x09" + bits
    assert encode(decode(data)) == data
    arr = HEADER + b"\x04" + b"\x01d\x89\x08" + bits + bits
    assert encode(decode(arr)) == arr


@given(st.integers(0, 2**62 - 1))
def test_size_round_trip(n: int) -> None:
    out = bytearray()
    epee._put_size(out, n)
    reader = epee._Reader(bytes(out), 0)
    assert reader.size("x") == n and reader.left() == 0


# -- refusals ---------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    """``depth`` objects nested inside the root: {"a": {"a": ... {}}}."""
    return HEADER + b"\x04\x01a\x0c" * depth + b"\x00"


def _nested_arrays(depth: int) -> bytes:
    """``depth`` levels of one-object arrays: {"a": [{"a": [...]}]}; each level counts twice
    (the array and the object in it)."""
    return HEADER + b"\x04\x01a\x8c\x04" * depth + b"\x00"


MALFORMED = {
    "empty": b"",
    "short header": HEADER[:5],
    "bad signature a": b"\x01\x11\x01\x02" + HEADER[4:] + b"\x00",
    "bad signature b": HEADER[:4] + b"\x01\x01\x02\x02\x01\x00",
    "version 2": SIGNATURE + b"\x02\x00",
    "header only": HEADER,
    "trailing byte": HEADER + b"\x00\x00",
    "missing field": HEADER + b"\x04",
    "empty name": HEADER + b"\x04\x00\x05" + bytes(8),
    "name cut short": HEADER + b"\x04\x05ab",
    "no type byte": HEADER + b"\x04\x01a",
    "type 0": HEADER + b"\x04\x01a\x00\x00",
    "type 14": HEADER + b"\x04\x01a\x0e\x00",
    "array type 14": HEADER + b"\x04\x01a\x8e\x00",
    "array type 0": HEADER + b"\x04\x01a\x80\x00",
    "bare array entry": HEADER + b"\x04\x01a\x0d\x85\x00",
    "array of arrays": HEADER + b"\x04\x01a\x8d\x04\x85\x00",
    "bool 2": HEADER + b"\x04\x01a\x0b\x02",
    "uint64 cut short": HEADER + b"\x04\x01a\x05" + bytes(7),
    "double cut short": HEADER + b"\x04\x01a\x09" + bytes(3),
    "non-canonical size": HEADER + b"\x01\x00",
    "non-canonical 8-byte size": HEADER + b"\x04\x01a\x0a\x03" + bytes(7),
    "size cut short": HEADER + b"\x04\x01a\x0a\x02\x00",
    "string longer than message": HEADER + b"\x04\x01a\x0a\x50abc",
    "huge string": HEADER + b"\x04\x01a\x0a" + ((2**61) << 2 | 3).to_bytes(8, "little"),
    "string at epee's cap": HEADER
    + b"\x04\x01a\x0a"
    + ((2_000_000_000 << 2) | 3).to_bytes(8, "little"),
    "huge uint64 array": HEADER + b"\x04\x01a\x85" + ((2**40) << 2 | 3).to_bytes(8, "little"),
    "uint64 array one short": HEADER + b"\x04\x01a\x85\x08" + bytes(15),
    "huge object array": HEADER + b"\x04\x01a\x8c" + ((2**40) << 2 | 3).to_bytes(8, "little"),
    "huge field count": HEADER + ((2**60) << 2 | 3).to_bytes(8, "little"),
    "duplicate name": HEADER + b"\x08\x01a\x08\x01\x01a\x08\x02",
    "duplicate nested name": HEADER + b"\x04\x01o\x0c\x08\x01a\x0b\x00\x01a\x0b\x01",
    "too deep": _nested(MAX_DEPTH + 1),
    "far too deep": _nested(100_000),
    "too deep arrays": _nested_arrays(MAX_DEPTH // 2 + 1),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed(data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)


def test_depth_limit_is_exact() -> None:
    assert encode(decode(_nested(MAX_DEPTH))) == _nested(MAX_DEPTH)
    assert encode(decode(_nested_arrays(MAX_DEPTH // 2))) == _nested_arrays(MAX_DEPTH // 2)


def test_error_messages_are_clear() -> None:
    with pytest.raises(WireError, match="signature"):
        decode(MALFORMED["bad signature a"])
    with pytest.raises(WireError, match="duplicate field name 'a'"):
        decode(MALFORMED["duplicate name"])
    with pytest.raises(WireError, match="unknown type code 14"):
        decode(MALFORMED["type 14"])
    with pytest.raises(WireError, match="claims"):
        decode(MALFORMED["huge uint64 array"])
    with pytest.raises(WireError, match="nesting deeper"):
        decode(MALFORMED["far too deep"])


def _self_referential() -> Section:
    s: Section = {}
    s["s"] = s
    return s


UNENCODABLE: dict[str, Any] = {
    "bare int": {"a": 1},
    "none": {"a": None},
    "list": {"a": [b"x"]},
    "empty name": {"": b"x"},
    "long name": {"n" * 256: b"x"},
    "non-latin-1 name": {"\u20ac": b"x"},
    "non-str name": {1: b"x"},
    "self-referential": _self_referential(),
}


@pytest.mark.parametrize("section", UNENCODABLE.values(), ids=UNENCODABLE.keys())
def test_unencodable(section: Section) -> None:
    with pytest.raises(WireError):
        encode(section)


def test_value_checks() -> None:
    with pytest.raises(WireError):
        Int(Type.UINT64, 2**64)
    with pytest.raises(WireError):
        Int(Type.INT8, -129)
    with pytest.raises(WireError):
        Int(Type.STRING, 1)
    with pytest.raises(WireError):
        Array(Type.UINT64, (Int(Type.UINT32, 1),))
    with pytest.raises(WireError):
        Array(Type.ARRAY, ())
    with pytest.raises(WireError):
        Array(Type.STRING, (b"x", True))
    assert Int(5, 1) == Int(Type.UINT64, 1)  # type: ignore[arg-type]
    assert Int(5, 1).code is Type.UINT64  # type: ignore[arg-type]
    # 255-byte names are readable by epee, so they must re-encode
    long_name: Section = {"n" * 255: b"x"}
    assert decode(encode(long_name)) == long_name


# -- fuzzing: nothing but WireError, and whatever decodes re-encodes identically ---------


def _decode_or_wire_error(data: bytes) -> None:
    try:
        section = decode(data)
    except WireError:
        return
    assert encode(section) == data


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_wire_error(data)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_header(body: bytes) -> None:
    _decode_or_wire_error(HEADER + body)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(SECTIONS, st.data())
def test_mutated_messages(section: Section, data: st.DataObject) -> None:
    msg = bytearray(encode(section))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, len(msg)))
        if op == "flip" and i < len(msg):
            msg[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and i < len(msg):
            msg[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del msg[i:]
        elif op == "insert":
            msg[i:i] = data.draw(st.binary(min_size=1, max_size=9))
        elif op == "delete":
            del msg[i : i + data.draw(st.integers(1, 9))]
    _decode_or_wire_error(bytes(msg))


# -- field helpers ----------------------------------------------------------------------


def test_helpers_keep_epee_order() -> None:
    response = decode(encode({"blocks": b"", "status": b"OK", "untrusted": False}))
    set_uint64(response, "credits", 7)
    set_string(response, "top_hash", b"")
    assert list(response) == ["blocks", "credits", "status", "top_hash", "untrusted"]
    assert get_int(response, "credits") == 7
    assert get_string(response, "top_hash") == b""
    # replacing keeps the position and takes the new value
    set_uint64(response, "credits", 8)
    assert list(response)[1] == "credits" and get_int(response, "credits") == 8
    # an unsorted section keeps insertion order
    unsorted: Section = {"z": b"", "a": b""}
    set_string(unsorted, "m", b"x")
    assert list(unsorted) == ["z", "a", "m"]


def test_helpers_types_and_remove() -> None:
    section: Section = {"client": b"abc", "n": Int(Type.UINT32, 3), "b": True}
    assert get_string(section, "client") == b"abc"
    assert get_string(section, "missing") is None
    assert get_int(section, "n") == 3
    assert get_int(section, "missing") is None
    with pytest.raises(WireError, match="not a string"):
        get_string(section, "n")
    with pytest.raises(WireError, match="not an integer"):
        get_int(section, "b")
    with pytest.raises(WireError):
        set_uint64(section, "credits", -1)
    with pytest.raises(WireError):
        set_string(section, "", b"")
    assert remove(section, "client") == b"abc"
    assert remove(section, "client") is None
    assert list(section) == ["n", "b"]


# -- real monerod 0.18 ------------------------------------------------------------------

BIN = "application/octet-stream"


def _post_bin(monerod: Any, path: str, request: Section) -> tuple[Section, bytes]:
    status, body = monerod.post_raw(path, encode(request), content_type=BIN)
    assert status == 200, (path, status, body[:200])
    response = decode(body)
    # monerod's bytes survive decode -> encode exactly
    assert encode(response) == body
    # monerod writes fields sorted by name (epee's std::map)
    assert list(response) == sorted(response)
    assert get_string(response, "status") == b"OK", response.get("status")
    # even without pay-for-RPC, monerod's .bin responses carry credits 0 and an empty top_hash
    assert response["credits"] == Int(U64, 0)
    assert get_string(response, "top_hash") == b""
    return response, body


def _genesis_hash(monerod: Any) -> bytes:
    resp = monerod.json_rpc("get_block_header_by_height", {"height": 0})
    return bytes.fromhex(resp["result"]["block_header"]["hash"])


def _coinbase_txid(monerod: Any, height: int) -> bytes:
    resp = monerod.json_rpc("get_block", {"height": height})
    return bytes.fromhex(resp["result"]["miner_tx_hash"])


@pytest.mark.monerod
def test_monerod_get_hashes(monerod: Any) -> None:
    genesis = _genesis_hash(monerod)
    request: Section = {"block_ids": genesis, "start_height": Int(U64, 0)}
    response, _ = _post_bin(monerod, "/get_hashes.bin", request)
    ids = get_string(response, "m_block_ids")
    assert ids is not None and len(ids) % 32 == 0
    assert ids[:32] == genesis
    height = monerod.height()
    assert response["current_height"] == Int(U64, height)
    assert len(ids) == 32 * height
    assert response["start_height"] == Int(U64, 0)
    assert response["untrusted"] is False


@pytest.mark.monerod
def test_monerod_get_blocks(monerod: Any) -> None:
    genesis = _genesis_hash(monerod)
    request: Section = {"block_ids": genesis, "prune": True, "start_height": Int(U64, 0)}
    response, _ = _post_bin(monerod, "/get_blocks.bin", request)
    blocks = response["blocks"]
    assert isinstance(blocks, Array) and blocks.code is Type.OBJECT
    assert len(blocks.items) == monerod.height()
    first = blocks.items[0]
    assert isinstance(first, dict)
    blob = get_string(first, "block")
    assert blob is not None and len(blob) > 32
    assert get_int(response, "current_height") == monerod.height()


@pytest.mark.monerod
def test_monerod_get_o_indexes(monerod: Any) -> None:
    request: Section = {"txid": _coinbase_txid(monerod, 1)}
    response, _ = _post_bin(monerod, "/get_o_indexes.bin", request)
    indexes = response["o_indexes"]
    assert isinstance(indexes, Array) and indexes.code is Type.UINT64
    assert len(indexes.items) >= 1


@pytest.mark.monerod
def test_monerod_get_outs(monerod: Any) -> None:
    out: Section = {"amount": Int(U64, 0), "index": Int(U64, 0)}
    request: Section = {"get_txid": True, "outputs": Array(Type.OBJECT, (out,))}
    response, _ = _post_bin(monerod, "/get_outs.bin", request)
    outs = response["outs"]
    assert isinstance(outs, Array) and outs.code is Type.OBJECT and len(outs.items) == 1
    entry = outs.items[0]
    assert isinstance(entry, dict)
    key = get_string(entry, "key")
    assert key is not None and len(key) == 32
    txid = get_string(entry, "txid")
    assert txid is not None and len(txid) == 32


@pytest.mark.monerod
def test_monerod_get_blocks_by_height(monerod: Any) -> None:
    request: Section = {"heights": Array.of_ints(U64, [0, 1])}
    response, _ = _post_bin(monerod, "/get_blocks_by_height.bin", request)
    blocks = response["blocks"]
    assert isinstance(blocks, Array) and len(blocks.items) == 2


@pytest.mark.monerod
def test_monerod_get_output_distribution(monerod: Any) -> None:
    request: Section = {
        "amounts": Array.of_ints(U64, [0]),
        "binary": True,
        "compress": False,
        "cumulative": False,
        "from_height": Int(U64, 0),
    }
    response, _ = _post_bin(monerod, "/get_output_distribution.bin", request)
    dists = response["distributions"]
    assert isinstance(dists, Array) and dists.code is Type.OBJECT and len(dists.items) == 1
    dist = dists.items[0]
    assert isinstance(dist, dict)
    # binary=true makes the distribution a string of little-endian uint64s, one per block
    packed = get_string(dist, "distribution")
    assert packed is not None and len(packed) == 8 * monerod.height()


@pytest.mark.monerod
def test_monerod_garbage_gets_http_400(monerod: Any) -> None:
    status, body = monerod.post_raw("/get_hashes.bin", b"garbage", content_type=BIN)
    assert (status, body) == (400, b"")


@pytest.mark.monerod
def test_monerod_request_with_client(monerod: Any) -> None:
    genesis = _genesis_hash(monerod)
    plain: Section = {"block_ids": genesis, "start_height": Int(U64, 0)}
    with_client: Section = {"block_ids": genesis, "client": b"x" * 208, "start_height": Int(U64, 0)}
    wire = encode(with_client)
    request = decode(wire)
    assert get_string(request, "client") == b"x" * 208
    assert remove(request, "client") == b"x" * 208
    stripped = encode(request)
    assert stripped == encode(plain)
    status, body = monerod.post_raw("/get_hashes.bin", stripped, content_type=BIN)
    assert status == 200
    assert get_string(decode(body), "status") == b"OK"
    # and the gateway's additions make a response that still decodes like monerod's
    response = decode(body)
    order = list(response)
    set_uint64(response, "credits", 5)
    set_string(response, "top_hash", b"\x01" * 32)
    assert list(response) == order  # both fields were already there; replaced in place
    assert decode(encode(response)) == response


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SECTIONS, max_size=6), SECTIONS)
def test_packed_array_encodes_like_array(items: list[Section], rest: Section) -> None:
    """Joining pre-encoded elements gives the bytes of encoding the array itself."""
    plain: Section = {
        "a": Array(Type.OBJECT, tuple(items)),
        **{k: v for k, v in rest.items() if k != "a"},
    }
    body = b"".join(epee.encode_element(item) for item in items)
    packed: Section = {**plain, "a": epee.PackedArray(Type.OBJECT, len(items), body)}
    assert encode(packed) == encode(plain)
    assert decode(encode(packed)) == plain
