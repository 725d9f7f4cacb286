// Rotary position embedding. The first `rot` values of each head's vector (all of it, or a
// partial rotary's share) are split in halves (i, i + rot/2) and each pair is rotated by the
// angle t * theta^(-2i/rot); the rest pass unrotated. A rotation is orthogonal, so the
// backward pass is the same rotation by the opposite angle.
#include "kernels/cpu/cpu_ops.h"

// One head's vector: a vector loop kept out of line (inside the OpenMP loop GCC left it scalar).
__attribute__((noinline)) static void rotate_head(float *v, const float *c, const float *s,
                                                  int half, float direction) {
#pragma omp simd
    for (int i = 0; i < half; i++) {
        float x0 = v[i], x1 = v[i + half];
        float si = direction * s[i];
        v[i] = x0 * c[i] - x1 * si;
        v[i + half] = x0 * si + x1 * c[i];
    }
}

static void rotate(float *x, const float *cos, const float *sin, int B, int T, int pos0, int H,
                   int head_dim, int rot, float direction) {
    int half = rot / 2;
#pragma omp parallel for collapse(3) if (worth_threads(3.0 * B * T * H * head_dim))
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                rotate_head(x + (((size_t)b * T + t) * H + h) * head_dim,
                            cos + (size_t)(pos0 + t) * half, sin + (size_t)(pos0 + t) * half,
                            half, direction);
}

void cpu_rope_forward(Act *x_act, const float *cos, const float *sin, int B, int T, int pos0, int H,
                      int head_dim, int rot) {
    float *x = x_act;
    rotate(x, cos, sin, B, T, pos0, H, head_dim, rot, 1.0f);
}

void cpu_rope_backward(Act *dx_act, const float *cos, const float *sin, int B, int T, int pos0,
                       int H, int head_dim, int rot) {
    float *dx = dx_act;
    rotate(dx, cos, sin, B, T, pos0, H, head_dim, rot, -1.0f);
}
