#!/usr/bin/env bash
# The main job, for now: train a small masked-diffusion model and its AR baseline on the same
# English text (the license texts every Debian system ships in /usr/share/common-licenses)
# for a few CPU minutes, and print both loss curves. Usage: bash scripts/demo.sh [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
mkdir -p runs/demo
text=runs/demo/text.txt
if [ ! -s "$text" ]; then
    cat /usr/share/common-licenses/{GPL-3,LGPL-3,Apache-2.0,MPL-2.0,GFDL-1.3,Artistic} > "$text.tmp"
    mv "$text.tmp" "$text"
fi
echo "demo: $(wc -c < "$text") bytes of text in $text"
common=(--data "$text" --steps "$steps" --warmup 30 --lr 2e-3 --min-lr 2e-4 --batch-size 16
        --log-every 25 --eval-every 100)
echo "== masked diffusion (MDM)"
./dllm train "${common[@]}" --objective mdm --out runs/demo/mdm.ckpt
echo "== autoregressive baseline (AR)"
./dllm train "${common[@]}" --objective ar --out runs/demo/ar.ckpt
