#!/usr/bin/perl -0p
# Turns a kernels/cuda/*.cu file into C++ for the CPU emulation (tests/cuda_emu/cuda_runtime.h):
# launches `k<<<grid, block[, shared]>>>(args)` become emu_launcher(k, grid, block[, shared])(args)
# and the dynamic shared-memory array becomes a pointer to the emulated block's buffer.
s/extern __shared__ (?:__align__\(\d+\) )?([\w ]+?) smem\[\];/$1 *smem = ($1 *)emu_dyn_smem();/g;
s/(\w+(?:<[\w, ]+>)?)\s*<<<(.*?)>>>\(/emu_launcher($1, $2)(/gs;
