"""The short get_info cache: never across a new top, never older than its TTL."""

from __future__ import annotations

from rpcpay.gateway.info_cache import InfoCache


def test_cache_serves_only_fresh_answers_for_the_current_top() -> None:
    now = [0.0]
    cache = InfoCache(1.0, clock=lambda: now[0])
    cache.put("get_info", "top1", {"height": 5, "credits": 9, "top_hash": "x", "status": "OK"})
    # Per-client fields are never cached.
    assert cache.get("get_info", "top1") == {"height": 5, "status": "OK"}
    assert cache.get("get_info", "top2") is None
    now[0] = 0.999
    assert cache.get("get_info", "top1") is not None
    now[0] = 1.0
    assert cache.get("get_info", "top1") is None


def test_cache_hands_out_copies_and_can_be_off() -> None:
    cache = InfoCache(5.0, clock=lambda: 0.0)
    cache.put("get_info", "t", {"height": 1})
    first = cache.get("get_info", "t")
    assert first is not None
    first["credits"] = 3
    assert cache.get("get_info", "t") == {"height": 1}
    off = InfoCache(0.0, clock=lambda: 0.0)
    off.put("get_info", "t", {"height": 1})
    assert off.get("get_info", "t") is None
    cache.put("get_block", "t", {"height": 1})
    assert cache.get("get_block", "t") is None
