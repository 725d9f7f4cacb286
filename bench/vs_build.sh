#!/usr/bin/env bash
# Two builds of dllm side by side in one run: the sampler (LLaDA's schedule, 64 tokens in 2
# blocks of 32, 64 steps, greedy; median of 5) and a training step (batch 16 x 128 tokens, median of steps
# 2..6) on the demo's model shape (4 layers, d 128) and data, with 1 and 2 threads. Each build
# makes its own model with the same flags and seed (checkpoint versions differ between
# builds). Prints seconds / ms and old / new (> 1: the new build is faster).
# Usage: bash bench/vs_build.sh OLD_DLLM [NEW_DLLM]   e.g. a `make CUDA=0 dllm` of an old commit
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "${1:?usage: bash bench/vs_build.sh OLD_DLLM [NEW_DLLM]}")
new=$(realpath "${2:-./dllm}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model="--n-layer 4 --d-model 128 --n-head 4 --d-ff 352 --seq-len 128"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
sample_s() {  # binary, run dir, threads
    for run in 1 2 3 4 5; do
        OMP_NUM_THREADS=$3 "$1" sample --model "$2" --prompt "And God said," --gen-length 64 \
            --block-length 32 --steps 64 --temperature 0 --device cpu 2>&1 >/dev/null |
            sed -n 's/.*, \([0-9.]*\) s$/\1/p'
    done | median
}
step_ms() {  # binary, threads
    rm -rf "$work/steps"
    OMP_NUM_THREADS=$2 "$1" train --data data/shards --steps 6 --batch-size 16 $model \
        --log-every 1 --eval-every 0 --save-every 0 --device cpu --run "$work/steps" 2>&1 |
        awk '/^step +[0-9]+\/6 \|/ { split($2, s, "/"); if (s[1] + 0 >= 2)
             for (i = 1; i <= NF; i++) if ($(i + 1) == "ms") print $i }' | median
}
for b in old new; do
    bin=${!b}
    "$bin" train --data data/shards --steps 1 --batch-size 2 $model --eval-every 0 \
        --device cpu --run "$work/$b" > /dev/null
done

echo "| job | threads | old | new | old / new |"
echo "|---|---|---|---|---|"
for threads in 1 2; do
    a=$(sample_s "$old" "$work/old" $threads)
    b=$(sample_s "$new" "$work/new" $threads)
    echo "| sample, 64 tokens, 64 steps (s) | $threads | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }') |"
    a=$(step_ms "$old" $threads)
    b=$(step_ms "$new" $threads)
    echo "| train step, 16 x 128 tokens (ms) | $threads | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }') |"
done
