"""Share difficulty, exactly as monerod 0.18 checks it.

monerod's ``check_hash`` (src/cryptonote_basic/difficulty.cpp) reads the 32-byte PoW hash
as a little-endian 256-bit number and accepts it when ``hash * difficulty`` does not
overflow 256 bits, i.e. ``hash * difficulty < 2**256``.  It computes that with 64-bit
word multiplies (and a 512-bit product for difficulties above 2**64); Python's integers
give the same answer directly.  So a share at difficulty ``d`` is found about once every
``d`` hashes.
"""

from __future__ import annotations

__all__ = ["HASH_SPACE", "check_hash", "max_valid_hash"]

#: 2**256: a hash times the difficulty must stay below this.
HASH_SPACE = 1 << 256


def _check_difficulty(difficulty: int) -> None:
    # monerod's difficulty is an unsigned integer; 0 would accept every hash (a free share),
    # so it is a configuration bug, never a valid share target.
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty < 1:
        raise ValueError(f"difficulty must be an int ≥ 1, got {difficulty!r}")


def check_hash(hash32: bytes, difficulty: int) -> bool:
    """True when the RandomX hash ``hash32`` meets ``difficulty`` (monerod's rule)."""
    # A hash of any other length is not a RandomX hash; comparing it would be meaningless.
    if len(hash32) != 32:
        raise ValueError(f"hash must be 32 bytes, got {len(hash32)}")
    _check_difficulty(difficulty)
    return int.from_bytes(hash32, "little") * difficulty < HASH_SPACE


def max_valid_hash(difficulty: int) -> int:
    """The largest hash value (as a little-endian integer) that meets ``difficulty``.

    ``hash * d < 2**256`` ⇔ ``hash ≤ (2**256 - 1) // d``; miners can compare against this
    bound instead of multiplying for every hash.
    """
    _check_difficulty(difficulty)
    return (HASH_SPACE - 1) // difficulty
