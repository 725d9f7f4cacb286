#!/bin/bash
# Run here, before asking the device tool for a GPU machine: builds the CUDA test and the
# benchmark, and copies them with the shared libraries a bare GPU machine lacks (SentencePiece,
# Check's subunit, OpenMP) into .gpu/ (git-ignored). Then, with the device tool:
#   run(command="bash scripts/gpu_run.sh", carry=[".gpu"])
# The GPU image has CUDA 13 but no Debian packages and no network, so nothing is built there.
set -euo pipefail
cd "$(dirname "$0")/.."
# portable x86-64 code (no -march=native: the GPU machine's processor may lack this one's
# instructions), in its own build folder
CFLAGS="-O2 -march=x86-64-v2" CXXFLAGS="-O2 -march=x86-64-v2" \
    make -j"$(nproc)" BUILD=build/portable build/portable/tests/test_gpu build/portable/bench/bench
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib
cp build/portable/tests/test_gpu build/portable/bench/bench .gpu/bin/
for lib in libsentencepiece.so.0 libsentencepiece_train.so.0 libsubunit.so.0 libgomp.so.1 \
           libpcre2-8.so.0 libutf8proc.so.2; do
    # the first match, reading all of ldconfig's output (an early exit would end the pipeline
    # with SIGPIPE, which pipefail turns into a silent stop)
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !found { print $NF; found = 1 }')
    [ -n "$path" ] || { echo "gpu_bundle: $lib not found (run scripts/setup.sh)" >&2; exit 1; }
    cp -L "$path" .gpu/lib/
done
git rev-parse --short HEAD > .gpu/commit
du -sh .gpu
