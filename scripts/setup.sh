#!/usr/bin/env bash
# Sets up dllm on a fresh Debian machine, skipping every step that is already done:
#   1. Debian packages: the toolchain, Check, SentencePiece, stb, OpenBLAS, PCRE2 and utf8proc (Hugging
#      Face tokenizers), clang and its runtime (libFuzzer: make fuzz), and the corpus sources
#   2. build ./dllm
#   3. the default corpus (scripts/corpus.sh -> data/corpus/)
#   4. a SentencePiece tokenizer trained on it (data/tokenizer.model)
#   5. token shards (data/shards/: train_*.bin, val_*.bin, tokenizer.model)
# Usage: bash scripts/setup.sh [--build-only]   (--build-only stops after step 2, as CI does)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential pkg-config check libsentencepiece-dev sentencepiece libstb-dev
          libpcre2-dev libutf8proc-dev libopenblas-openmp-dev libmicrohttpd-dev clang
          libclang-rt-14-dev libopenmpi-dev openmpi-bin
          bible-kjv bible-kjv-text sword-text-web libsword-utils fortunes)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "setup: packages already installed"
fi

make -j"$(nproc)" dllm
echo "setup: built ./dllm"
[ "${1:-}" = "--build-only" ] && exit 0

bash scripts/corpus.sh data/corpus
inputs=data/corpus/kjv.txt,data/corpus/web.txt,data/corpus/fortunes.txt
if [ -s data/tokenizer.model ]; then
    echo "setup: data/tokenizer.model exists, skipped"
else
    ./dllm tokenizer train --input "$inputs" --vocab 4096 --type bpe --out data/tokenizer.model
fi
if [ -s data/shards/train_000000.bin ]; then
    echo "setup: data/shards exists, skipped"
else
    rm -rf data/shards.tmp
    ./dllm prepare --tokenizer data/tokenizer.model --input "$inputs" --val-fraction 0.01 \
        --out data/shards.tmp
    mv data/shards.tmp data/shards
fi
echo "setup: done"
