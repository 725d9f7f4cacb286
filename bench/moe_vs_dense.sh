#!/usr/bin/env bash
# What a mixture of experts costs: training and evaluation throughput of an MoE (8 experts of
# width 256, 2 picked per token: an active MLP of width 512) against a dense model of its
# active size (MLP width 512) and one of its total size (MLP width 2048: the same MLP weights),
# all 4 layers of d 256, MDM, 8 x 128 tokens per step, one thread. 5 runs of each, the three
# models taking turns; median (min-max) tokens/s of the training loop (the last step's
# elapsed_s in log.jsonl) and of `dllm eval` (32 validation windows x 4 mask draws x 128 tokens
# of forward passes over the whole command's time, loading included),
# trained on data/shards when setup.sh made them, else on bytes of tests/fixtures/genesis.txt.
# Run from the project root after `make`:
#     [DLLM=path/to/dllm] bash bench/moe_vs_dense.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
dllm=${DLLM:-./dllm}  # a copy keeps the bench apart from rebuilds
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

data=data/shards
if [ ! -s data/shards/train_000000.bin ]; then
    head -c 400000 tests/fixtures/genesis.txt > "$work/text.txt"
    data=$work/text.txt
fi

flags_of() {
    case $1 in
        moe) echo --n-experts 8 --n-active 2 --d-expert 256 --d-ff 256 ;;
        active) echo --d-ff 512 ;;
        total) echo --d-ff 2048 ;;
    esac
}

# "train-seconds eval-tokens/s params" of one run of model $1
run_once() {
    rm -rf "$work/run"
    # shellcheck disable=SC2046
    "$dllm" train --data "$data" --objective mdm --steps "$steps" --batch-size 8 --seq-len 128 \
        --n-layer 4 --d-model 256 --n-head 4 $(flags_of "$1") --eval-every 0 --log-every 1 \
        --device cpu --run "$work/run" > "$work/out" 2>&1
    local last seconds params rate
    last=$(grep '"train"' "$work/run/log.jsonl" | tail -1)
    seconds=$(echo "$last" | sed 's/.*"elapsed_s":\([0-9.e-]*\).*/\1/')
    params=$(grep -o '^params: [0-9]*\( ([0-9]* active per token)\)\?' "$work/out" |
             sed 's/params: //; s/ active per token//; s/[()]//g; s/ /\//')
    local t0 t1
    t0=$(date +%s.%N)
    "$dllm" eval --model "$work/run" --data "$data" --windows 32 --mc 4 --device cpu \
        > "$work/eval" 2>&1
    t1=$(date +%s.%N)
    rate=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print 32 * 4 * 128 / (b - a) }')
    echo "$seconds $rate $params"
}

rates() {  # file: median (min-max) of column $2 turned into tokens/s by $3 (0: as is)
    awk -v c="$2" -v t="$3" '{ print (t > 0 ? t / $c : $c) }' "$1" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.0f (%.0f-%.0f)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

tokens=$((steps * 8 * 128))
for m in moe active total; do : > "$work/$m"; done
for rep in 1 2 3 4 5; do
    for m in moe active total; do run_once $m >> "$work/$m"; done
done
echo "| model | params (active) | train tok/s median (min-max) | eval tok/s median (min-max) |"
echo "|---|---|---|---|"
for m in moe active total; do
    label=$(case $m in moe) echo "MoE: 8 experts x 256, 2 active" ;;
        active) echo "dense, MLP 512 (the MoE's active size)" ;;
        total) echo "dense, MLP 2048 (the MoE's total size)" ;; esac)
    printf "| %s | %s | %s | %s |\n" "$label" "$(head -1 "$work/$m" | awk '{ print $3 }')" \
        "$(rates "$work/$m" 1 $tokens)" "$(rates "$work/$m" 2 0)"
done
