"""A pre-encoded JSON object encodes exactly as ``encode_json`` would, whatever is added."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.gateway.info_cache import InfoCache
from rpcpay.gateway.jsoncodec import encode_json
from rpcpay.gateway.known_json import KnownObject, encode_known, known_object

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(st.text(), values, max_size=8)


@given(objects, objects, values)
def test_encoding_with_added_keys_matches_encode_json(
    cached: dict[str, Any], added: dict[str, Any], request_id: Any
) -> None:
    answer = known_object(cached)
    for key, value in added.items():
        answer[key] = value
    assert encode_known(answer) == encode_json(dict(answer))
    # As a JSON-RPC result, too (the answer to a paid get_info).
    document = {"id": request_id, "jsonrpc": "2.0", "result": answer}
    assert encode_known(document) == encode_json(
        {"id": request_id, "jsonrpc": "2.0", "result": dict(answer)}
    )


def test_a_changed_or_deleted_known_key_is_encoded_anew() -> None:
    answer = known_object({"height": 5, "status": "OK"})
    answer["height"] = 6
    assert encode_known(answer) == b'{"height": 6, "status": "OK"}'
    answer = known_object({"height": 5, "status": "OK"})
    del answer["status"]
    answer["credits"] = 1
    assert encode_known(answer) == b'{"height": 5, "credits": 1}'


def test_bulk_mutators_are_refused() -> None:
    answer = known_object({"height": 5})
    with pytest.raises(TypeError):
        answer.update(height=6)
    with pytest.raises(TypeError):
        answer.pop("height")
    assert encode_known(answer) == b'{"height": 5}'


def test_a_non_string_key_beside_a_known_object_is_encoded_as_json_does() -> None:
    document = {1: known_object({"a": 1}), "b": 2}
    assert encode_known(document) == encode_json(document) == b'{"1": {"a": 1}, "b": 2}'


def test_the_info_cache_serves_known_objects() -> None:
    cache = InfoCache(5.0, clock=lambda: 0.0)
    cache.put("get_info", "t", {"height": 1, "credits": 4, "status": "OK"})
    answer = cache.get("get_info", "t")
    assert isinstance(answer, KnownObject)
    answer["credits"] = 9
    answer["top_hash"] = "ab"
    assert encode_known(answer) == b'{"height": 1, "status": "OK", "credits": 9, "top_hash": "ab"}'
