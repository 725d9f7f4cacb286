#!/bin/bash
# Run on a GPU machine, from the repository root, with .gpu/ copied there (see
# scripts/gpu_bundle.sh). One bounded, diagnostic run: a preflight that stops early and says
# what is missing, then each stage under `timeout` with its own log in $OUT (or the folder
# given) as it goes, so a hang or crash in one stage leaves the others' logs. RESULTS.md (device,
# date, commit, each stage's exit and time, the test summaries and the bench tables) is
# rewritten after every stage. The limits add up to under 8 minutes.
#   stage           limit  log
#   preflight         20s  preflight.log   nvidia-smi, libcublasLt located, ldd of both binaries
#   test_gpu ops      75s  ops.log         the op and attention cases (CK_INCLUDE_TAGS=ops)
#   test_gpu model   120s  model.log       the model case: whole model, training, sampling
#   sanitizer         90s  sanitizer.log   compute-sanitizer memcheck on the op case, racecheck
#                                          on the attention case
#   bench            100s  bench.log       gpt2 and 350m: training rows, memory plans, samplers
#   bench 1b          60s  bench_1b.log    1.2B with recomputation, 5 steps
# CUDA_LAUNCH_BLOCKING=1 for the tests: a fault is reported at the launch that caused it.
set -uo pipefail
out=${1:-${OUT:-gpu_out}}
mkdir -p "$out"
bundle=$PWD/.gpu
summary=()

results() {
    {
        echo "## $(date -u +%Y-%m-%d) — ${device:-no GPU found} (commit $(cat "$bundle/commit" 2>/dev/null || echo unknown))"
        echo
        for line in "${summary[@]}"; do echo "- $line"; done
        for log in ops model sanitizer; do
            [ -f "$out/$log.log" ] || continue
            echo
            echo "$log: $(grep -E '^[0-9]+%: Checks' "$out/$log.log" | tr '\n' ' ' ||
                          head -1 "$out/$log.log")"
            grep -E '^[^ ].*:[0-9]+:[EF]:' "$out/$log.log" | head -20 | sed 's/^/    /'
            grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$log.log" | sed 's/^/    /'
        done
        for log in bench bench_1b; do
            [ -f "$out/$log.log" ] && { echo; cat "$out/$log.log"; }
        done
    } > "$out/RESULTS.md"
}

# stage NAME LIMIT LOG COMMAND...: runs it under timeout, output to LOG; notes exit and time
stage() {
    local name=$1 limit=$2 log=$3 start rc
    shift 3
    echo "== $name (at most ${limit}s)"
    start=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$out/$log" 2>&1
    rc=$?
    local took=$(($(date +%s) - start)) verdict="exit $rc"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && verdict="timed out"
    summary+=("$name: $verdict after ${took}s")
    echo "$name: $verdict after ${took}s"
    tail -n 15 "$out/$log"
    results
    return $rc
}

# The folder holding library $1: the CUDA toolkit's, else wherever it is (a Python wheel's,
# nvidia-cublas), searched for 10 seconds at most.
find_lib() {
    local dir
    for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -e "$dir/$1" ] && { echo "$dir"; return 0; }
    done
    dir=$(timeout 10 find /usr /opt -name "$1" -printf '%h\n' 2>/dev/null | head -1)
    [ -n "$dir" ] && echo "$dir"
}

preflight() {
    local status=0
    command -v nvidia-smi >/dev/null || { echo "preflight: no nvidia-smi: not a GPU machine"; return 1; }
    device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
    [ -n "$device" ] || { echo "preflight: nvidia-smi lists no GPU"; return 1; }
    echo "device: $device"
    nvidia-smi
    [ -x "$bundle/bin/test_gpu" ] && [ -x "$bundle/bin/bench" ] ||
        { echo "preflight: no $bundle/bin/test_gpu or bench (carry .gpu: scripts/gpu_bundle.sh)"; return 1; }
    # CUDA's libraries: the toolkit's folder, else a Python wheel's (nvidia-cublas)
    local libs runtime
    libs=$(find_lib libcublasLt.so.13) ||
        { echo "preflight: libcublasLt.so.13 is nowhere on this machine"; return 1; }
    runtime=$(find_lib libcudart.so.13) ||
        { echo "preflight: libcudart.so.13 is nowhere on this machine"; return 1; }
    export LD_LIBRARY_PATH="$bundle/lib:$libs:$runtime:${LD_LIBRARY_PATH:-}"
    echo "library path: $LD_LIBRARY_PATH"
    for bin in "$bundle"/bin/test_gpu "$bundle"/bin/bench; do
        if ldd "$bin" | grep -q 'not found'; then
            echo "preflight: $(basename "$bin") is missing:"
            ldd "$bin" | grep 'not found'
            status=1
        fi
    done
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    echo "compute-sanitizer: ${sanitizer:-none (that stage is skipped)}"
    return $status
}

start=$(date +%s)
device=""
sanitizer=""
# the preflight's exports must stay in this shell: it runs here, its output to its log
echo "== preflight (at most 20s)"
preflight > "$out/preflight.log" 2>&1
rc=$?
cat "$out/preflight.log"
summary+=("preflight: exit $rc")
results
if [ $rc -ne 0 ]; then
    echo "gpu_run: stopped at the preflight (see above); nothing else was run" >&2
    exit 1
fi
export CUDA_LAUNCH_BLOCKING=1 DLLM_REQUIRE_GPU=1
status=0
stage "test_gpu ops" 75 ops.log env CK_INCLUDE_TAGS=ops "$bundle/bin/test_gpu" || status=1
stage "test_gpu model" 120 model.log env CK_RUN_CASE=model "$bundle/bin/test_gpu" || status=1
if [ -n "$sanitizer" ]; then
    stage "sanitizer" 90 sanitizer.log bash -c "
        CK_FORK=no CK_RUN_CASE=ops '$sanitizer' --tool memcheck --error-exitcode 3 \
            '$bundle/bin/test_gpu'; m=\$?
        CK_FORK=no CK_RUN_CASE=attention '$sanitizer' --tool racecheck --error-exitcode 3 \
            '$bundle/bin/test_gpu'; r=\$?
        exit \$((m | r))" || status=1
fi
unset CUDA_LAUNCH_BLOCKING
stage "bench" 100 bench.log "$bundle/bin/bench" || status=1
stage "bench 1b" 60 bench_1b.log "$bundle/bin/bench" --size 1b --steps 5 || status=1
summary+=("whole run: $(($(date +%s) - start))s")
results
exit $status
