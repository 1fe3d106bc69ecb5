"""Every way ``rpcpay serve`` can be misconfigured ends in one line saying what to do: no
traceback, no aiohttp "Unclosed client session" dump, no 30-line usage."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.monerod import TEST_ADDRESS, free_port

RPCPAY = [sys.executable, "-m", "rpcpay"]


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = ["--rpc-bind-port", "0", "--admin-bind-port", "0", "--pow-mode", "light"]
    base += ["--verify-threads", "1", "--log-level", "error"]
    if "--data-dir" not in args:
        base += ["--data-dir", str(tmp_path / "data")]
    if "--upstream" not in args:
        base += ["--upstream", f"http://127.0.0.1:{free_port()}", "--upstream-kind", "jsonrpc"]
    return subprocess.run(
        [*RPCPAY, "serve", *base, *args], capture_output=True, text=True, timeout=60
    )


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr
    assert "usage:" not in done.stderr, done.stderr
    assert 1 <= len(lines) <= 2, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_data_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = serve(tmp_path, "--data-dir", str(tmp_path / "file" / "data"))
    assert_one_clear_line(done, "--data-dir", "is a file, not a directory")


def test_data_dir_in_proc(tmp_path: Path) -> None:
    assert_one_clear_line(serve(tmp_path, "--data-dir", "/proc/rpcpay"), "--data-dir", "cannot")


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = serve(tmp_path, "--data-dir", str(tmp_path / "file"))
    assert_one_clear_line(done, "--data-dir")


@pytest.mark.parametrize(
    ("value", "fragment"), [("70000", "0-65535"), ("-1", "0-65535"), ("port", "not an integer")]
)
def test_bad_port_values(tmp_path: Path, value: str, fragment: str) -> None:
    done = serve(tmp_path, "--rpc-bind-port", value)
    assert_one_clear_line(done, "--rpc-bind-port", fragment, "--help")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(tmp_path, "--rpc-bind-port", str(port))
    assert_one_clear_line(done, f"cannot listen on 127.0.0.1:{port}", "another port")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://127.0.0.1:1", "http:// or https://"),
        ("not a url", "http:// or https://"),
        ("http://", "has no host"),
        ("http://127.0.0.1:99999", "not a URL"),
        ("http://127.0.0.1:0", "port 0"),
    ],
)
def test_bad_upstream_urls(tmp_path: Path, url: str, fragment: str) -> None:
    assert_one_clear_line(serve(tmp_path, "--upstream", url), "--upstream", fragment)


def test_unreachable_monerod_upstream_is_waited_for_not_a_crash(tmp_path: Path) -> None:
    # A monerod that is not up yet (both started at boot, say) is waited for with backoff and
    # a log line, never guessed at and never a traceback; SIGTERM still stops the wait.
    process = subprocess.Popen(
        [
            *RPCPAY, "serve", "--rpc-bind-port", "0", "--admin-bind-port", "0",
            "--pow-mode", "light", "--verify-threads", "1", "--log-level", "warning",
            "--data-dir", str(tmp_path / "data"),
            "--upstream", f"http://127.0.0.1:{free_port()}", "--upstream-kind", "monero",
            "--rpc-payment-address", TEST_ADDRESS,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stderr is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            seen.append(line)
            if "upstream unreachable" in line or not line:
                break
        assert any("upstream unreachable" in line for line in seen), "".join(seen)
        assert process.poll() is None, "".join(seen)
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=20)[1]
    output = "".join(seen) + rest
    assert "Traceback" not in output and "Unclosed" not in output, output


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "No such file"),
        ("{not json", "not valid JSON"),
        ('{"default": -1}', "price file"),
        ('{"methods": {"x": "cheap"}}', "price file"),
    ],
)
def test_bad_price_files(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    assert_one_clear_line(serve(tmp_path, "--price-file", str(path)), fragment)


def test_bad_trusted_proxy(tmp_path: Path) -> None:
    assert_one_clear_line(serve(tmp_path, "--trusted-proxy", "nginx"), "--trusted-proxy")
