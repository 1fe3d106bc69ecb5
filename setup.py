"""Build hook for the one C extension (rpcpay.wire._edwards); everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rpcpay.wire._edwards",
            sources=["src/rpcpay/wire/_edwards.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
        )
    ]
)
