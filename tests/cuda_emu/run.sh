#!/bin/bash
# The CUDA emulation stage of `make test`: the emulation's own checks (tests/cuda_emu/
# selftest.cpp) in both block and thread orders, test_gpu (its cases tagged "ops", the op and
# attention tests, alone with sanitizers: FLAVOR san), and, without sanitizers, those again
# twice in one process each, forward and with every block's threads and the grid's blocks in
# reverse order: a race-free kernel copies the same bits back to the host, so the two runs'
# digests must be equal.
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
"./$emu/test_gpu" || status=1
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
