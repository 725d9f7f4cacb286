#!/usr/bin/env bash
# The main job, for now: train a small masked-diffusion model and its AR baseline on the same
# English text (the license texts every Debian system ships in /usr/share/common-licenses)
# for a few CPU minutes, then generate from both: the MDM by parallel denoising (LLaDA's
# schedule, then threshold decoding), the AR model token by token.
# Usage: bash scripts/demo.sh [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-600}
mkdir -p runs/demo
text=runs/demo/text.txt
if [ ! -s "$text" ]; then
    cat /usr/share/common-licenses/{GPL-3,LGPL-3,Apache-2.0,MPL-2.0,GFDL-1.3,Artistic} > "$text.tmp"
    mv "$text.tmp" "$text"
fi
echo "demo: $(wc -c < "$text") bytes of text in $text"
common=(--data "$text" --steps "$steps" --warmup 30 --lr 3e-3 --min-lr 3e-4 --batch-size 32
        --seq-len 64 --log-every 50 --eval-every 200)
echo "== training the masked-diffusion model (MDM)"
./dllm train "${common[@]}" --objective mdm --out runs/demo/mdm.ckpt
echo "== training the autoregressive baseline (AR)"
./dllm train "${common[@]}" --objective ar --out runs/demo/ar.ckpt

prompt="the Program"
echo "== MDM, LLaDA sampler: 48 tokens in 3 blocks, 48 steps (trace: runs/demo/trace.jsonl)"
./dllm sample --model runs/demo/mdm.ckpt --prompt "$prompt" --gen-length 48 --block-length 16 \
    --steps 48 --trace runs/demo/trace.jsonl
echo "== MDM, LLaDA sampler with temperature 1 and random remasking"
./dllm sample --model runs/demo/mdm.ckpt --prompt "$prompt" --gen-length 48 --block-length 16 \
    --steps 48 --temperature 1 --remasking random
echo "== MDM, threshold decoding (0.9) with the dual block cache"
./dllm sample --model runs/demo/mdm.ckpt --prompt "$prompt" --gen-length 48 --block-length 16 \
    --threshold 0.9 --cache dual
echo "== AR baseline, greedy"
./dllm sample --model runs/demo/ar.ckpt --prompt "$prompt" --gen-length 48
echo "(watch the denoising: ./dllm sample --model runs/demo/mdm.ckpt --prompt \"$prompt\" --show 1)"
