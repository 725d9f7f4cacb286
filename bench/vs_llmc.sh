#!/usr/bin/env bash
# dllm's training step against llm.c's CPU trainer (train_gpt2.c), side by side in one run, on
# the same shape and the same tokens: 12 layers, d 768, 12 heads, vocabulary 4096, batch 4 x 64
# tokens (train_gpt2.c's B and T). llm.c's GPT-2 has a 3072-wide GELU MLP, dllm a 2048-wide
# SwiGLU: the same parameters and matmul FLOPs. dllm trains the AR objective here (causal, as
# GPT-2). Both read the first data shard, as llm.c's uint16 file; llm.c gets a random GPT-2
# checkpoint (build/bench/llmc_files). For 1 and 2 threads, on an idle machine and beside one
# busy process, it prints the median ms of steps 2..10 of each and llm.c / dllm (> 1: dllm is
# faster).
# Usage: bash bench/vs_llmc.sh TRAIN_GPT2 [SHARD]
#   TRAIN_GPT2: a train_gpt2 binary you built from your own llm.c checkout (nothing of llm.c is
#   part of dllm), e.g. cc -Ofast -march=native -fopenmp -DOMP train_gpt2.c -lm -o train_gpt2
set -euo pipefail
cd "$(dirname "$0")/.."
llmc=$(realpath "${1:?usage: bash bench/vs_llmc.sh TRAIN_GPT2 [SHARD]}")
shard=${2:-data/shards/train_000000.bin}  # tokens of data/tokenizer.model (4096)
make -s dllm build/bench/llmc_files
work=$(mktemp -d)
busy_pid=
trap '[ -n "$busy_pid" ] && kill $busy_pid 2>/dev/null; rm -rf "$work"' EXIT

# train_gpt2.c reads fixed paths from its working directory
mkdir -p "$work/llmc/dev/data/tinyshakespeare"
./build/bench/llmc_files model "$work/llmc/gpt2_124M.bin" --layers 12 --d-model 768 \
    --heads 12 --vocab 4096 --seq-len 64
./build/bench/llmc_files data "$shard" "$work/llmc/dev/data/tinyshakespeare/tiny_shakespeare_train.bin"
cp "$work/llmc/dev/data/tinyshakespeare/tiny_shakespeare_train.bin" \
    "$work/llmc/dev/data/tinyshakespeare/tiny_shakespeare_val.bin"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# llm.c: its "step N: ... (took X ms)" lines for steps 2..10; stopped after step 10
llmc_ms() {  # threads
    (cd "$work/llmc" && OMP_NUM_THREADS=$1 timeout 600 "$llmc" 2>&1 || true) |
        awk '/^step [0-9]+: train loss/ { n = $2 + 0; sub(/.*took /, ""); if (n >= 2 && n <= 10)
             print $1 + 0; if (n >= 10) exit }' | median
}

# dllm: the ms of each logged step, steps 2..10
dllm_ms() {  # threads
    rm -rf "$work/run"
    OMP_NUM_THREADS=$1 ./dllm train --data "$work/llmc/dev/data/tinyshakespeare/tiny_shakespeare_train.bin" \
        --tokenizer data/tokenizer.model --objective ar --n-layer 12 --d-model 768 --n-head 12 --d-ff 2048 \
        --seq-len 64 --batch-size 4 --steps 10 --warmup 1 --log-every 1 \
        --eval-every 0 --save-every 0 --run "$work/run" 2>&1 |
        awk '/^step +[0-9]+\/10 \|/ { split($2, s, "/"); if (s[1] + 0 >= 2)
             for (i = 1; i <= NF; i++) if ($(i + 1) == "ms") print $i }' | median
}

echo "| machine | threads | llm.c ms/step | dllm ms/step | llm.c / dllm |"
echo "|---|---|---|---|---|"
for load in idle loaded; do
    if [ $load = loaded ]; then
        sh -c 'while :; do :; done' &
        busy_pid=$!
    fi
    for threads in 1 2; do
        a=$(llmc_ms $threads)
        b=$(dllm_ms $threads)
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
        echo "| $load | $threads | $a | $b | $ratio |"
    done
done
