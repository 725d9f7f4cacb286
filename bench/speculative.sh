#!/usr/bin/env bash
# Speculative decoding against the target alone, side by side in one run. On the default
# corpus (data/shards, from setup.sh) it trains a target AR model (8 layers, d 256), a 2-layer
# AR drafter (d 128) and an MDM drafter of that same small size (the 2-layer AR adapted to
# diffusion: `train --init --objective mdm`), into runs/spec_bench/ (kept: a second run only
# measures). Then, greedy, for 1, 4 and 16 rows (one prompt; four; four x 4 samples): the
# target alone, the AR drafter and the MDM drafter (a 16-token window) at several draft
# lengths: median seconds of 5 runs, acceptance length (tokens per row per target pass),
# target and draft passes per token, and the speed ratio target alone / speculative (> 1:
# faster), with a check that every output equals the target's own. Run from the project root after `make` and `bash scripts/setup.sh`:
#     bash bench/speculative.sh [target_steps]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-600}
dir=runs/spec_bench
mkdir -p "$dir"
schedule="--batch-size 16 --lr 3e-3 --min-lr 3e-4 --warmup 40 --seq-len 128 --init-std 0.05 \
--eval-every 0 --log-every 100"
train() {  # name, steps, then flags; skipped when its last checkpoint is there
    local name=$1 n=$2; shift 2
    [ -e "$dir/$name/step_$(printf %08d "$n").ckpt" ] || ./dllm train --data data/shards \
        --run "$dir/$name" --steps "$n" $schedule "$@" > "$dir/$name.log"
}
train target "$steps" --objective ar --n-layer 8 --d-model 256 --n-head 4 --d-ff 704 --seed 1
train draft_ar "$steps" --objective ar --n-layer 2 --d-model 128 --n-head 2 --d-ff 352 --seed 2
train draft_mdm $((steps / 2)) --init "$dir/draft_ar" --objective mdm --seed 3

prompts=$dir/prompts.txt
printf '%s\n' "And God said," "Q: What is the answer?" "The LORD is my shepherd;" \
    "It was a dark and stormy night" > "$prompts"
head -n 1 "$prompts" > "$dir/prompt1.txt"
gen=96
# median of 5: seconds, an md5 of the text, the summary line (spaces as ~)
run() {  # prompt file, samples per prompt, then sample flags
    local file=$1 batch=$2; shift 2
    for i in 1 2 3 4 5; do
        ./dllm sample --model "$dir/target" --prompt-file "$file" --gen-length $gen \
            --temperature 0 --batch "$batch" --device cpu "$@" 2> "$dir/err.txt" > "$dir/out.txt"
        echo "$(sed -n 's/.*, \([0-9.]*\) s$/\1/p' "$dir/err.txt") $(md5sum < "$dir/out.txt" | cut -c1-8) $(tail -n 1 "$dir/err.txt" | tr ' ' '~')"
    done | sort -n | sed -n 3p
}
echo "| rows | drafter | draft length | draft steps | s | acceptance length | target passes/token | draft passes/token | alone / speculative | same output |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for rows in 1 4 16; do
    file=$prompts batch=$((rows / 4))
    [ "$rows" = 1 ] && file=$dir/prompt1.txt batch=1
    read -r t0 h0 _ <<< "$(run "$file" "$batch")"
    echo "| $rows | none (target alone) | - | - | $t0 | 1.00 | 1.000 | 0 | 1.00 | - |"
    for spec in "draft_ar 2 1" "draft_ar 4 1" "draft_ar 6 1" "draft_mdm 4 1" "draft_mdm 8 2"; do
        read -r name k s <<< "$spec"
        read -r t h line <<< "$(run "$file" "$batch" --draft "$dir/$name" --draft-length "$k" \
            --draft-steps "$s" --draft-context 16)"
        line=${line//\~/ }
        acc=$(sed -n 's/.*acceptance length \([0-9.]*\).*/\1/p' <<< "$line")
        tpt=$(sed -n 's/.*target passes\/token \([0-9.]*\).*/\1/p' <<< "$line")
        dpt=$(sed -n 's/.*draft passes\/token \([0-9.]*\).*/\1/p' <<< "$line")
        same=$([ "$h" = "$h0" ] && echo yes || echo NO)
        steps_cell=$([ "$name" = draft_ar ] && echo - || echo "$s")
        echo "| $rows | ${name#draft_} | $k | $steps_cell | $t | $acc | $tpt | $dpt | $(awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.2f", a / b }') | $same |"
    done
done
