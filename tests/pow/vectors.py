"""RandomX v1 test vectors, from tevador/RandomX src/tests/tests.cpp (tests 1a-1e).

These are the reference implementation's published hashes, not values produced by our code.
"""

from __future__ import annotations

# (key, input, expected hash hex)
VECTORS: list[tuple[bytes, bytes, str]] = [
    (
        b"test key 000",
        b"This is a test",
        "639183aae1bf4c9a35884cb46b09cad9175f04efd7684e7262a0ac1c2f0b4e3f",
    ),
    (
        b"test key 000",
        b"Lorem ipsum dolor sit amet",
        "300a0adb47603dedb42228ccb2b211104f4da45af709cd7547cd049e9489c969",
    ),
    (
        b"test key 000",
        b"sed do eiusmod tempor incididunt ut labore et dolore magna aliqua",
        "c36d4ed4191e617309867ed66a443be4075014e2b061bcdaf9ce7b721d2b77a8",
    ),
    (
        b"test key 001",
        b"sed do eiusmod tempor incididunt ut labore et dolore magna aliqua",
        "e9ff4503201c0c2cca26d285c93ae883f9b1d30c9eb240b820756f2d5a7905fc",
    ),
    (
        b"test key 001",
        bytes.fromhex(
            "0b0b98bea7e805e0010a2126d287a2a0cc833d312cb786385a7c2f9de69d25537f584a9bc997"
            "7b00000000666fd8753bf61a8631f12984e3fd44f4014eca629276817b56f32e9b68bd82f416"
        ),
        "c56414121acda1713c2f2a819d8ae38aed7c80c35c2a769298d34f03833cd5f1",
    ),
]
