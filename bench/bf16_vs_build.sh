#!/usr/bin/env bash
# Sampling from bf16 weights (a Hugging Face directory exported --dtype bf16, read as it is),
# two builds side by side: LLaDA's schedule, 64 tokens in 2 blocks of 32, 16 steps, greedy, at
# 1 and 2 threads, on a small (8 layers, d 512, 30M params) and a medium (16 layers, d 1024,
# 214M) random model of the project's tokenizer. Runs alternate between the builds; median of
# 5 seconds and peak RSS (MB) per build, with the runs' range. Prints old / new of the medians
# (> 1: the new build is faster).
# Usage: bash bench/bf16_vs_build.sh OLD_DLLM [NEW_DLLM]   (needs data/shards: scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "${1:?usage: bash bench/bf16_vs_build.sh OLD_DLLM [NEW_DLLM]}")
new=$(realpath "${2:-./dllm}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=${RUNS:-5}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
spread() { sort -n | awk '{ v[NR] = $1 } END { printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
make_model() {  # name, layers, d_model, heads, d_ff
    "$new" train --data data/shards --steps 1 --batch-size 1 --n-layer "$2" --d-model "$3" \
        --n-head "$4" --d-ff "$5" --seq-len 256 --save-every 1 --eval-every 0 --device cpu \
        --run "$work/$1-run" > /dev/null 2>&1
    "$new" export "$work/$1-run" --out "$work/$1" --dtype bf16 > /dev/null
}
one_run() {  # binary, model dir, threads: "seconds rss_mb"
    OMP_NUM_THREADS=$3 /usr/bin/time -f "rss %M" "$1" sample --model "$2" \
        --prompt "And God said," --gen-length 64 --block-length 32 --steps 16 \
        --temperature 0 --device cpu 2>&1 >/dev/null |
        awk '/generated in/ { s = $(NF - 1) } /^rss/ { r = $2 / 1024 } END { printf "%s %.0f\n", s, r }'
}

make_model small 8 512 8 1408
make_model medium 16 1024 16 2816
printf "%-7s %7s | %9s %9s | %7s %7s | %6s\n" model threads old_s new_s old_MB new_MB old/new
for m in small medium; do
    for t in 1 2; do
        : > "$work/old.txt"
        : > "$work/new.txt"
        for _ in $(seq "$runs"); do
            one_run "$old" "$work/$m" "$t" >> "$work/old.txt"
            one_run "$new" "$work/$m" "$t" >> "$work/new.txt"
        done
        os=$(cut -d' ' -f1 "$work/old.txt" | median); ns=$(cut -d' ' -f1 "$work/new.txt" | median)
        printf "%-7s %7s | %s | %s | %s | %s | %.2f\n" "$m" "$t" \
            "$(cut -d' ' -f1 "$work/old.txt" | spread)" "$(cut -d' ' -f1 "$work/new.txt" | spread)" \
            "$(cut -d' ' -f2 "$work/old.txt" | spread)" "$(cut -d' ' -f2 "$work/new.txt" | spread)" \
            "$(echo "$os / $ns" | bc -l)"
    done
done
