#!/usr/bin/env bash
# Do threads pay? The LLaDA sampler (64 tokens, 2 blocks, 64 steps, batch 2) on a small and a
# larger random model, with 1 and 2 OpenMP threads, on an idle machine and beside one busy
# process, under dllm's default (passive waiting) and under libgomp's own default (active
# spinning, the old behaviour). Prints median seconds of 3 runs and the ratio 2 threads / 1
# thread (< 1: the second thread helps). Run from the project root after `make`:
#     bash bench/threads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
busy_pid=
trap '[ -n "$busy_pid" ] && kill $busy_pid 2>/dev/null; rm -rf "$work"' EXIT

head -c 200000 tests/fixtures/genesis.txt > "$work/text.txt"
make_model() {  # name, then the model flags
    local name=$1; shift
    ./dllm train --data "$work/text.txt" --objective mdm --steps 1 --batch-size 2 --seq-len 128 \
        --eval-every 0 --run "$work/$name" "$@" > /dev/null
}
make_model small --n-layer 4 --d-model 128 --n-head 4 --d-ff 352
make_model large --n-layer 6 --d-model 384 --n-head 6 --d-ff 1024

# median of 3 sampling times (seconds, as dllm reports them)
sample_time() {  # model, threads, wait policy
    for run in 1 2 3; do
        OMP_NUM_THREADS=$2 OMP_WAIT_POLICY=$3 ./dllm sample --model "$work/$1" \
            --prompt "In the beginning" --gen-length 64 --block-length 32 --steps 64 --batch 2 \
            --device cpu 2>&1 >/dev/null | sed -n 's/.*, \([0-9.]*\) s$/\1/p'
    done | sort -n | sed -n 2p
}

echo "| model | machine | waiting | 1 thread (s) | 2 threads (s) | 2 / 1 |"
echo "|---|---|---|---|---|---|"
for load in idle loaded; do
    if [ $load = loaded ]; then
        sh -c 'while :; do :; done' &
        busy_pid=$!
    fi
    for model in small large; do
        for policy in passive active; do
            one=$(sample_time $model 1 $policy)
            two=$(sample_time $model 2 $policy)
            ratio=$(awk -v a="$two" -v b="$one" 'BEGIN { printf "%.2f", a / b }')
            echo "| $model | $load | $policy$([ $policy = passive ] && echo ' (default)') | $one | $two | $ratio |"
        done
    done
done
