#!/bin/bash
# Run on a lent GPU machine (device tool), from the repository root, with .gpu/ carried (see
# scripts/gpu_bundle.sh): the CUDA-vs-CPU checks, then the benchmarks; logs and a RESULTS.md
# section (device, date, commit, figures) go to $OUT (or the folder given).
set -uo pipefail
out=${1:-${OUT:-gpu_out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
         head -1)
[ -n "$device" ] || { echo "gpu_run: no GPU here (nvidia-smi found none)" >&2; exit 1; }
echo "device: $device"
DLLM_REQUIRE_GPU=1 .gpu/bin/test_gpu 2>&1 | tee "$out/test_gpu.log"
test_status=${PIPESTATUS[0]}
.gpu/bin/bench 2>&1 | tee "$out/bench.log"
.gpu/bin/bench --size 1b --steps 5 2>&1 | tee "$out/bench_1b.log"
{
    echo "## $(date -u +%Y-%m-%d) — $device (commit $(cat .gpu/commit 2>/dev/null))"
    echo
    echo "make test-gpu: $(grep -E '^[0-9]+%: Checks' "$out/test_gpu.log" || echo "did not finish (exit $test_status)")"
    echo
    cat "$out/bench.log" "$out/bench_1b.log"
} > "$out/RESULTS.md"
exit "$test_status"
