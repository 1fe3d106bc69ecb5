#!/usr/bin/env bash
# The lottery rail end to end through the CLI, on loopback, with nothing to set up:
#   rpcpay chain (embedded EVM) -> a funded, registered stamper (rpcpay stamper deposit + run)
#   -> a toy JSON-RPC backend -> three `rpcpay serve` gateways with the lottery rail,
#   gossiping to each other, at three credit prices -> rpcpay wallet lottery-deposit and
#   lottery-pay (servers given by URL only: addresses and prices come from lottery_info)
#   -> each gateway's operator view (rpcpay payments) -> rpcpay wallet lottery-status.
# Every process it starts is stopped on exit. Assumes .venv exists (scripts/setup.sh).
#
# Environment: ROUNDS (default 4) rounds of cheques, INTERVAL (default 1) seconds apart;
# BLOCK_TIME (default 0.5) seconds per empty block of the chain, so lotteries confirm;
# KEEP_DIR=1 keeps the work directory (logs, key files, ledgers) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-4}
INTERVAL=${INTERVAL:-1}
BLOCK_TIME=${BLOCK_TIME:-0.5}
CONFIRMATIONS=2
RPCPAY=${RPCPAY:-.venv/bin/rpcpay}
PY=${PY:-.venv/bin/python}
[[ -x $RPCPAY ]] || { echo "demo_lottery: $RPCPAY missing: run scripts/setup.sh" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rpcpay-lottery-demo.XXXXXX")
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${KEEP_DIR:-0} == 1 ]]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
# Start a background process logging to $WORK/NAME.log.
start() {
    local name=$1; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
}
# Wait until something listens on 127.0.0.1:PORT (or the process NAME died).
wait_port() {
    local name=$1 port=$2 pid=${PIDS[-1]}
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo_lottery: $name exited; its log:" >&2; cat "$WORK/$name.log" >&2; exit 1
        fi
        sleep 0.1
    done
    echo "demo_lottery: $name did not listen on port $port; its log:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}
# Free loopback ports, from the OS.
read -r -a PORTS <<<"$("$PY" -c '
import socket
socks = [socket.socket() for _ in range(9)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')"
CHAIN_PORT=${PORTS[0]} STAMPER_PORT=${PORTS[1]} BACKEND_PORT=${PORTS[2]}
GW_PORTS=("${PORTS[3]}" "${PORTS[4]}" "${PORTS[5]}")
ADMIN_PORTS=("${PORTS[6]}" "${PORTS[7]}" "${PORTS[8]}")
CREDIT_PRICES=(1000000000 3000000000 7000000000)  # 1, 3 and 7 gwei a credit
# The seed's 100 gwei a minute per server, with INTERVAL seconds standing for a minute; the
# payer rounds each cheque down to whole credits: 100, 33 and 14 credits a round.
PER_MINUTE=$("$PY" -c "print(int(100 * 10**9 * 60 / $INTERVAL))")

say "the chain: rpcpay chain (embedded EVM, a block every ${BLOCK_TIME} s)"
start chain "$RPCPAY" chain --port "$CHAIN_PORT" --block-time "$BLOCK_TIME" \
    --info-file "$WORK/chain.json"
wait_port chain "$CHAIN_PORT"
CHAIN_URL="http://127.0.0.1:$CHAIN_PORT"
for _ in $(seq 100); do [[ -s $WORK/chain.json ]] && break; sleep 0.1; done
head -2 "$WORK/chain.log"
# The development keys: 1 stamper, 2 payer, 3-5 the gateways (they pay gas for claims).
read -r CONTRACT K1 K2 K3 K4 K5 <<<"$("$PY" -c '
import json, sys
info = json.load(open(sys.argv[1]))
print(info["contract"], *(k["secret"] for k in info["keys"][1:6]))
' "$WORK/chain.json")"
keyfile() { (umask 077 && printf '%s\n' "$2" >"$WORK/$1.key"); echo "$WORK/$1.key"; }
STAMPER_KEY=$(keyfile stamper "$K1")
PAYER_KEY=$(keyfile payer "$K2")
GW_KEYS=("$(keyfile gw0 "$K3")" "$(keyfile gw1 "$K4")" "$(keyfile gw2 "$K5")")

say "the stamper: deposit 1 ETH, then rpcpay stamper run"
"$RPCPAY" stamper deposit --chain-url "$CHAIN_URL" --contract "$CONTRACT" \
    --data-dir "$WORK/stamper" --key-file "$STAMPER_KEY" --amount 1000000000000000000
start stamper "$RPCPAY" stamper run --chain-url "$CHAIN_URL" --contract "$CONTRACT" \
    --data-dir "$WORK/stamper" --key-file "$STAMPER_KEY" --bind-port "$STAMPER_PORT" \
    --confirmations "$CONFIRMATIONS" --store-sync normal
wait_port stamper "$STAMPER_PORT"

say "the backend and three gateways with the lottery rail, gossiping to each other"
start backend "$RPCPAY" demo --backend-only "$BACKEND_PORT"
wait_port backend "$BACKEND_PORT"
SERVERS=()
for i in 0 1 2; do
    peers=()
    for j in 0 1 2; do
        [[ $j == "$i" ]] || peers+=(--gossip-peer "http://127.0.0.1:${GW_PORTS[$j]}")
    done
    start "gateway$i" "$RPCPAY" serve --upstream "http://127.0.0.1:$BACKEND_PORT/" \
        --upstream-kind jsonrpc --rpc-bind-port "${GW_PORTS[$i]}" \
        --admin-bind-port "${ADMIN_PORTS[$i]}" --data-dir "$WORK/gw$i" --pow-mode light \
        --verify-threads 1 --lottery-chain-url "$CHAIN_URL" --lottery-contract "$CONTRACT" \
        --lottery-key-file "${GW_KEYS[$i]}" --credit-price-wei "${CREDIT_PRICES[$i]}" \
        --confirmations "$CONFIRMATIONS" "${peers[@]}"
    wait_port "gateway$i" "${GW_PORTS[$i]}"
    echo "gateway $i on 127.0.0.1:${GW_PORTS[$i]}, ${CREDIT_PRICES[$i]} wei a credit"
    SERVERS+=(--server "http://127.0.0.1:${GW_PORTS[$i]},$PER_MINUTE")
done

WALLET=(--wallet-file "$WORK/wallet.json")
PAYER=(--chain-url "$CHAIN_URL" --contract "$CONTRACT" --payer-key-file "$PAYER_KEY"
       --lottery-file "$WORK/lottery.json")
say "the payer: rpcpay wallet lottery-deposit (a 10,000 gwei prize)"
"$RPCPAY" wallet "${WALLET[@]}" lottery-deposit "${PAYER[@]}" --prize 10000000000000 \
    --stamper-url "http://127.0.0.1:$STAMPER_PORT"
# Let the lottery reach the stamper's and the gateways' confirmations.
sleep "$("$PY" -c "print(($CONFIRMATIONS + 1) * $BLOCK_TIME + 0.2)")"

say "rpcpay wallet lottery-pay: $ROUNDS rounds, every $INTERVAL s, to three servers by URL"
"$RPCPAY" wallet "${WALLET[@]}" lottery-pay "${PAYER[@]}" --prize 10000000000000 \
    --stamper-url "http://127.0.0.1:$STAMPER_PORT" --interval "$INTERVAL" --rounds "$ROUNDS" \
    "${SERVERS[@]}" 2>&1

for i in 0 1 2; do
    say "gateway $i: rpcpay payments --admin http://127.0.0.1:${ADMIN_PORTS[$i]}"
    "$RPCPAY" payments --admin "http://127.0.0.1:${ADMIN_PORTS[$i]}"
done

say "rpcpay wallet lottery-status"
"$RPCPAY" wallet "${WALLET[@]}" lottery-status "${PAYER[@]}"
say "done"
