// Throughput benchmark (not a test): training tokens/s, ms/step and MFU for MDM and AR, and
// sampling tokens/s for LLaDA's reference sampler, threshold decoding with the dual cache, and
// the AR baseline with its KV cache, block diffusion with and without its exact cache (random
// weights: a threshold run's pass count is not what a trained model would need).
// Sizes: gpt2 (12 layers, d 768, 12 heads, seq 1024, vocab 50304, 124M), 350m (24 layers,
// d 1024, 16 heads), 1b (22 layers, d 2048, 32 heads, seq 2048: trained with recomputation);
// tiny (4 layers, d 128, seq 128) for a CPU. Data: seeded random tokens.
// MFU counts llm.c's FLOPs per token, 6 * params + 6 * layers * seq * d_model (attention),
// against --peak-tflops (H100 SXM dense bf16: 989).
// Usage: bench [--size tiny|gpt2|350m] [--device auto|cpu|cuda] [--steps N] [--batch B]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/flags.h"
#include "common/progress.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "train/trainer.h"

static ModelConfig size_config(const char *size) {
    ModelConfig c = model_config_default();
    if (strcmp(size, "gpt2") == 0) {
        c.n_layer = 12, c.n_head = 12, c.d_model = 768, c.d_ff = 2048, c.seq_len = 1024;
        c.vocab_size = 50304, c.mask_token_id = 50257;
    } else if (strcmp(size, "350m") == 0) {
        c.n_layer = 24, c.n_head = 16, c.d_model = 1024, c.d_ff = 2816, c.seq_len = 1024;
        c.vocab_size = 50304, c.mask_token_id = 50257;
    } else if (strcmp(size, "1b") == 0) {  // TinyLlama's shape, 1.2B with this vocabulary
        c.n_layer = 22, c.n_head = 32, c.d_model = 2048, c.d_ff = 5632, c.seq_len = 2048;
        c.vocab_size = 50304, c.mask_token_id = 50257;
    } else {
        c.n_layer = 4, c.n_head = 4, c.d_model = 128, c.d_ff = 352, c.seq_len = 128;
    }
    return c;
}

