#!/usr/bin/env bash
# Prepare a machine for rpcpay development and CI (idempotent).
#   - Debian packages: monero (monerod 0.18, the reference peer), librandomx0, librandomx-dev,
#     nginx (the reverse proxy in tests/gateway/test_client_address.py), openssl (self-signed
#     certificates for the TLS tests), systemd (systemd-analyze verify of contrib/rpcpay.service),
#     chromium and chromium-driver (the dashboard test), wrk (bench/flood_latency.py,
#     bench/observability_overhead.py), postgresql (the shared ledger's engine; tests start
#     private clusters with its initdb, never the system service)
#   - .venv in the repo root with the project installed editable, with its dev and lottery
#     extras
#   - anvil (npm @foundry-rs/anvil, pinned) in .tools/anvil, for the end-to-end chain tests
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=()
for pkg in monero librandomx0 librandomx-dev nginx openssl systemd chromium chromium-driver wrk \
    postgresql; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    # policy-rc.d answering 101 keeps the postgresql package from starting its system
    # service (tests run private clusters); an operator's own policy-rc.d is left alone.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        made_policy="yes"
    fi
    status=0
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
    [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
    [ "$status" -eq 0 ] || exit "$status"
else
    echo "setup: Debian packages present"
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi

echo "setup: installing rpcpay[dev,lottery] into .venv"
log="$(mktemp)"
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,lottery]' >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: pip install failed" >&2
    exit 1
fi
rm -f "$log"

# anvil: the npm package ships the binary in an optional per-platform package
# (@foundry-rs/anvil-linux-amd64, ...); its postinstall only downloads a fallback for
# platforms without one, so scripts are not run: the install is registry-only, and the
# binary works offline afterwards. tests/support/anvil.py runs the platform binary.
ANVIL_VERSION="1.7.1"
mkdir -p .tools
# The tools directory is generated: it ignores itself.
[ -f .tools/.gitignore ] || echo "*" >.tools/.gitignore
anvil_bin() {
    local found
    found="$(ls .tools/anvil/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n 1 || true)"
    echo "$found"
}
bin="$(anvil_bin)"
if [ -n "$bin" ] && "$bin" --version 2>/dev/null | grep -q "Version: ${ANVIL_VERSION}\b"; then
    echo "setup: anvil ${ANVIL_VERSION} present"
else
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup: npm is needed to install anvil (Debian: apt-get install npm)" >&2
        exit 1
    fi
    echo "setup: installing anvil ${ANVIL_VERSION} into .tools/anvil"
    log="$(mktemp)"
    if ! npm install --prefix .tools/anvil --save-exact --no-audit --no-fund --ignore-scripts \
        --loglevel=error "@foundry-rs/anvil@${ANVIL_VERSION}" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "setup: npm install of anvil failed" >&2
        exit 1
    fi
    rm -f "$log"
    bin="$(anvil_bin)"
    if [ -z "$bin" ] || ! "$bin" --version >/dev/null 2>&1; then
        echo "setup: anvil installed but no runnable binary for $(uname -sm)" >&2
        exit 1
    fi
fi
echo "setup: done"
