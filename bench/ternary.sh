#!/usr/bin/env bash
# Packed ternary against fp32 sampling on the CPU, the same model size side by side in one run.
# For each size, an fp32 model and a ternary one (--weights ternary) of the same shape; the
# ternary one sampled as trained (the QAT model: fp32 matmuls over ternarised weights) and as
# its packed export (dllm export --format ternary: 2-bit weights, integer matmuls). Samplers:
# LLaDA's (64 tokens, blocks of 32, 64 steps: passes over ~70 rows) on MDMs, and AR with its KV
# cache (64 tokens: passes over 1 row per sequence) on AR models; batch 2, 1 and 2 threads.
# Prints the median of 3 runs in ms per forward pass and the ratio fp32 / packed (> 1: packed
# is faster). Sizes: the two of scripts/plans/ternary.md, taken from its sweep when it has run
# (sweeps/ternary), and a larger one (12 layers, d 768) made here with one training step
# (speed does not depend on what the weights learned). Run from the project root after make
# and scripts/setup.sh:
#     bash bench/ternary.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=data/shards
sweep=sweeps/ternary/runs

one_step() {  # run name, objective, weights, model flags...
    local name=$1 objective=$2 weights=$3; shift 3
    ./dllm train --data "$data" --objective "$objective" --weights "$weights" --steps 1 \
        --batch-size 2 --seq-len 128 --eval-every 0 --run "$work/$name" "$@" > /dev/null
}
# models: $work/<size>-<objective>-{fp32,tern} (run directories) and .tern (packed)
for objective in ar mdm; do
    for size in s m; do
        for w in fp32 tern; do
            if [ -d "$sweep/$objective-$size-$w" ]; then
                ln -s "$PWD/$sweep/$objective-$size-$w" "$work/$size-$objective-$w"
            elif [ $size = s ]; then
                one_step "$size-$objective-$w" $objective ${w/tern/ternary} --n-layer 4 \
                    --d-model 128 --n-head 4 --d-ff 352
            else
                one_step "$size-$objective-$w" $objective ${w/tern/ternary} --n-layer 6 \
                    --d-model 256 --n-head 4 --d-ff 704
            fi
        done
    done
    for w in fp32 ternary; do
        one_step "l-$objective-${w/ternary/tern}" $objective $w --n-layer 12 --d-model 768 \
            --n-head 12 --d-ff 2048
    done
    for size in s m l; do
        ./dllm export "$work/$size-$objective-tern" --out "$work/$size-$objective.tern" \
            --format ternary | sed "s|$work/||g" >> "$work/exports.txt"
    done
done

# median of 3 runs, in ms per forward pass (dllm prints passes and seconds)
ms_per_pass() {  # model, threads
    local extra="--gen-length 64 --block-length 32 --steps 64"
    case $1 in *-ar-*|*-ar.tern) extra="--gen-length 64" ;; esac
    for run in 1 2 3; do
        OMP_NUM_THREADS=$2 ./dllm sample --model "$1" --prompt "In the beginning" $extra \
            --batch 2 --device cpu 2>&1 >/dev/null |
            sed -n 's/.* \([0-9]*\) forward passes.*, \([0-9.]*\) s$/\1 \2/p' |
            awk '{ printf "%.3f\n", 1000 * $2 / $1 }'
    done | sort -n | sed -n 2p
}

echo "| model | sampler | threads | fp32 ms/pass | ternary QAT ms/pass | packed ms/pass | fp32 / packed |"
echo "|---|---|---|---|---|---|---|"
for size in s m l; do
    case $size in s) shape="4 x 128" ;; m) shape="6 x 256" ;; l) shape="12 x 768" ;; esac
    for objective in mdm ar; do
        sampler=$([ $objective = mdm ] && echo "LLaDA, 64 steps" || echo "AR, KV cache")
        for threads in 1 2; do
            fp=$(ms_per_pass "$work/$size-$objective-fp32" $threads)
            qat=$(ms_per_pass "$work/$size-$objective-tern" $threads)
            packed=$(ms_per_pass "$work/$size-$objective.tern" $threads)
            ratio=$(awk -v a="$fp" -v b="$packed" 'BEGIN { printf "%.2f", a / b }')
            echo "| $shape $objective | $sampler | $threads | $fp | $qat | $packed | $ratio |"
        done
    done
done
cat "$work/exports.txt"
