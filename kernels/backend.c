// Picks a backend by the name given to --device.
#include <string.h>

#include "kernels/backend.h"
#ifdef DLLM_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

void backend_make_bf16_weights(Backend *b) {
    b->weight_bytes = 2;
    b->embedding_backward = NULL;
    b->rmsnorm_backward = NULL;
    b->matmul_backward = NULL;
    b->bias_backward = NULL;
    b->adamw_update = NULL;
    b->panels_convert = NULL;  // a table with bf16 panels sets its own
    b->matmul_forward_panels = NULL;
    b->quantize_rows_q8 = NULL;  // 8-bit models keep their other weights in fp32
    b->matmul_qb = NULL;
    b->embedding_qb = NULL;
}

const Backend *backend_bf16_weights(const Backend *be) {
    if (be == &backend_cpu) return backend_cpu_bf16_weights();
#ifdef DLLM_CUDA
    if (be == &backend_cuda) return cuda_backend_bf16_weights();
#endif
    return NULL;
}

const Backend *backend_fp32_weights(const Backend *be) {
    if (be->weight_bytes == sizeof(float)) return be;
    if (be == backend_cpu_bf16_weights() || be == backend_cpu_bf16_pairs()) return &backend_cpu;
#ifdef DLLM_CUDA
    if (be == cuda_backend_bf16_weights()) return &backend_cuda;
#endif
    return NULL;
}

int backend_cuda_available(void) {
#ifdef DLLM_CUDA
    return cuda_device_count() > 0;
#else
    return 0;
#endif
}

const Backend *backend_by_name(const char *name, Error *err) {
    if (strcmp(name, "cpu") == 0) return &backend_cpu;
    int cuda = strcmp(name, "cuda") == 0 || strcmp(name, "cuda-fp32") == 0;
#ifdef DLLM_CUDA
    if (cuda || strcmp(name, "auto") == 0) {
        if (backend_cuda_available())
            return strcmp(name, "cuda-fp32") == 0 ? &backend_cuda_fp32 : &backend_cuda;
        if (strcmp(name, "auto") == 0) return &backend_cpu;
        error_set(err, "--device %s: no CUDA device found", name);
        return NULL;
    }
#else
    if (strcmp(name, "auto") == 0) return &backend_cpu;
    if (cuda) {
        error_set(err, "--device %s: this build has no CUDA backend (nvcc was not found)", name);
        return NULL;
    }
#endif
    error_set(err, "--device %s: unknown device (expected auto, cpu, cuda or cuda-fp32)", name);
    return NULL;
}

const Backend *backend_for_plan(const char *name, Error *err) {
#ifdef DLLM_CUDA
    if (strcmp(name, "cuda") == 0) return &backend_cuda;
    if (strcmp(name, "cuda-fp32") == 0) return &backend_cuda_fp32;
#endif
    return backend_by_name(name, err);
}
