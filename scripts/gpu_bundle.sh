#!/bin/bash
# Run on this (build) machine before a GPU run: builds the CUDA test and the benchmark, and
# copies them with every shared library they load except glibc's and CUDA's into .gpu/
# (git-ignored), then checks the bundle (scripts/gpu_bundle_check.sh). Then, on the GPU
# machine, with .gpu/ copied into the checkout there: bash scripts/gpu_run.sh
# The GPU image is a CUDA image, not Debian with dllm's packages, and has no network: nothing
# of Debian's is assumed there (SentencePiece, Check's subunit, OpenBLAS and its Fortran
# runtime, OpenMP, PCRE2, utf8proc, libstdc++ all travel), and nothing is built there.
set -euo pipefail
cd "$(dirname "$0")/.."
# portable x86-64 code (no -march=native: the GPU machine's processor may lack this one's
# instructions), in its own build folder
CFLAGS="-O2 -march=x86-64-v2" CXXFLAGS="-O2 -march=x86-64-v2" \
    make -j"$(nproc)" BUILD=build/portable build/portable/tests/test_gpu build/portable/bench/bench
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib
cp build/portable/tests/test_gpu build/portable/bench/bench .gpu/bin/
# every library ldd resolves, but the C library's own (the GPU machine has a glibc) and the
# CUDA toolkit's (its own, matching its driver; gpu_run.sh finds them there)
for bin in .gpu/bin/*; do
    ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
    case "$name" in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) continue ;;
    esac
    # NCCL travels even from CUDA's folder: not every CUDA image ships it
    case "$name:$path" in libnccl*) ;; *:/usr/local/cuda*) continue ;; esac
    cp -L "$path" ".gpu/lib/$name"
done
git rev-parse --short HEAD > .gpu/commit
bash scripts/gpu_bundle_check.sh
du -sh .gpu
