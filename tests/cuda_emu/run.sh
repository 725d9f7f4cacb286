#!/bin/bash
# The CUDA emulation stage of `make test`:
# - the emulation's own checks (tests/cuda_emu/selftest.cpp), forward and in reverse order;
# - test_gpu: with sanitizers (FLAVOR san) its cases tagged "ops" (op and attention tests)
#   alone; without, every case, its launches then weighed against ptxas's register and shared
#   memory counts (scripts/cuda_resources.sh), and the ops-tagged cases twice more, forward and
#   with every block's threads and the grid's blocks in reverse order: a race-free kernel copies
#   the same bits back to the host, so the two runs' digests must be equal;
# - the ops-tagged cases on the build with hardware-like rounding (fma/: contracted multiply-
#   adds, cuBLASLt's stand-in summing in reverse): each tolerance must hold there too.
#   bash tests/cuda_emu/run.sh EMU_DIR [san]
set -uo pipefail
emu=$1
flavor=${2:-}
status=0
echo "== $emu/selftest (forward, then reversed order)"
"$emu/selftest" || status=1
EMU_ORDER=reverse "$emu/selftest" || status=1
if [ "$flavor" = san ]; then
    echo "== $emu/test_gpu (ops and attention only under sanitizers)"
    CK_INCLUDE_TAGS=ops "./$emu/test_gpu" || status=1
    exit $status
fi
echo "== $emu/test_gpu"
launches=$(mktemp)
EMU_LAUNCHES=$launches "./$emu/test_gpu" || status=1
echo "== ptxas's registers and shared memory against the tests' launches"
bash scripts/cuda_resources.sh "$emu/test_gpu" "$launches" || status=1
rm -f "$launches"
echo "== $emu/fma/test_gpu ops and attention: fused multiply-adds, GEMM sums reversed"
CK_INCLUDE_TAGS=ops "./$emu/fma/test_gpu" || status=1
echo "== $emu/test_gpu ops and attention: the same bits in reverse thread and block order"
digest() {
    env "$@" EMU_DIGEST=1 CK_FORK=no CK_INCLUDE_TAGS=ops "./$emu/test_gpu" 2>&1 >/dev/null |
        grep '^emu digest:'
}
forward=$(digest EMU_ORDER=forward)
reverse=$(digest EMU_ORDER=reverse)
echo "  forward: ${forward:-none}"
echo "  reverse: ${reverse:-none}"
if [ -z "$forward" ] || [ "$forward" != "$reverse" ]; then
    echo "0 passed, 1 failed"
    status=1
else
    echo "1 passed, 0 failed"
fi
exit $status
