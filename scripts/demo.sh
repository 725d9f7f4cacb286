#!/usr/bin/env bash
# The main job: set everything up (scripts/setup.sh), train a small masked-diffusion model on
# the default corpus (KJV + World English Bible + fortunes, a 4096-token BPE) for a few
# minutes, then generate text from it by parallel denoising: LLaDA's reference sampler, then
# threshold decoding with the dual block cache.
# Usage: bash scripts/demo.sh [steps]      (800 steps: about 5 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-800}
bash scripts/setup.sh
rm -rf runs/demo  # the demo's own run directory: a fresh run each time
mkdir -p runs/demo

echo "== training a masked-diffusion model on data/shards ($steps steps)"
./dllm train --data data/shards --objective mdm --steps "$steps" --warmup 40 --lr 3e-3 \
    --min-lr 3e-4 --batch-size 16 --seq-len 128 --n-layer 4 --d-model 128 --n-head 4 \
    --d-ff 352 --log-every 50 --eval-every 200 --run runs/demo/mdm

prompt="And God said,"
# Temperature 0.8: after only a few CPU minutes greedy decoding collapses onto the most frequent
# token (",") everywhere; sampling shows what the model has learned.
echo "== LLaDA sampler: 64 tokens in 2 blocks of 32, 64 steps, low-confidence remasking, 3 samples"
./dllm sample --model runs/demo/mdm --prompt "$prompt" --gen-length 64 --block-length 32 \
    --steps 64 --temperature 0.8 --batch 3 --trace runs/demo/trace.jsonl
echo "== threshold decoding (0.9) with the dual block cache"
./dllm sample --model runs/demo/mdm --prompt "$prompt" --gen-length 64 --block-length 32 \
    --threshold 0.9 --cache dual --temperature 0.8
./dllm plot runs/demo/mdm --out runs/demo/loss.png
echo "(watch it denoise: ./dllm sample --model runs/demo/mdm --prompt \"$prompt\" --temperature 0.8 --show 1)"