static void bench_training(const Backend *be, ModelConfig cfg, int causal, int recompute,
                           int batch, int steps, double peak_tflops) {
    cfg.causal = causal;
    size_t n_tokens = (size_t)1 << 22;
    int *ids = malloc(n_tokens * sizeof(int));
    for (size_t i = 0; i < n_tokens; i++) ids[i] = (int)((i * 2654435761u) % 50000u) % cfg.vocab_size;
    TokenData data;
    Error err;
    Model m;
    Trainer tr;
    TrainConfig tc = train_config_default();
    tc.objective = causal ? OBJECTIVE_AR : OBJECTIVE_MDM;
    tc.batch_size = batch, tc.steps = steps + 2;
    if (data_from_ids(&data, ids, n_tokens, &err) || model_create(&m, &cfg, be, batch, recompute, &err) ||
        trainer_init(&tr, &m, &tc, &data, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    if (model_init_params(&m, 1, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    for (int s = 0; s < 2; s++) trainer_step(&tr);  // warm-up: handles, first launches
    double t0 = now_seconds();
    for (int s = 0; s < steps; s++) trainer_step(&tr);  // the loss read-back syncs each step
    double dt = (now_seconds() - t0) / steps;
    if (be->device_error(&err)) {  // a failed launch must not become a tokens/s figure
        fprintf(stderr, "bench: %s training: %s\n", causal ? "AR" : "MDM", err.msg);
        exit(1);
    }
    double tokens = (double)batch * cfg.seq_len;
    double flops = tokens * (6.0 * m.n_params + 6.0 * cfg.n_layer * cfg.seq_len * cfg.d_model);
    // recomputation runs the layers' forward twice; MFU counts only the model's own FLOPs
    printf("| %-3s%s | %.1fM | %d x %d | %.1f | %.0f | %.1f%% |\n", causal ? "AR" : "MDM",
           recompute ? " (recompute)" : "", m.n_params / 1e6, batch, cfg.seq_len, dt * 1e3,
           tokens / dt, 100.0 * flops / dt / (peak_tflops * 1e12));
    trainer_free(&tr);
    model_free(&m);
    data_free(&data);
    free(ids);
}

typedef enum {
    BENCH_LLADA,
    BENCH_THRESHOLD,
    BENCH_AR,
    BENCH_BD3,          // block diffusion, blocks of 16, exact cache of committed blocks
    BENCH_BD3_NO_CACHE  // the same, every step recomputed from position 0
} BenchSampler;

static void bench_sampling(const Backend *be, ModelConfig cfg, int batch, BenchSampler which) {
    cfg.causal = which == BENCH_AR;
    int bd3 = which == BENCH_BD3 || which == BENCH_BD3_NO_CACHE;
    cfg.block_size = bd3 ? 16 : 0;
    Model m;
    Error err;
    if (model_create(&m, &cfg, be, batch, 0, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    if (model_init_params(&m, 1, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = cfg.seq_len / 4, sc.block_length = sc.gen_length / 4, sc.steps = sc.gen_length;
    sc.eos_id = -1;
    if (which == BENCH_THRESHOLD) sc.threshold = 0.9f, sc.cache = CACHE_DUAL;
    if (which == BENCH_BD3_NO_CACHE) sc.cache = CACHE_NONE;
    int prompt[16] = {0};
    const int **prompts = malloc((size_t)batch * sizeof *prompts);
    int *lens = malloc((size_t)batch * sizeof(int)), *lengths = malloc((size_t)batch * sizeof(int));
    int *out = malloc((size_t)batch * (16 + sc.gen_length) * sizeof(int));
    for (int b = 0; b < batch; b++) prompts[b] = prompt, lens[b] = 16;
    SampleStats st;
    double t0 = now_seconds();
    int rc = sampler_run(SAMPLER_AUTO, &m, NULL, &sc, prompts, lens, batch, out, lengths, &st, NULL,
                         NULL, &err);
    if (rc) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    double dt = now_seconds() - t0;
    static const char *const names[] = {"LLaDA reference", "threshold 0.9 + dual cache",
                                        "AR baseline (KV cache)", "BD3 blocks of 16, cache",
                                        "BD3 blocks of 16, no cache"};
    printf("| %-28s | %d x %d | %d | %.0f |\n", names[which], batch, sc.gen_length, st.nfe,
           (double)batch * sc.gen_length / dt);
    free(prompts), free(lens), free(lengths), free(out);
    model_free(&m);
}

// One size: its training and sampling tables.
static void bench_size(const Backend *be, const char *size, int steps, int batch, double peak) {
    ModelConfig cfg = size_config(size);
    printf("bench: size %s on %s, %d timed steps, peak %.0f TFLOP/s\n", size, be->name, steps,
           peak);
    for (int recompute = 0; recompute <= 1; recompute++) {
        MemoryPlan plan = model_memory_plan(&cfg, be, batch, recompute);
        printf("recompute %d: ", recompute);
        memory_plan_print(stdout, &plan, be->name);
    }
    printf("\n| objective | params | batch x seq | ms/step | tokens/s | MFU |\n|---|---|---|---|---|---|\n");
    // 1b keeps every layer's activations only with recomputation on an 80 GB GPU
    int big = strcmp(size, "1b") == 0;
    bench_training(be, cfg, 0, big, batch, steps, peak);
    bench_training(be, cfg, 1, big, batch, steps, peak);
    if (!big) bench_training(be, cfg, 0, 1, batch, steps, peak);
    printf("\n| sampler | batch x gen | forward passes | tokens/s |\n|---|---|---|---|\n");
    bench_sampling(be, cfg, batch, BENCH_LLADA);
    bench_sampling(be, cfg, batch, BENCH_THRESHOLD);
    bench_sampling(be, cfg, batch, BENCH_AR);
    bench_sampling(be, cfg, batch, BENCH_BD3);
    bench_sampling(be, cfg, batch, BENCH_BD3_NO_CACHE);
    printf("\n");
}

int main(int argc, char **argv) {
    const char *size = "auto", *device = "auto";
    int steps = 10, batch = 8;
    float peak = 989.0f;
    Flag flags[] = {
        {"size", FLAG_STRING, &size, "auto (gpt2 and 350m on a GPU, tiny on a CPU), tiny, gpt2, 350m or 1b",
         FLAG_FREE, 0},
        {"device", FLAG_STRING, &device, "auto, cpu, cuda or cuda-fp32", FLAG_FREE, 0},
        {"steps", FLAG_INT, &steps, "timed training steps", FLAG_FREE, 0},
        {"batch", FLAG_INT, &batch, "sequences per step / per sampling batch", FLAG_FREE, 0},
        {"peak-tflops", FLAG_FLOAT, &peak, "the device's peak for MFU (H100 bf16 dense: 989)",
         FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, sizeof flags / sizeof flags[0], argc - 1, argv + 1,
                                 "usage: bench [--size S] [--device D] [--steps N]");
    if (rc) return rc < 0;
    static const char *const sizes[] = {"auto", "tiny", "gpt2", "350m", "1b"};
    Error err;
    const Backend *be = backend_by_name(device, &err);
    if (!be || flags_choice("size", size, sizes, 5, &err) < 0) return cli_fail(err.msg);
    if (steps < 1 || batch < 1) return cli_fail("bench: --steps and --batch must be >= 1");
    if (strcmp(size, "auto") != 0) {
        bench_size(be, size, steps, batch, peak);
    } else if (strcmp(be->name, "cpu") == 0) {
        bench_size(be, "tiny", steps < 5 ? steps : 5, batch, peak);
    } else {
        bench_size(be, "gpt2", steps, batch, peak);
        bench_size(be, "350m", steps, batch, peak);
    }
    return 0;
}
