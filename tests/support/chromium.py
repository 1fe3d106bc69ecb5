"""Debian's headless Chromium driven through chromedriver's W3C WebDriver HTTP API.

No client library: a session is a handful of JSON requests to chromedriver on a free loopback
port (``POST /session``, ``/url``, ``/execute/sync``, ``GET /screenshot``). Chromium runs
headless with a fresh profile, no network features of its own (no sync, updates, QUIC or
background fetches), so the only traffic is the page under test on loopback.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.monerod import free_port
from tests.support.processes import stop_process

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1200",
]


def _request(method: str, url: str, body: Any = None, timeout: float = 60) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())["value"]


@dataclass
class Browser:
    """One WebDriver session."""

    base: str

    def get(self, url: str) -> None:
        _request("POST", f"{self.base}/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body) in the page; its return value."""
        return _request("POST", f"{self.base}/execute/sync", {"script": script, "args": args})

    def wait_for(self, script: str, timeout: float = 30.0) -> Any:
        """Poll ``script`` until it returns something truthy; that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.run(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"page never satisfied: {script}")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(_request("GET", f"{self.base}/screenshot")))
        return path


@contextmanager
def headless_chromium(profile: Path) -> Iterator[Browser]:
    """chromedriver on a free loopback port with one headless Chromium session."""
    port = free_port()
    log = profile.parent / "chromedriver.log"
    driver = subprocess.Popen(
        [str(CHROMEDRIVER), f"--port={port}", "--allowed-ips=127.0.0.1", f"--log-path={log}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _request("GET", f"{base}/status", timeout=2)["ready"]:
                    break
            except OSError:
                pass
            if driver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromedriver did not start (exit {driver.poll()})")
            time.sleep(0.1)
        options = {"binary": str(CHROMIUM), "args": [*FLAGS, f"--user-data-dir={profile}"]}
        capabilities = {"alwaysMatch": {"goog:chromeOptions": options}}
        session = _request("POST", f"{base}/session", {"capabilities": capabilities}, 120)
        browser = Browser(f"{base}/session/{session['sessionId']}")
        try:
            yield browser
        finally:
            _request("DELETE", browser.base)
    finally:
        stop_process(driver, timeout=10)
