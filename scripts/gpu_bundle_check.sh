#!/bin/bash
# Checks the bundle scripts/gpu_bundle.sh made: with only .gpu/lib and the CUDA toolkit's
# folder on the library path, every library each bundled binary loads resolves into one of
# them, except the C library's own and the NVIDIA driver's (libcuda.so.1: the GPU machine's).
# ldd also reads this machine's library cache, so a library found here outside those folders
# (a Debian package the GPU image lacks) fails the check as surely as one not found.
#   bash scripts/gpu_bundle_check.sh [BUNDLE_DIR] [CUDA_LIB_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=$(realpath "${1:-.gpu}")
cuda=$(realpath "${2:-/usr/local/cuda/lib64}")
[ -d "$bundle/bin" ] && [ -d "$bundle/lib" ] || {
    echo "gpu_bundle_check: no $bundle/bin or $bundle/lib (run scripts/gpu_bundle.sh)" >&2
    exit 1
}
status=0
for bin in "$bundle"/bin/*; do
    bad=$(env -i LD_LIBRARY_PATH="$bundle/lib:$cuda" ldd "$bin" |
        awk -v bundle="$bundle/lib/" -v cuda="$cuda" '
            $1 ~ /^(linux-vdso|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so)/ { next }
            $1 ~ /ld-linux/ { next }
            $1 == "libcuda.so.1" { next }
            $2 == "=>" && $3 == "not" { print $1 " not found"; next }
            $2 == "=>" && index($3, bundle) != 1 && index($3, cuda "/") != 1 {
                print $1 " => " $3 " (outside the bundle)"
            }')
    if [ -n "$bad" ]; then
        echo "gpu_bundle_check: $(basename "$bin") would not load on a bare GPU machine:" >&2
        echo "$bad" | sed 's/^/  /' >&2
        status=1
    else
        echo "gpu_bundle_check: $(basename "$bin"): every library in the bundle or CUDA's folder"
    fi
done
exit $status
