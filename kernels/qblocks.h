// Block-quantised weights, 8 or 4 bits: a row's weights in runs of 32 sharing one fp16 scale d,
// each w = d q (GGUF's Q8_0: q an int8; Q4_0: q = nibble - 8), and the integer matmul that
// reads them in place (kernels/cpu/matmul_qblocks.c).
//
// Layout: a matrix [rows, cols] (out = x @ W^T; cols a multiple of 32) padded with zero rows
// to a multiple of 16 and cut into panels of 16 rows. Panel p is cols / 32 blocks of
// qb_block_bytes(bits) each, block b holding inputs 32 b .. 32 b + 31 of the panel's 16 rows.
// A "step" is 4 consecutive inputs 32 b + 4 s + k (k < 4) of the 16 rows, 64 codes, code
// (r, k) at place 4 r + k: what one VNNI instruction multiplies. The codes are biased to be
// unsigned (vpdpbusd multiplies unsigned bytes by signed ones):
//   8 bits: q + 128, one byte each: 8 steps of 64 bytes (512 bytes)
//   4 bits: q + 8 (Q4_0's own nibble), 4 pairs of steps of 64 bytes (256 bytes): in pair t,
//           byte i holds step 2 t's code i in its low nibble and step 2 t + 1's in its high
// then the 16 rows' scales d (fp16, row order: 32 bytes). So a matrix takes exactly the bytes
// of GGUF's Q8_0 (544 per 512 weights) or Q4_0 (288) blocks, and a GGUF Q8_0 or Q4_0 tensor is
// rearranged into it without a rounding (a Q4_0 one into 8 bits too: nibble - 8 is an int8
// code of the same scale).
//
// The inputs are quantised to 8 bits the same way per row, block by block: dx = max |x| / 127
// and q = rint(x * 127 / max |x|) (0 for an all-zero block). A quantised row (qb_row_bytes) is
// its C codes (int8), then each block's sum of codes (int32): the biased weights' dot product
// less bias x that sum is the block's exact one. Output (n, o) is then
//   sum over blocks b, in order, of (d[o, b] * dx[n, b]) * isum[n, o, b]
// each term one fused multiply-add onto the sum (from 0), isum the exact integer dot product
// of the two blocks' codes: the same bits from the plain loop and the VNNI kernel, at any
// thread count.
#ifndef DLLM_QBLOCKS_H
#define DLLM_QBLOCKS_H

#include <stddef.h>
#include <stdint.h>

enum { QB_PANEL = 16, QB_BLOCK = 32, Q8_0_BYTES = 34, Q4_0_BYTES = 18 };

// Bytes of one block of a panel (16 rows x 32 inputs) of `bits` (8 or 4) weights.
static inline size_t qb_block_bytes(int bits) { return (size_t)QB_PANEL * QB_BLOCK * bits / 8 + 32; }
// Bytes of one GGUF block of 32 weights: Q8_0 (bits 8) or Q4_0 (bits 4).
static inline size_t qb_gguf_block_bytes(int bits) { return bits == 8 ? Q8_0_BYTES : Q4_0_BYTES; }

// Bytes of one quantised input row of C values: the codes, then an int32 per block.
static inline size_t qb_row_bytes(int C) { return (size_t)C + (size_t)(C / QB_BLOCK) * 4; }

static inline size_t qb_matrix_bytes(int bits, int rows, int cols) {
    size_t panels = ((size_t)rows + QB_PANEL - 1) / QB_PANEL;
    return panels * (size_t)(cols / QB_BLOCK) * qb_block_bytes(bits);
}

// GGUF's quantisers (ggml's reference ones, and gguf-py's), per block of 32 values, d stored as
// fp16. Q8_0: d = max |x| / 127, q = round(x / d) (half away from zero). Q4_0: d = -m / 8 with m
// the value of largest magnitude, nibble = min(15, trunc(x / d + 8.5)). n a multiple of 32; dst
// n / 32 blocks. 0, or -1 when x holds a NaN or an infinity (dst then incomplete).
int q8_0_quantize_row(uint8_t *dst, const float *x, size_t n);
int q4_0_quantize_row(uint8_t *dst, const float *x, size_t n);
// The one of the two for `bits` (8: Q8_0, 4: Q4_0).
static inline int qb_quantize_row(int bits, uint8_t *dst, const float *x, size_t n) {
    return bits == 8 ? q8_0_quantize_row(dst, x, n) : q4_0_quantize_row(dst, x, n);
}
// GGUF Q4_0 blocks (18 bytes: fp16 d, 16 bytes of nibbles: value j in the low nibble of byte j,
// value 16 + j in its high nibble) as Q8_0 blocks of the same values: codes nibble - 8.
void q8_0_from_q4_0(uint8_t *dst, const uint8_t *src, size_t blocks);
// GGUF rows [rows, cols] of Q8_0 (bits 8) or Q4_0 (bits 4) blocks -> dst (qb_matrix_bytes),
// and the reverse dequantised (w = d q).
void qb_pack(int bits, uint8_t *dst, const uint8_t *gguf_rows, int rows, int cols);
void qb_unpack(int bits, float *w, const uint8_t *src, int rows, int cols);

#endif
