#!/usr/bin/env bash
# Set up a fresh machine (Debian packages, .venv) and run the main job on an embedded default:
# a toy JSON-RPC backend, the rpcpay gateway in front of it, and a client that mines credits
# with RandomX and spends them on paid calls. Everything stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rpcpay demo "$@"
