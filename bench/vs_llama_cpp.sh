#!/usr/bin/env bash
# dllm against llama.cpp's diffusion example on the same GGUF files: LLaDA-architecture random
# models (trained one step) of a 32k byte-level BPE tokenizer (bench/bench_tokenizer.py, GGUF's
# llama-bpe split), small (8 layers, d 512) and medium (24 layers, d 1024), written as BF16 GGUF
# by scripts/make_gguf_fixtures.py --convert, then quantised by llama.cpp's own llama-quantize
# --pure to Q8_0 and Q4_0 (every matrix in the type). The same 34-token prompt, greedy, blocks of
# 32, 8 denoising passes a block, at 1 and 2 threads; the tools alternate, RUNS (5) runs each,
# medians. dllm reads each file as it is stored (--weights auto: BF16 as bf16 weights with exact
# fp32 arithmetic, Q8_0 and Q4_0 in its 8- and 4-bit blocks with inputs quantised to 8 bits per
# block, as llama.cpp does), and the BF16 file again as bf16x (--weights bf16: inputs rounded to
# bf16 too, llama.cpp's arithmetic for BF16). dllm: 64 tokens in 2 blocks, 16 passes over the
# 98 positions. llama.cpp: -ub 96 (its
# blocks count the prompt: 96 / 32 = 3 blocks, 24 passes, the last block past the end), over 96
# positions. Reported: milliseconds per denoising pass (dllm: the sampler's seconds / 16;
# llama.cpp: its "time per step"), wall seconds of the whole command (loading included) and
# peak RSS.
# LLAMA_BIN: a directory with llama-diffusion-cli and llama-quantize built from a copy of
# llama.cpp's source in an ignored folder (never committed). Models are kept in WORK.
# Usage: PYTHON=python-with-tokenizers-gguf-torch bash bench/vs_llama_cpp.sh LLAMA_BIN [DLLM]
# (RUNS, TYPES: a subset of "bf16 bf16x q8_0 q4_0", WORK)
set -euo pipefail
cd "$(dirname "$0")/.."
llama=$(realpath "${1:?usage: bash bench/vs_llama_cpp.sh LLAMA_BIN [DLLM]}")
dllm=$(realpath "${2:-./dllm}")
py=${PYTHON:-python3}
work=${WORK:-/tmp/dllm_vs_llama_cpp}
runs=${RUNS:-5}
types=${TYPES:-"bf16 bf16x q8_0 q4_0"}
prompt="And God said, Let there be light: and there was light. And God saw the light, that it was good: and God divided the light from the darkness."
mkdir -p "$work"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
spread() { sort -n | awk '{ v[NR] = $1 } END { printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
make_models() {
    [ -f "$work/tok/tokenizer.json" ] ||
        "$py" bench/bench_tokenizer.py data/corpus/kjv.txt,data/corpus/web.txt,data/corpus/fortunes.txt \
            "$work/tok" 32000
    [ -f "$work/shards/train_000000.bin" ] ||
        "$dllm" prepare --tokenizer "$work/tok" --input data/corpus/kjv.txt --out "$work/shards" > /dev/null
    for spec in "small 8 512 8 1408" "medium 24 1024 16 2816"; do
        set -- $spec
        [ -f "$work/$1.q4_0.gguf" ] && continue
        "$dllm" train --data "$work/shards" --steps 1 --batch-size 1 --n-layer "$2" --d-model "$3" \
            --n-head "$4" --d-ff "$5" --seq-len 256 --save-every 1 --eval-every 0 --device cpu \
            --run "$work/$1-run" > /dev/null
        rm -rf "$work/$1-hf"
        "$dllm" export "$work/$1-run" --out "$work/$1-hf" --dtype bf16 > /dev/null
        "$py" scripts/make_gguf_fixtures.py --convert "$work/$1-hf" "$work/$1.bf16.gguf" BF16
        for q in Q8_0 Q4_0; do
            "$llama/llama-quantize" --pure "$work/$1.bf16.gguf" "$work/$1.${q,,}.gguf" "$q" \
                > "$work/quantize.log" 2>&1
        done
    done
}
one_dllm() {  # file, threads, --weights: "ms_per_pass wall_s rss_mb"
    OMP_NUM_THREADS=$2 /usr/bin/time -f "time %e %M" "$dllm" sample --model "$1" \
        --prompt "$prompt" --gen-length 64 --block-length 32 --steps 16 --temperature 0 \
        --device cpu --weights "$3" 2>&1 >/dev/null |
        awk '/generated in/ { ms = $(NF - 1) * 1000 / 16 } /^time/ { w = $2; r = $3 / 1024 }
             END { printf "%.1f %s %.0f\n", ms, w, r }'
}
one_llama() {  # file, threads
    /usr/bin/time -f "time %e %M" "$llama/llama-diffusion-cli" -m "$1" -p "$prompt" -ub 96 -c 96 \
        -b 96 --diffusion-block-length 32 --diffusion-steps 24 --temp 0 -t "$2" -tb "$2" \
        2>&1 >/dev/null |
        awk '/time per step/ { sub(/ms,/, "", $7); ms = $7 } /^time/ { w = $2; r = $3 / 1024 }
             END { printf "%.1f %s %.0f\n", ms, w, r }'
}

make_models
printf "%-7s %-5s %3s | %7s %7s %6s | %7s %7s | %7s %7s\n" model type thr dllm_ms llama_ms \
    ratio dllm_s llama_s dllm_MB llama_MB
for m in small medium; do
    for q in $types; do
        file=$work/$m.${q%x}.gguf weights=auto
        [ "$q" = bf16x ] && weights=bf16
        for t in 1 2; do
            : > "$work/d.txt"
            : > "$work/l.txt"
            for _ in $(seq "$runs"); do
                one_dllm "$file" "$t" "$weights" >> "$work/d.txt"
                one_llama "$file" "$t" >> "$work/l.txt"
            done
            col() { cut -d' ' -f"$2" "$work/$1.txt" | median; }
            range() { cut -d' ' -f"$2" "$work/$1.txt" | spread; }
            printf "%-7s %-5s %3s | %s | %s | %.2f | %s | %s | %s | %s\n" "$m" "$q" "$t" \
                "$(range d 1)" "$(range l 1)" "$(echo "$(col l 1) / $(col d 1)" | bc -l)" \
                "$(range d 2)" "$(range l 2)" "$(range d 3)" "$(range l 3)"
        done
    done
done
