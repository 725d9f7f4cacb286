#!/usr/bin/env bash
# What each weight format costs in quality: one small LLaDA-style MDM trained on the KJV shards
# (data/shards, scripts/setup.sh), then evaluated as fp32 (the checkpoint), bf16 (the checkpoint
# exported with --dtype bf16: bf16 weights, exact fp32 arithmetic), bf16x (the same file with
# --weights bf16: the projections' inputs rounded to bf16 too, vdpbf16ps's arithmetic), and in 8-
# and 4-bit blocks (--weights q8 / q4 of the checkpoint: GGUF's Q8_0 / Q4_0 quantisers, inputs
# quantised to 8 bits per block of 32). Two measures:
#   ELBO: `dllm eval` nats per token on the validation shards (WINDOWS windows, MC mask draws
#     each), for SEEDS mask-draw seeds; the same seed draws the same masks for every format, so
#     each format's difference from fp32 is paired: mean and range over the seeds;
#   greedy agreement: `dllm sample` at temperature 0 of PROMPTS lines of the corpus' tail, GEN tokens each
#     (one block, a token per step): the share of generated positions whose token equals fp32's.
# Usage: bash bench/quant_quality.sh [DLLM]   (WORK: where the model is kept)
set -euo pipefail
cd "$(dirname "$0")/.."
dllm=$(realpath "${1:-./dllm}")
work=${WORK:-/tmp/dllm_quant_quality}
steps=${STEPS:-2400}
seeds=${SEEDS:-"1 2 3"}
windows=${WINDOWS:-64}
mc=${MC:-8}
prompts=${PROMPTS:-16}
gen=${GEN:-32}
mkdir -p "$work"

if [ ! -f "$work/run/done" ]; then
    "$dllm" train --data data/shards --steps "$steps" --batch-size 16 --seq-len 128 \
        --n-layer 6 --d-model 256 --n-head 4 --d-ff 704 --eval-every 0 --save-every 0 \
        --device cpu --seed 1 --run "$work/run" > "$work/train.log"
    "$dllm" export "$work/run" --out "$work/bf16" --dtype bf16 > /dev/null
    touch "$work/run/done"
fi
# prompts: the first 8 words of every 40th line of the corpus' last 2000 lines
tail -n 2000 data/corpus/kjv.txt | awk 'NR % 40 == 0 && NF >= 8 { for (i = 1; i <= 8; i++) printf "%s%s", $i, (i < 8 ? " " : "\n") }' |
    head -n "$prompts" > "$work/prompts.txt" || true
[ -s "$work/prompts.txt" ] || { echo "no prompts"; exit 1; }

model_of() { case $1 in bf16*) echo "$work/bf16" ;; *) echo "$work/run" ;; esac; }
weights_of() { case $1 in bf16) echo auto ;; bf16x) echo bf16 ;; *) echo "$1" ;; esac; }

elbo() {  # format seed -> nats/token
    "$dllm" eval --model "$(model_of "$1")" --weights "$(weights_of "$1")" --data data/shards \
        --windows "$windows" --mc "$mc" --seed "$2" --device cpu |
        awk '$2 == "mdm" { print $6 }'
}
greedy() {  # format -> "seq pos token" lines, the final token of every generated position
    "$dllm" sample --model "$(model_of "$1")" --weights "$(weights_of "$1")" \
        --prompt-file "$work/prompts.txt" --gen-length "$gen" --block-length "$gen" \
        --steps "$gen" --temperature 0 --device cpu --trace "$work/trace.$1.jsonl" > /dev/null 2>&1
    grep -o '"seq": [0-9]*, "pos": [0-9]*, "token": [0-9]*' "$work/trace.$1.jsonl" |
        awk '{ gsub(/,/, ""); last[$2 " " $4] = $6 } END { for (k in last) print k, last[k] }' |
        sort -n
}

formats="fp32 bf16 bf16x q8 q4"
for f in $formats; do
    : > "$work/elbo.$f"
    for s in $seeds; do elbo "$f" "$s" >> "$work/elbo.$f"; done
    greedy "$f" > "$work/greedy.$f"
done
printf "%-5s | %-28s | %-30s | %s\n" format "ELBO nats/token: mean (range)" "minus fp32: mean (range)" \
    "greedy tokens equal to fp32's"
for f in $formats; do
    paste "$work/elbo.$f" "$work/elbo.fp32" | awk -v f="$f" -v n="$(wc -l < "$work/greedy.fp32")" \
        -v same="$(join -j 1 <(awk '{ print $1 "_" $2, $3 }' "$work/greedy.$f" | sort) \
                          <(awk '{ print $1 "_" $2, $3 }' "$work/greedy.fp32" | sort) |
                   awk '$2 == $3' | wc -l)" '
        { v[NR] = $1; d[NR] = $1 - $2; sv += $1; sd += $1 - $2
          if (NR == 1 || $1 < vlo) vlo = $1; if (NR == 1 || $1 > vhi) vhi = $1
          if (NR == 1 || d[NR] < dlo) dlo = d[NR]; if (NR == 1 || d[NR] > dhi) dhi = d[NR] }
        END { printf "%-5s | %.4f (%.4f-%.4f)        | %+.4f (%+.4f..%+.4f)      | %d of %d (%.1f%%)\n",
              f, sv / NR, vlo, vhi, sd / NR, dlo, dhi, same, n, 100 * same / n }'
done
