#!/bin/bash
# ptxas's resource counts for every kernel of kernels/cuda/ (sm_90 and sm_80), weighed against
# how the tests launch them (the emulation's record, EMU_LAUNCHES): a launch the device would
# refuse fails the check — registers x threads above the 65536 a block may hold (registers
# counted in units of 8 per thread, threads in whole warps), or, on sm_90, whose 227 KiB
# opt-in limit the emulation reports, static plus dynamic shared memory above it. (On sm_80
# the kernels ask the device for its limit, 163 KiB, and route larger heads elsewhere: the
# tests' launches say nothing of that routing there.) Spills are listed (a speed matter, not
# a failure); kernels the tests never launched are counted.
#   bash scripts/cuda_resources.sh EMU_TEST_GPU LAUNCHES_FILE
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$1
launches=$2
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
[ -x "$nvcc" ] || { echo "cuda_resources: no nvcc: skipped"; exit 0; }
[ -s "$launches" ] || { echo "cuda_resources: $launches is empty (run test_gpu with EMU_LAUNCHES)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# offset -> mangled name, from the emulated binary's symbol table
nm --defined-only "$bin" | awk '{ print $1, $3 }' > "$work/symbols"
# name -> most threads and shared bytes over every launch the tests made
awk 'NR == FNR { name[$1] = $2; next }
     ($1 in name) { n = name[$1]; if ($2 > t[n]) t[n] = $2; if ($3 > s[n]) s[n] = $3 }
     END { for (n in t) print n, t[n], s[n] }' "$work/symbols" "$launches" > "$work/launched"
status=0
# ptxas's report for each file and architecture, two compilations at a time
for arch in 90 80; do for f in kernels/cuda/*.cu; do echo "$arch $f"; done; done |
    xargs -P 2 -n 2 sh -c '"$0" -O3 -std=c++17 -I. -gencode="arch=compute_$2,code=sm_$2" \
        --resource-usage -c -o /dev/null "$3" > "$1/ptxas_$2_$(basename "$3")" 2>&1' \
        "$nvcc" "$work"
for arch in 90 80; do
    limit=$([ $arch = 90 ] && echo 232448 || echo 0)  # 0: not checked (see above)
    cat "$work"/ptxas_"$arch"_*.cu | awk '
        # the number in front of the field `word` ("30 registers", "2048 bytes smem")
        function before(word, skip,    i) {
            for (i = 2; i <= NF; i++) if ($i == word || $i == word ",") return $(i - skip)
            return 0
        }
        /Compiling entry function/ { k = $0; sub(/.*function ./, "", k); sub(/. for .*/, "", k) }
        /spill stores/ { spill[k] = before("stores", 3) }
        /Used [0-9]+ registers/ { regs[k] = before("registers", 1); smem[k] = before("smem", 2) }
        END { for (k in regs) print k, regs[k], smem[k], spill[k] + 0 }' > "$work/ptxas_$arch"
    awk -v arch="sm_$arch" -v limit="$limit" '
        NR == FNR { threads[$1] = $2; shared[$1] = $3; next }
        {
            k = $1; regs = $2; smem = $3; spill = $4
            if (!(k in threads)) { unlaunched++; next }
            warps = int((threads[k] + 31) / 32); per = int((regs + 7) / 8) * 8
            total = smem + shared[k]; over = 0
            if (per * warps * 32 > 65536) {
                printf "cuda_resources: %s: %s: %d registers x %d threads > 65536\n", arch, k, regs, threads[k]
                over = 1
            }
            if (limit > 0 && total > limit) {
                printf "cuda_resources: %s: %s: %d + %d bytes of shared memory > %d\n", arch, k, smem, shared[k], limit
                over = 1
            }
            bad += over
            if (spill > 0) printf "  %s spills %d bytes: %s (%d registers, %d threads)\n", arch, spill, k, regs, threads[k]
            checked++
        }
        END {
            printf "cuda_resources: %s: %d launched kernels within the limits of a block, %d over; %d never launched by the tests\n", arch, checked - bad, bad + 0, unlaunched
            exit bad > 0
        }' "$work/launched" "$work/ptxas_$arch" || status=1
done
exit $status
