"""Debian's nginx as a real reverse proxy on loopback, with a generated config and prefix.

The config is what docs/gateway.md tells operators to write: ``proxy_pass`` to the gateway
with ``X-Forwarded-For $proxy_add_x_forwarded_for`` (nginx appends the peer it saw to any
header the client sent). nginx runs in the foreground (``daemon off``) as the test's own
process, with every path under a temporary prefix, so no root and no /etc/nginx are needed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.monerod import free_port
from tests.support.processes import stop_process

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        {ssl}
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Nginx:
    """A running nginx in front of ``upstream_port``."""

    port: int
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_listening(port: int, process: subprocess.Popen[bytes], prefix: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (prefix / "error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {process.returncode}: {log}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


#: The process-level part of a config: everything under the prefix, no root needed.
SKELETON = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http}
}}
"""


@contextmanager
def nginx_with(http: str, port: int, prefix: Path) -> Iterator[Nginx]:
    """nginx running ``http`` (upstream and server blocks, listening on ``port``)."""
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(SKELETON.format(prefix=prefix, http=http))
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process, prefix)
        yield Nginx(port, prefix)
    finally:
        stop_process(process, timeout=10)


@contextmanager
def nginx_proxy(upstream_port: int, prefix: Path) -> Iterator[Nginx]:
    """nginx on a free loopback port proxying every path to 127.0.0.1:``upstream_port``."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(CONFIG.format(prefix=prefix, port=port, upstream_port=upstream_port, ssl=""))
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process, prefix)
        yield Nginx(port, prefix)
    finally:
        stop_process(process, timeout=10)
