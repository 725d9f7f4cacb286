// The CPU backend: host memory and the reference ops, gathered into one Backend table.
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"

static void *cpu_alloc(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_free(void *ptr) { free(ptr); }
static void cpu_zero(void *ptr, size_t bytes) { memset(ptr, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

static void cpu_copy_rows(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                          size_t row_bytes, size_t rows) {
    for (size_t r = 0; r < rows; r++)
        memcpy((char *)dst + r * dst_stride, (const char *)src + r * src_stride, row_bytes);
}

// Activations are floats on the CPU: converting them is a copy.
static void act_to_host(float *dst, const Act *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
}
static void act_to_device(Act *dst, const float *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
}
static void matmul_forward(Act *out, const Act *inp, const float *weight, int N, int C_in,
                           int C_out) {
    // OpenBLAS repacks the weights on every call: at 6..64 rows our kernel, which does not,
    // is faster; at 1..5 rows (AR decoding) and at training's thousands, OpenBLAS is
    if (N >= 6 && N <= 64) cpu_matmul_forward_rows(out, inp, weight, N, C_in, C_out);
    else cpu_matmul_forward_blas(out, inp, weight, N, C_in, C_out);
}

static int device_error(Error *err) {
    (void)err;
    return 0;
}

const Backend backend_cpu = {
    .name = "cpu",
    .device_error = device_error,
    .act_bytes = sizeof(float),
    .weight_bytes = sizeof(float),
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy_rows = cpu_copy_rows,
    .to_device_rows = cpu_copy_rows,
    .act_to_host = act_to_host,
    .act_to_device = act_to_device,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .matmul_forward = matmul_forward,
    .matmul_backward = cpu_matmul_backward_blas,
    .bias_forward = cpu_bias_forward,
    .bias_backward = cpu_bias_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward_blas,
    .attention_backward = cpu_attention_backward_blas,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .add = cpu_add,
    .moe_route = cpu_moe_route,
    .moe_route_backward = cpu_moe_route_backward,
    .gather_rows = cpu_gather_rows,
    .moe_combine = cpu_moe_combine,
    .moe_combine_backward = cpu_moe_combine_backward,
    .add_scaled = cpu_add_scaled,
    .guide = cpu_guide,
    .pick_tokens = cpu_pick_tokens,
    .cross_entropy_forward = cpu_cross_entropy_forward,
    .cross_entropy_fused = cpu_cross_entropy_fused,
    .panels_convert = cpu_panels_convert,
    .matmul_forward_panels = cpu_matmul_forward_panels,
    .ternarize = cpu_ternarize,
    .quantize_rows = cpu_quantize_rows,
    .quantize_rows_int8 = cpu_quantize_rows_int8,
    .matmul_ternary = cpu_matmul_ternary,
    .quantize_rows_q8 = cpu_quantize_rows_q8,
    .matmul_qb = cpu_matmul_qb,
    .embedding_qb = cpu_embedding_qb,
    .sum_squares = cpu_sum_squares,
    .sum_squares_chunks = cpu_sum_squares_chunks,
    .scale = cpu_scale,
    .accumulate = cpu_accumulate,
    .adamw_update = cpu_adamw_update,
};

const Backend *backend_cpu_bf16_weights(void) {
    static Backend b;
    if (!b.name) {
        b = backend_cpu;
        backend_make_bf16_weights(&b);
        b.embedding_forward = cpu_embedding_forward_w16;
        b.rmsnorm_forward = cpu_rmsnorm_forward_w16;
        b.rmsnorm_backward = cpu_rmsnorm_backward_w16;
        b.matmul_forward = cpu_matmul_forward_w16;
        b.matmul_backward = cpu_matmul_backward_w16;
        b.bias_forward = cpu_bias_forward_w16;
        b.panels_convert = cpu_panels_convert_w16;
        b.matmul_forward_panels = cpu_matmul_forward_panels_w16;
        b.name = "cpu";  // set last: the table is complete once it has a name
    }
    return &b;
}

const Backend *backend_cpu_bf16_pairs(void) {
    static Backend b;
    if (!b.name) {
        b = *backend_cpu_bf16_weights();
        b.name = NULL;
        b.panels_convert = cpu_panels_convert_pairs;
        b.matmul_forward_panels = cpu_matmul_forward_pairs;
        b.name = "cpu";
    }
    return &b;
}
