"""Paid ``eth_blockNumber`` calls per second through the gateway in front of anvil, and the
local paying proxy's overhead. wrk drives every side with requests made beforehand.

Started on loopback, in one run on this machine:
  * anvil (``.tools/anvil``), the backend and the reference: the same calls straight to it;
  * ``rpcpay serve --upstream-kind jsonrpc`` in front of it, its own process;
  * ``rpcpay wallet proxy --server <gateway>``, its own process, with a client key funded at
    the gateway (``rpc_access_account``) so that it never mines during the run.

Sides, alternating within each round (``--rounds`` rounds of ``--seconds`` s per side):
  * ``anvil``: wrk posts eth_blockNumber straight to anvil;
  * ``gateway``: wrk posts eth_blockNumber to the gateway, each request with its own
    pre-signed client id in ``X-Rpc-Client`` (one key per wrk thread and one connection per
    thread, so each key's timestamps arrive in order; ids are signed before each round);
  * ``proxy``: wrk posts the plain, unsigned eth_blockNumber to the proxy, which signs and
    pays the gateway itself.

Every answer is checked by wrk's status count (non-2xx must be 0) and a sample of answers is
checked for a ``result``. Printed: calls/s per side, gateway/anvil, and the time ratio
proxy+gateway / gateway (the proxy's overhead; goal ≤ 1.2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import HOST, free_port, fund, print_table  # noqa: E402
from tests.support.anvil import start_anvil  # noqa: E402

from rpcpay.wallet.keys import ClientKey  # noqa: E402

BODY = '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'
LUA = """
local ids = {}
local n = 0
local counter = 0
function setup(thread)
  thread:set("slot", counter)
  counter = counter + 1
end
function init(args)
  if args[1] ~= nil then
    for line in io.lines(args[1] .. "/" .. slot .. ".txt") do ids[#ids + 1] = line end
  end
end
function request()
  local headers = {["Content-Type"] = "application/json"}
  if #ids > 0 then
    n = n + 1
    headers["X-Rpc-Client"] = ids[math.min(n, #ids)]
  end
  return wrk.format("POST", "/", headers, BODY)
end
""".replace("BODY", json.dumps(BODY))


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen")


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = log.open("ab")
    return subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)


def wrk(
    url: str, seconds: float, connections: int, script: Path, ids_dir: Path | None
) -> tuple[float, int]:
    duration = f"{max(1, round(seconds))}s"
    cmd = ["wrk", "-t", str(connections), "-c", str(connections), "-d", duration,
           "-s", str(script), url]  # fmt: skip
    if ids_dir is not None:
        cmd += ["--", str(ids_dir)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(bad.group(1)) if bad else 0


def sign_ids(keys: list[ClientKey], count: int, ids_dir: Path) -> None:
    ids_dir.mkdir(parents=True, exist_ok=True)
    for slot, key in enumerate(keys):
        (ids_dir / f"{slot}.txt").write_text("\n".join(key.client_id() for _ in range(count)))


def check_answer(url: str, headers: dict[str, str]) -> None:
    import urllib.request

    request = urllib.request.Request(
        url, BODY.encode(), {"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if "result" not in answer:
        raise RuntimeError(f"{url} answered {answer}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (default: 3)")
    parser.add_argument("--seconds", type=int, default=3, help="seconds per phase (default: 3)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4],
                        help="wrk connections (= threads) (default: 1 4)")  # fmt: skip
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rpcpay-bench-paywall-"))
    script = tmp / "calls.lua"
    script.write_text(LUA)
    procs: list[subprocess.Popen[bytes]] = []
    node = start_anvil(tmp)
    try:
        port, admin = free_port(), free_port()
        gateway = spawn([sys.executable, "-m", "rpcpay", "serve", "--upstream", node.url,
                         "--upstream-kind", "jsonrpc", "--rpc-bind-port", str(port),
                         "--admin-bind-port", str(admin), "--data-dir", str(tmp / "gw"),
                         "--pow-mode", "light", "--log-level", "warning"],
                        tmp / "gw.log")  # fmt: skip
        procs.append(gateway)
        wait_port(port, gateway, "gateway")
        gw_url, admin_url = f"http://{HOST}:{port}", f"http://{HOST}:{admin}"
        proxy_key = ClientKey()
        fund(admin_url, proxy_key.public.hex(), 10**12)
        proxy_port = free_port()
        proxy = spawn([sys.executable, "-m", "rpcpay", "wallet", "--wallet-file",
                       str(tmp / "w.json"), "--rpc-client-secret-key", proxy_key.secret.hex(),
                       "proxy", "--listen", f"{HOST}:{proxy_port}", "--server", gw_url,
                       "--log-level", "warning"], tmp / "proxy.log")  # fmt: skip
        procs.append(proxy)
        wait_port(proxy_port, proxy, "proxy")
        proxy_url = f"http://{HOST}:{proxy_port}/"
        rows = []
        for connections in args.connections:
            keys = [ClientKey() for _ in range(connections)]
            for key in keys:
                fund(admin_url, key.public.hex(), 10**12)
            check_answer(node.url, {})
            check_answer(proxy_url, {})
            check_answer(gw_url + "/", {"X-Rpc-Client": keys[0].client_id()})
            rates: dict[str, list[float]] = {"anvil": [], "gateway": [], "proxy": []}
            bad = 0
            for _ in range(args.rounds):
                rate, b = wrk(node.url, args.seconds, connections, script, None)
                rates["anvil"].append(rate)
                bad += b
                sign_ids(keys, int(3000 * args.seconds), tmp / "ids")
                rate, b = wrk(gw_url + "/", args.seconds, connections, script, tmp / "ids")
                rates["gateway"].append(rate)
                bad += b
                rate, b = wrk(proxy_url, args.seconds, connections, script, None)
                rates["proxy"].append(rate)
                bad += b
            mean = {k: sum(v) / len(v) for k, v in rates.items()}
            rows.append([connections, f"{mean['anvil']:,.0f}/s", f"{mean['gateway']:,.0f}/s",
                         f"{mean['gateway'] / mean['anvil']:.2f}x", f"{mean['proxy']:,.0f}/s",
                         f"{mean['gateway'] / mean['proxy']:.2f}x", bad])  # fmt: skip
        print_table(
            "eth_blockNumber: anvil direct, paid through the gateway, free through the proxy",
            ["connections", "anvil", "gateway (paid)", "gateway/anvil", "proxy→gateway",
             "time proxy+gw / gw", "non-2xx"],
            rows,
        )  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
