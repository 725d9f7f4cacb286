// The CUDA backends: device memory and the kernels of kernels/cuda/*.cu in Backend tables, each
// op the twin of the CPU reference op of the same name. One table per activation type:
// backend_cuda stores activations in bf16 (tensor-core matmuls and attention), and
// backend_cuda_fp32 in fp32 (the CPU's numbers up to summation order).
#include <cuda_bf16.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"

template <typename A>
static Backend cuda_table(const char *name) {
    Backend b = {};
    b.name = name;
    b.act_bytes = sizeof(A);
    b.weight_bytes = sizeof(float);
    b.alloc = cuda_alloc;
    b.free = cuda_free;
    b.zero = cuda_zero;
    b.to_device = cuda_to_device;
    b.to_host = cuda_to_host;
    b.copy_rows = cuda_copy_rows;
    b.to_device_rows = cuda_to_device_rows;
    b.act_to_host = cuda_act_to_host<A>;
    b.act_to_device = cuda_act_to_device<A>;
    b.device_error = cuda_device_error;
    b.embedding_forward = cuda_embedding_forward<A>;
    b.embedding_backward = cuda_embedding_backward<A>;
    b.rmsnorm_forward = cuda_rmsnorm_forward<A>;
    b.rmsnorm_backward = cuda_rmsnorm_backward<A>;
    b.matmul_forward = cuda_matmul_forward<A>;
    b.matmul_backward = cuda_matmul_backward<A>;
    b.bias_forward = cuda_bias_forward<A>;
    b.bias_backward = cuda_bias_backward<A>;
    b.rope_forward = cuda_rope_forward<A>;
    b.rope_backward = cuda_rope_backward<A>;
    b.attention_forward = cuda_attention_forward<A>;
    b.attention_backward = cuda_attention_backward<A>;
    b.swiglu_forward = cuda_swiglu_forward<A>;
    b.swiglu_backward = cuda_swiglu_backward<A>;
    b.add = cuda_add<A>;
    b.moe_route = cuda_moe_route<A>;
    b.moe_route_backward = cuda_moe_route_backward<A>;
    b.gather_rows = cuda_gather_rows<A>;
    b.moe_combine = cuda_moe_combine<A>;
    b.moe_combine_backward = cuda_moe_combine_backward<A>;
    b.add_scaled = cuda_add_scaled<A>;
    b.guide = cuda_guide<A>;
    b.cross_entropy_forward = cuda_cross_entropy_forward<A>;
    b.cross_entropy_fused = cuda_cross_entropy_fused<A>;
    b.pick_tokens = cuda_pick_tokens<A>;
    b.ternarize = cuda_ternarize;
    b.quantize_rows = cuda_quantize_rows<A>;
    b.sum_squares = cuda_sum_squares;
    b.sum_squares_chunks = cuda_sum_squares_chunks;
    b.scale = cuda_scale;
    b.accumulate = cuda_accumulate;
    b.adamw_update = cuda_adamw_update;
    return b;
}

const Backend backend_cuda = cuda_table<__nv_bfloat16>("cuda");

// backend_cuda with bf16 weights: the ops read the weights as stored; such weights are never
// trained (an inference model, or a frozen base under LoRA adapters), so the weight-gradient and
// optimizer ops are left out and the backward ones give input gradients alone.
static Backend bf16_weight_table(void) {
    typedef __nv_bfloat16 bf16;
    Backend b = cuda_table<bf16>("cuda");
    backend_make_bf16_weights(&b);
    b.embedding_forward = cuda_embedding_forward<bf16, bf16>;
    b.rmsnorm_forward = cuda_rmsnorm_forward<bf16, bf16>;
    b.rmsnorm_backward = cuda_rmsnorm_backward<bf16, bf16>;
    b.matmul_forward = cuda_matmul_forward_w16;
    b.matmul_backward = cuda_matmul_backward_w16;
    b.bias_forward = cuda_bias_forward<bf16, bf16>;
    return b;
}

const Backend *cuda_backend_bf16_weights(void) {
    static const Backend b = bf16_weight_table();
    return &b;
}
const Backend backend_cuda_fp32 = cuda_table<float>("cuda-fp32");
