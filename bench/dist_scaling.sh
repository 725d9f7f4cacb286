#!/usr/bin/env bash
# Data-parallel scaling on the CPU: the same training job (global batch 16 x 128 tokens: two
# micro-batches of 8 per step) as one process on one thread, as 2 ranks under mpirun with one
# thread each, and as one process on two OpenMP threads (the other way to use a second core).
# Prints median (min-max) tokens/s of 5 runs per setting, the settings taking turns, the 2-rank
# scaling efficiency (median tok/s at 2 ranks / 2 x at 1), and the distinct final losses of all
# runs (one value: the ranks and threads must not change it). Times are the training loop's
# (the last step's elapsed_s in log.jsonl), not process start-up. Two models: 4 layers of d 128
# and 6 layers of d 384, trained on data/shards when setup.sh made them, else on bytes of
# tests/fixtures/genesis.txt.
# Run from the project root after `make` (needs mpirun):
#     bash bench/dist_scaling.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

data=data/shards
if [ ! -s data/shards/train_000000.bin ]; then
    head -c 400000 tests/fixtures/genesis.txt > "$work/text.txt"
    data=$work/text.txt
fi

# "seconds final-loss" of one run: how, then the model flags
run_once() {
    local how=$1; shift
    rm -rf "$work/run"
    local cmd=(./dllm train --data "$data" --objective mdm --steps "$steps" --batch-size 8
               --grad-accum 2 --seq-len 128 --eval-every 0 --save-every 0 --log-every 1
               --device cpu --run "$work/run" "$@")
    case $how in
        1x1) OMP_NUM_THREADS=1 "${cmd[@]}" > "$work/out" 2>&1 ;;
        1x2) OMP_NUM_THREADS=2 "${cmd[@]}" > "$work/out" 2>&1 ;;
        2x1) OMP_NUM_THREADS=1 mpirun -np 2 --bind-to core "${cmd[@]}" > "$work/out" 2>&1 ;;
    esac
    local seconds loss
    local last
    last=$(grep '"train"' "$work/run/log.jsonl" | tail -1)
    seconds=$(echo "$last" | sed 's/.*"elapsed_s":\([0-9.e-]*\).*/\1/')
    loss=$(echo "$last" | sed 's/.*"loss":\([0-9.e-]*\).*/\1/')
    echo "$seconds $loss"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# "median (min-max)" tokens/s of a setting's runs
rates() {  # file, tokens
    awk -v t="$2" '{ print t / $1 }' "$1" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.0f (%.0f-%.0f)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

bench_model() {  # label, then the model flags
    local label=$1; shift
    local tokens=$((steps * 16 * 128))
    : > "$work/1x1"; : > "$work/2x1"; : > "$work/1x2"
    for rep in 1 2 3 4 5; do
        for how in 1x1 2x1 1x2; do run_once $how "$@" >> "$work/$how"; done
    done
    local s11 s21 losses
    s11=$(awk '{ print $1 }' "$work/1x1" | median)
    s21=$(awk '{ print $1 }' "$work/2x1" | median)
    losses=$(cat "$work/1x1" "$work/2x1" "$work/1x2" | awk '{ print $2 }' | sort -u | tr '\n' ' ')
    printf "| %s | %s | %s | %s | %.2f | %s |\n" "$label" "$(rates "$work/1x1" $tokens)" \
        "$(rates "$work/2x1" $tokens)" "$(rates "$work/1x2" $tokens)" \
        "$(awk -v a="$s11" -v b="$s21" 'BEGIN { print a / (2 * b) }')" "$losses"
}

echo "| model | 1 process, 1 thread: tok/s median (min-max) | 2 ranks x 1 thread | 1 process, 2 threads | 2-rank efficiency | final losses of all 15 runs |"
echo "|---|---|---|---|---|---|"
bench_model "4 layers, d 128" --n-layer 4 --d-model 128 --n-head 4 --d-ff 352
bench_model "6 layers, d 384" --n-layer 6 --d-model 384 --n-head 6 --d-ff 1024
