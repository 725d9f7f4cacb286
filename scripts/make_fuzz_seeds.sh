#!/usr/bin/env bash
# Regenerates the checkpoint fuzzer's seeds (tests/fuzz/corpus/fuzz_checkpoint): one-step runs
# of a tiny model at the current checkpoint version, with the byte tokenizer, with a Hugging Face
# tokenizer and grouped-query attention, as block diffusion, as LoRA adapters, as a mixture of
# experts, and a ternary
# one packed (dllm export --format ternary: checkpoint_load reads those too). Run it
# whenever the checkpoint header changes (test_checkpoint fails while a seed no longer loads).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./dllm ] || make dllm
out=tests/fuzz/corpus/fuzz_checkpoint
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
text=tests/fixtures/genesis.txt
tiny=(--steps 1 --n-layer 1 --n-head 2 --d-model 8 --d-ff 16 --seq-len 16 --batch-size 2
      --eval-every 0 --device cpu)
train() { ./dllm train "$@" > /dev/null; }
train --data "$text" "${tiny[@]}" --run "$tmp/bytes"
train --data "$text" "${tiny[@]}" --objective bd3 --block-size 4 --run "$tmp/bd3"
./dllm prepare --tokenizer tests/fixtures/hf_models/llama --input "$text" --out "$tmp/shards" \
    > /dev/null
train --data "$tmp/shards" "${tiny[@]}" --n-kv-head 1 --run "$tmp/hf"
train --data "$text" --init "$tmp/bytes" --lora-rank 2 --steps 1 --batch-size 2 \
    --eval-every 0 --device cpu --run "$tmp/lora"
train --data "$text" "${tiny[@]}" --weights ternary --run "$tmp/tern"
train --data "$text" "${tiny[@]}" --n-layer 2 --n-experts 4 --n-active 2 --d-expert 8 --d-shared 4 \
    --dense-layers 1 --aux-loss-coef 0.01 --run "$tmp/moe"
./dllm export "$tmp/tern" --out "$tmp/packed" --format ternary > /dev/null
cp "$tmp/bytes/step_00000001.ckpt" "$out/bytes_tokenizer"
cp "$tmp/packed" "$out/packed_ternary"
cp "$tmp/bd3/step_00000001.ckpt" "$out/bd3_block4"
cp "$tmp/hf/step_00000001.ckpt" "$out/hf_tokenizer"
cp "$tmp/lora/step_00000001.ckpt" "$out/lora_adapters"
cp "$tmp/moe/step_00000001.ckpt" "$out/mixture_of_experts"
ls -l "$out"
