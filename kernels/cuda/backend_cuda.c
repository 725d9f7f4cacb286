// The CUDA backend: device memory and the kernels of kernels/cuda/*.cu in one Backend table,
// each op the twin of the CPU reference op of the same name.
#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"

const Backend backend_cuda = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .zero = cuda_zero,
    .to_device = cuda_to_device,
    .to_host = cuda_to_host,
    .copy_rows = cuda_copy_rows,
    .to_device_rows = cuda_to_device_rows,
    .embedding_forward = cuda_embedding_forward,
    .embedding_backward = cuda_embedding_backward,
    .rmsnorm_forward = cuda_rmsnorm_forward,
    .rmsnorm_backward = cuda_rmsnorm_backward,
    .matmul_forward = cuda_matmul_forward,
    .matmul_backward = cuda_matmul_backward,
    .rope_forward = cuda_rope_forward,
    .rope_backward = cuda_rope_backward,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .swiglu_forward = cuda_swiglu_forward,
    .swiglu_backward = cuda_swiglu_backward,
    .add = cuda_add,
    .pick_tokens = cuda_pick_tokens,
    .cross_entropy_forward = cuda_cross_entropy_forward,
    .cross_entropy_fused = cuda_cross_entropy_fused,
    .sum_squares = cuda_sum_squares,
    .scale = cuda_scale,
    .adamw_update = cuda_adamw_update,
};
