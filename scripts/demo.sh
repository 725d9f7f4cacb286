#!/usr/bin/env bash
# The main job, in about 5 minutes on 2 CPU cores:
#   0. set everything up (scripts/setup.sh: packages, ./dllm, corpus, tokenizer, shards)
#   1. a masked-diffusion model of the default corpus (KJV + World English Bible + fortunes, a
#      4096-token BPE) the way the field now makes them: an AR model first, then adapted to
#      diffusion (bidirectional attention, Dream's logit shift), and text from it by parallel
#      denoising, two tokens per forward pass; an AR sample beside it
#   2. what diffusion decoding buys where it works: a 4x4 sudoku model (6 holes, the answer
#      the holes alone) decoded one token per step, several tokens per step and by confidence
#      threshold, against an AR model trained on the same puzzles for the same steps (a two-run
#      sweep, both runs side by side)
# Each part prints how long it took. Usage: bash scripts/demo.sh [steps]  (each of AR and
# adaptation; default 300)
# Why adaptation: at this size an MDM trained from scratch sits near the unigram loss for
# most of a CPU run (scripts/plans/mdm_recipe.md: 5.99-6.09 nats/token after 800 steps);
# AR 400 steps + adaptation 400 steps reached 5.15 ± 0.05 at the same tokens, the AR part
# counted (three seeds: docs/examples/mdm_adapt).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
start=$SECONDS
lap_start=$SECONDS
laps=()
mmss() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
lap() {  # name: records the time since the previous lap
    laps+=("$(printf '%-44s %s' "$1" "$(mmss $((SECONDS - lap_start)))")")
    echo "   ($1: $(mmss $((SECONDS - lap_start))))"
    lap_start=$SECONDS
}

bash scripts/setup.sh
lap "setup"
rm -rf runs/demo  # the demo's own directory: a fresh run each time
mkdir -p runs/demo

model="--n-layer 4 --d-model 128 --n-head 4 --d-ff 352 --seq-len 128 --init-std 0.05"
schedule="--batch-size 16 --lr 3e-3 --min-lr 3e-4 --warmup 40 --seed 2 --log-every 100"
echo "== 1. a diffusion model of the corpus: AR for $steps steps, then adapted for $steps"
./dllm train --data data/shards --objective ar --steps "$steps" $model $schedule \
    --eval-every "$steps" --run runs/demo/ar
./dllm train --data data/shards --init runs/demo/ar --objective mdm --steps "$steps" \
    $schedule --eval-every "$steps" --run runs/demo/mdm
lap "1. training AR, then adapting it to diffusion"
prompt="And God said,"
# One block of 48 [MASK]s filled in 24 passes (two tokens per pass), positions unmasked in
# random order: with low-confidence order a model this small commits its safest tokens
# first ("said", quotes) and repeats them.
echo "== diffusion: 48 tokens in 24 forward passes (random order, temperature 0.9), 3 samples"
./dllm sample --model runs/demo/mdm --prompt "$prompt" --gen-length 48 --block-length 48 \
    --steps 24 --remasking random --temperature 0.9 --batch 3 --trace runs/demo/trace.jsonl
echo "== the AR model it started from: 48 tokens, one per pass"
./dllm sample --model runs/demo/ar --prompt "$prompt" --gen-length 48 --temperature 0.9
./dllm plot runs/demo/ar runs/demo/mdm --out runs/demo/loss.png
lap "   sampling"

echo "== 2. parallel decoding where it works: 4x4 sudoku, MDM against AR"
./dllm task sudoku --holes 6 --train 20000 --answer holes --out runs/demo/sudoku/task
cat > runs/demo/sudoku/PLAN.md <<'EOF'
# 4x4 sudoku: diffusion decoding against AR

Both objectives fine-tune the same small model from scratch on the same 20,000 puzzles (6 of
16 cells blank) for the same steps; the report scores greedy answers to 200 held-out puzzles
from solution grids never trained on. The answer is the 6 holes alone (the given cells score
nothing), and rows end with it (seq-len 36: the MDM decodes no padding). One seed: a demo;
scripts/plans/sudoku.md is the three-seed comparison on harder puzzles (10 holes).

## Base

```
--sft runs/demo/sudoku/task/train.jsonl --tokenizer bytes --seq-len 36 --n-layer 3
--d-model 96 --n-head 4 --d-ff 256 --batch-size 32 --lr 3e-3 --warmup 50 --eval-every 0
--log-every 500
```

## Grid

- objective: mdm, ar

## Budget

- steps: 1000

## Report

- metric: exact
- exact: runs/demo/sudoku/task/test.jsonl
EOF
./dllm sweep runs/demo/sudoku/PLAN.md --dir runs/demo/sudoku --jobs 2
lap "2. sudoku: two models trained and scored"
echo
awk '/^## MDM sampler/ { on = 1; print; next } on && /^\|/ { print } on && /^## / { exit }' \
    runs/demo/sudoku/REPORT.md
echo "(NFE / token: forward passes per generated token, the EOS not counted; below 1, several"
echo " tokens were committed per pass. Full report: runs/demo/sudoku/REPORT.md)"

echo
echo "== time taken"
for l in "${laps[@]}"; do echo "   $l"; done
echo "   $(printf '%-44s %s' total "$(mmss $((SECONDS - start)))")"
echo "(watch it denoise: ./dllm sample --model runs/demo/mdm --prompt \"$prompt\" --gen-length 48 --block-length 48 --steps 24 --remasking random --temperature 0.9 --show 1)"
