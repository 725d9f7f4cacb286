#!/usr/bin/env bash
# Load figures for `dllm serve` on this machine: starts the server on MODEL (extra server flags
# after it), then for 1, 4 and 16 concurrent streaming clients runs build/bench/serve_load for
# SECONDS each and prints its table rows. Run from the project root after `make`:
#     [EXTRA='"steps": 16'] bash bench/serve_load.sh MODEL [SECONDS] [-- server flags]
# (EXTRA: more fields for every request body)
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 seconds=${2:-10}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
make -s build/bench/serve_load
out=$(mktemp)
./dllm serve --model "$model" --port 0 --log /dev/null "$@" > "$out" &
server=$!
trap 'kill -INT $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q http "$out" && break; sleep 0.1; done
port=$(sed -n 's|.*127.0.0.1:\([0-9]*\)/.*|\1|p' "$out")
head -n 1 "$out"
for clients in 1 4 16; do
    ./build/bench/serve_load --port "$port" --clients "$clients" --seconds "$seconds" \
        --max-tokens 32 ${EXTRA:+--extra "$EXTRA"} | { [ "$clients" = 1 ] && cat || tail -n 1; }
done
