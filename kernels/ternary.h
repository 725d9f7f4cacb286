// Packed ternary weights: a matrix whose weights are s * {-1, 0, +1} (BitNet b1.58) stored in 2
// bits a weight, and the integer matmul that reads them (kernels/cpu/ternary.c).
//
// Layout: a matrix [rows, cols] (out = x @ W^T: rows outputs, cols inputs) is padded with zero
// weights to rows a multiple of 16 and cols a multiple of 4, and cut into panels of 16 rows. A
// panel is stored as cols / 4 steps of 16 bytes each: two little-endian 64-bit masks, `plus` then
// `minus`, where bit 4 c + k stands for the weight of panel row c at input 4 s + k (s the step):
// plus set is +1, minus set is -1, neither is 0. So a matrix takes ternary_matrix_bytes: 2 bits a
// weight, and its one scale s (the mean absolute value of the fp32 weights it came from) is kept
// beside it. The order is the SIMD kernel's: one step's masks, expanded to bytes, are a 64-byte
// vector holding 4 consecutive weights of 16 outputs, what one VNNI instruction takes.
//
// The inputs a packed matmul reads are 8-bit integers per row (int8, the row's largest
// magnitude at 127), rows padded with zeros to ternary_padded(cols), and one float per row to
// dequantise them.
#ifndef DLLM_TERNARY_H
#define DLLM_TERNARY_H

#include <stddef.h>
#include <stdint.h>

enum { TERNARY_PANEL = 16, TERNARY_STEP = 4 };

static inline int ternary_padded(int cols) {
    return (cols + TERNARY_STEP - 1) / TERNARY_STEP * TERNARY_STEP;
}
static inline int ternary_panels(int rows) { return (rows + TERNARY_PANEL - 1) / TERNARY_PANEL; }
// In size_t throughout: a file's header is sized with it before anything checks the shape.
static inline size_t ternary_matrix_bytes(int rows, int cols) {
    size_t panels = ((size_t)rows + TERNARY_PANEL - 1) / TERNARY_PANEL;
    return panels * (((size_t)cols + TERNARY_STEP - 1) / TERNARY_STEP) * 16;
}

// The absmean scale BitNet b1.58 ternarises a matrix of n weights with: max(mean |w|, 1e-5),
// the mean summed in double in index order (the CPU ternarize op uses exactly this one).
float ternary_scale(const float *w, size_t n);
// w [rows, cols] (fp32) -> dst (ternary_matrix_bytes): weight = clamp(rint(w / s), -1, 1)
void ternary_pack(uint8_t *dst, const float *w, float s, int rows, int cols);
// The reverse, dequantised: w = s * weight
void ternary_unpack(float *w, const uint8_t *src, float s, int rows, int cols);

#endif
