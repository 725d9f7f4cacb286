// LoRA adapters on a frozen base (model/lora.c; the branch in model/linear.c): a
// fresh adapter changes no logit, the adapters' gradients pass the finite-difference check on
// an fp32 and on a bf16 base, merged weights give the adapted model's logits, recomputation
// gives the same gradients, training leaves the base's bytes alone, and an 8B base fits the
// memory plan of one 80 GB card.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "common/rng.h"
#include "model/lora.h"
#include "model/model.h"
#include "tests/testutil.h"
#include "train/objective.h"
#include "train/trainer.h"

static ModelConfig tiny_config(int causal, int imported) {
    ModelConfig c = model_config_default();
    c.n_layer = 2, c.n_head = 2, c.d_model = 8, c.d_ff = 12, c.vocab_size = 11, c.seq_len = 6;
    c.mask_token_id = 10, c.causal = causal;
    if (imported) c.n_kv_head = 1, c.qkv_bias = 1, c.tied_embeddings = 1, c.head_dim = 6;
    return c;
}

static LoraConfig every_target(int rank) {
    LoraConfig lc = {.rank = rank, .alpha = 2.0f * rank, .targets = (1u << N_LORA_TARGETS) - 1};
    snprintf(lc.base, sizeof lc.base, "/nonexistent/base");
    return lc;
}

// Random base weights (std 0.5: every gradient well above fp32 noise), rounded to bf16 when
// the model keeps them so, so that an fp32 model given the same host values matches.
static float *base_weights(const ModelConfig *c, int round) {
    size_t n = param_count(c);
    float *w = malloc(n * sizeof(float));
    fill_normal(w, n, 99, 0.5f);
    for (size_t i = 0; round && i < n; i++) w[i] = bf16_to_float(float_to_bf16(w[i]));
    return w;
}

static void make(Model *m, const ModelConfig *c, const LoraConfig *lc, const Backend *be,
                 int batch, ModelMode mode, const float *weights) {
    Error err;
    ck_assert_msg(model_create_lora(m, c, lc, be, batch, mode, &err) == 0, "%s", err.msg);
    ck_assert(model_set_weights(m, weights, &err) == 0);
}

static void random_tokens(int *tokens, size_t n, int vocab, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)vocab);
}

static float *logits_of(Model *m, const int *tokens, int B, int T) {
    size_t n = (size_t)B * T * m->cfg.vocab_size;
    float *out = malloc(n * sizeof(float));
    model_forward(m, tokens, B, T);
    m->be->act_to_host(out, m->acts.logits, n);
    return out;
}

START_TEST(test_fresh_adapter_leaves_logits_bit_identical) {
    // B starts at zero, so every branch adds exactly 0: the base's logits to the bit, for an
    // fp32 base and for a bf16 one, bidirectional and causal, with GQA, biases and a tied head
    for (int variant = 0; variant < 4; variant++) {
        int causal = variant & 1, bf16 = variant >> 1;
        ModelConfig c = tiny_config(causal, bf16);
        const Backend *be = bf16 ? backend_cpu_bf16_weights() : &backend_cpu;
        float *w = base_weights(&c, bf16);
        LoraConfig lc = every_target(4);
        Model base, adapted;
        make(&base, &c, NULL, be, 2, MODEL_INFERENCE, w);
        make(&adapted, &c, &lc, be, 2, MODEL_TRAINING, w);
        ck_assert(model_init_lora(&adapted, 7, NULL) == 0);
        int tokens[12];
        random_tokens(tokens, 12, c.vocab_size, 3);
        float *a = logits_of(&base, tokens, 2, 6), *b = logits_of(&adapted, tokens, 2, 6);
        size_t n = 12 * (size_t)c.vocab_size, same = 0;
        for (size_t i = 0; i < n; i++) same += a[i] == b[i];
        printf("  fresh rank-4 adapter, %s %s base: %zu of %zu logits identical\n",
               causal ? "AR" : "MDM", bf16 ? "bf16" : "fp32", same, n);
        ck_assert_uint_eq(same, n);
        ck_assert(adapted.grads == NULL && adapted.adam_m == NULL);  // the base is frozen
        free(a), free(b), free(w);
        model_free(&base);
        model_free(&adapted);
    }
}
END_TEST

typedef struct {
    Model *m;
    const int *inputs, *targets;
    const float *weights;
} LossCase;

static double loss_of(void *p) {
    LossCase *c = p;
    model_forward(c->m, c->inputs, 2, c->m->cfg.seq_len);
    return model_loss(c->m, c->targets, c->weights);
}

// Adapters with B away from zero (else A's gradient vanishes), and a batch with every third
// position scored.
static void loss_case(Model *m, int *inputs, int *targets, float *weights) {
    float *host = malloc(m->n_lora * sizeof(float));
    fill_normal(host, m->n_lora, 11, 0.5f);
    model_set_lora(m, host);
    free(host);
    int N = 2 * m->cfg.seq_len;
    random_tokens(inputs, N, m->cfg.vocab_size, 5);
    random_tokens(targets, N, m->cfg.vocab_size - 1, 6);
    for (int i = 0; i < N; i++) {
        if (!m->cfg.causal && i % 3 == 1) inputs[i] = m->cfg.mask_token_id;
        weights[i] = i % 3 == 1 ? 3.0f / N : 0.0f;
    }
}

// One training pass: the adapters' gradients of the batch's loss into m->lora_grads.
static void adapter_gradients(Model *m, const int *inputs, const int *targets,
                              const float *weights) {
    model_zero_grad(m);
    model_forward(m, inputs, 2, m->cfg.seq_len);
    model_loss_backward(m, targets, weights);
}

START_TEST(test_adapter_gradients_pass_finite_differences) {
    // every adapter value of every target, on an fp32 base and on a bf16 base (whose backward
    // reads the bf16 weights: input gradients only)
    for (int variant = 0; variant < 4; variant++) {
        int causal = variant & 1, bf16 = variant >> 1;
        ModelConfig c = tiny_config(causal, variant == 1);
        const Backend *be = bf16 ? backend_cpu_bf16_weights() : &backend_cpu;
        float *w = base_weights(&c, bf16);
        LoraConfig lc = every_target(2);
        Model m;
        make(&m, &c, &lc, be, 2, MODEL_TRAINING, w);
        int inputs[12], targets[12];
        float weights[12];
        loss_case(&m, inputs, targets, weights);
        LossCase lcase = {&m, inputs, targets, weights};
        adapter_gradients(&m, inputs, targets, weights);
        double err = grad_check(loss_of, &lcase, m.lora_params, m.lora_grads, m.n_lora, 2e-2f, 0);
        printf("  %s, %s base: %zu adapter values, max rel grad err %.2e\n",
               causal ? "AR " : "MDM", bf16 ? "bf16" : "fp32", m.n_lora, err);
        ck_assert_msg(err < 1e-2, "relative gradient error %g", err);
        free(w);
        model_free(&m);
    }
}
END_TEST

START_TEST(test_recompute_gives_identical_adapter_gradients) {
    ModelConfig c = tiny_config(0, 0);
    float *w = base_weights(&c, 0);
    LoraConfig lc = every_target(3);
    Model keep, again;
    make(&keep, &c, &lc, &backend_cpu, 2, MODEL_TRAINING, w);
    make(&again, &c, &lc, &backend_cpu, 2, MODEL_RECOMPUTE, w);
    int inputs[12], targets[12];
    float weights[12];
    loss_case(&keep, inputs, targets, weights);
    loss_case(&again, inputs, targets, weights);
    adapter_gradients(&keep, inputs, targets, weights);
    adapter_gradients(&again, inputs, targets, weights);
    ck_assert_mem_eq(keep.lora_grads, again.lora_grads, keep.n_lora * sizeof(float));
    free(w);
    model_free(&keep);
    model_free(&again);
}
END_TEST

START_TEST(test_merged_weights_give_the_adapted_logits) {
    ModelConfig c = tiny_config(0, 1);
    float *w = base_weights(&c, 0);
    LoraConfig lc = every_target(4);
    Model adapted, merged;
    make(&adapted, &c, &lc, &backend_cpu, 2, MODEL_INFERENCE, w);
    float *adapters = malloc(adapted.n_lora * sizeof(float));
    fill_normal(adapters, adapted.n_lora, 13, 0.3f);
    model_set_lora(&adapted, adapters);
    lora_merge(w, adapters, &c, &lc);
    make(&merged, &c, NULL, &backend_cpu, 2, MODEL_INFERENCE, w);
    int tokens[12];
    random_tokens(tokens, 12, c.vocab_size, 4);
    float *a = logits_of(&adapted, tokens, 2, 6), *b = logits_of(&merged, tokens, 2, 6);
    size_t n = 12 * (size_t)c.vocab_size;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(a[i] - b[i]));
        scale = fmax(scale, fabs(a[i]));
    }
    printf("  merged vs adapted logits: max |diff| %.2e (largest logit %.2f)\n", worst, scale);
    ck_assert(worst <= 1e-5 * scale);
    // and the adapters moved the logits, so the comparison says something
    Model base;
    float *plain = base_weights(&c, 0);
    make(&base, &c, NULL, &backend_cpu, 2, MODEL_INFERENCE, plain);
    float *p = logits_of(&base, tokens, 2, 6);
    double moved = 0;
    for (size_t i = 0; i < n; i++) moved = fmax(moved, fabs(a[i] - p[i]));
    ck_assert(moved > 0.1);
    free(a), free(b), free(p), free(w), free(plain), free(adapters);
    model_free(&adapted);
    model_free(&merged);
    model_free(&base);
}
END_TEST

// A mixture of experts under adapters on every target: the MoE layer's gate, up and down
// adapt each routed expert and the shared expert (model/lora.h's units). A fresh adapter
// changes no logit; the adapters' gradients pass finite differences (a perturbation that
// changes a pick is a jump, skipped and counted); recomputation gives the same gradients; the
// merged weights give the adapted logits.
typedef struct {
    LossCase c;
    const int *picks;  // the unperturbed pass's picks of the MoE layer
    size_t n_picks;
    int jumps;
} MoeLossCase;

static double moe_loss_of(void *p) {
    MoeLossCase *c = p;
    double loss = loss_of(&c->c);
    if (memcmp(c->picks, c->c.m->acts.moe.pick, c->n_picks * sizeof(int))) {
        c->jumps++;
        return NAN;
    }
    return loss;
}

START_TEST(test_expert_adapters) {
    ModelConfig c = tiny_config(0, 0);
    c.n_experts = 4, c.n_active = 2, c.d_expert = 6, c.d_shared = 5, c.dense_layers = 1;
    c.aux_loss_coef = 0.0f;  // the adapters' loss alone (the balancing loss has its own check)
    float *w = base_weights(&c, 0);
    LoraConfig lc = every_target(2);
    Model m, again;
    make(&m, &c, &lc, &backend_cpu, 2, MODEL_TRAINING, w);
    // layer 0: 7 projections; layer 1: q k v o, and gate/up/down on 4 experts + the shared one
    size_t want = 0;
    for (int l = 0; l < 2; l++)
        for (int t = 0; t < N_LORA_TARGETS; t++)
            for (int u = 0; u < lora_units(&c, l, t); u++) {
                int in, out;
                lora_unit_shape(&c, l, t, u, &in, &out);
                want += 2 * (size_t)(in + out);
            }
    ck_assert_uint_eq(m.n_lora, want);
    ck_assert_int_eq(lora_units(&c, 1, LORA_UP), 5);
    int inputs[12], targets[12];
    float weights[12];
    loss_case(&m, inputs, targets, weights);
    adapter_gradients(&m, inputs, targets, weights);
    size_t n_picks = (size_t)2 * c.seq_len * c.n_active;
    int *picks = malloc(n_picks * sizeof(int));
    memcpy(picks, m.acts.moe.pick, n_picks * sizeof(int));
    MoeLossCase mc = {{&m, inputs, targets, weights}, picks, n_picks, 0};
    double err = grad_check(moe_loss_of, &mc, m.lora_params, m.lora_grads, m.n_lora, 2e-2f, 0);
    printf("  MDM moe: %zu adapter values (experts' and shared expert's included), max rel grad "
           "err %.2e; %d of %zu perturbations changed a pick (skipped)\n", m.n_lora, err,
           mc.jumps, 4 * m.n_lora);
    ck_assert_msg(err < 1e-2, "relative gradient error %g", err);
    ck_assert((size_t)mc.jumps < 4 * m.n_lora / 10);
    // recomputation: the same gradient bits
    make(&again, &c, &lc, &backend_cpu, 2, MODEL_RECOMPUTE, w);
    model_set_lora(&again, m.lora_params);
    adapter_gradients(&m, inputs, targets, weights);
    adapter_gradients(&again, inputs, targets, weights);
    ck_assert_mem_eq(m.lora_grads, again.lora_grads, m.n_lora * sizeof(float));
    // merged into the experts' weights: the adapted logits
    Model merged, inference;
    make(&inference, &c, &lc, &backend_cpu, 2, MODEL_INFERENCE, w);
    model_set_lora(&inference, m.lora_params);
    lora_merge(w, m.lora_params, &c, &lc);
    make(&merged, &c, NULL, &backend_cpu, 2, MODEL_INFERENCE, w);
    float *a = logits_of(&inference, inputs, 2, 6), *b = logits_of(&merged, inputs, 2, 6);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < 12 * (size_t)c.vocab_size; i++) {
        worst = fmax(worst, fabs(a[i] - b[i]));
        scale = fmax(scale, fabs(a[i]));
    }
    printf("  MDM moe: merged vs adapted logits max |diff| %.2e (largest %.2f)\n", worst, scale);
    ck_assert(worst <= 1e-5 * scale);
    free(a), free(b), free(w), free(picks);
    model_free(&m), model_free(&again), model_free(&merged), model_free(&inference);
}
END_TEST

START_TEST(test_training_leaves_the_base_bytes_alone) {
    // 30 AdamW steps of rank-4 adapters on the verse: the loss falls, the adapters move, and
    // the frozen base's bytes (bf16 here, as an imported model keeps them) are unchanged
    TokenData data = verse_data();
    ModelConfig c = model_config_default();
    c.n_layer = 2, c.n_head = 4, c.d_model = 64, c.d_ff = 176, c.seq_len = 32, c.causal = 1;
    const Backend *be = backend_cpu_bf16_weights();
    size_t n = param_count(&c);
    float *w = malloc(n * sizeof(float));
    params_init(w, &c, 1);
    LoraConfig lc = every_target(4);
    Model m;
    make(&m, &c, &lc, be, 4, MODEL_TRAINING, w);
    ck_assert(model_init_lora(&m, 2, NULL) == 0);
    size_t bytes = n * be->weight_bytes;
    unsigned char *before = malloc(bytes), *after = malloc(bytes);
    memcpy(before, m.params, bytes);
    TrainConfig tc = train_config_default();
    tc.objective = OBJECTIVE_AR, tc.batch_size = 4, tc.steps = 30, tc.warmup_steps = 5;
    tc.lr = 1e-2f, tc.min_lr = 1e-3f;
    Trainer tr;
    Error err;
    ck_assert_msg(trainer_init(&tr, &m, &tc, &data, &err) == 0, "%s", err.msg);
    float first = 0, last = 0;
    for (int s = 0; s < 30; s++) {
        StepStats st = trainer_step(&tr);
        ck_assert(!st.skipped);
        if (s == 0) first = st.loss;
        last = st.loss;
    }
    memcpy(after, m.params, bytes);
    printf("  30 steps of rank-4 adapters on a bf16 base: loss %.3f -> %.3f, base bytes %s\n",
           first, last, memcmp(before, after, bytes) ? "CHANGED" : "unchanged");
    ck_assert(memcmp(before, after, bytes) == 0);
    ck_assert(last < first - 0.3f);
    trainer_free(&tr);
    model_free(&m);
    free(before), free(after), free(w);
    data_free(&data);
}
END_TEST

START_TEST(test_memory_plan_8b_base_fits_80gb) {
    // LLaDA-8B's shape (32 layers, d 4096, d_ff 12288, vocabulary 126464) as a bf16 base with
    // rank-16 adapters on every projection, 4 x 1024 tokens, recomputed, on a table that
    // stores activations in bf16 (backend_cuda's act_bytes and weight_bytes; the plan reads no
    // more of the table)
    ModelConfig c = model_config_default();
    c.n_layer = 32, c.n_head = 32, c.d_model = 4096, c.d_ff = 12288, c.seq_len = 1024;
    c.vocab_size = 126464, c.mask_token_id = 126336;
    Backend bf16 = backend_cpu;
    bf16.act_bytes = 2, bf16.weight_bytes = 2;
    LoraConfig lc = every_target(16);
    double gb = 1e9;
    for (int recompute = 0; recompute <= 1; recompute++) {
        MemoryPlan p = model_memory_plan_lora(&c, &lc, &bf16, 4, recompute);
        double total = (p.params + p.grads + p.optimizer + p.activations + p.adapters) / gb;
        printf("  8B base (%.2fB params) bf16 + rank 16 (%.1fM adapter values), 4 x 1024, "
               "recompute %d: base %.2f GB, adapters+grads+AdamW %.3f GB, activations %.2f GB, "
               "total %.2f GB\n", param_count(&c) / 1e9, lora_param_count(&c, &lc) / 1e6,
               recompute, p.params / gb, p.adapters / gb, p.activations / gb, total);
        ck_assert_uint_eq(p.grads + p.optimizer, 0);  // nothing for the frozen base
        if (recompute) ck_assert(total < 40.0);       // room to spare on 80 GB
    }
}
END_TEST

START_TEST(test_bad_lora_configs_are_refused) {
    ModelConfig c = tiny_config(0, 0);
    Model m;
    Error err;
    uint32_t targets;
    ck_assert_int_eq(lora_parse_targets("q,k,vv", &targets, &err), -1);
    ck_assert_msg(strstr(err.msg, "'vv'"), "%s", err.msg);
    ck_assert_int_eq(lora_parse_targets("", &targets, &err), -1);
    ck_assert_int_eq(lora_parse_targets("q,down", &targets, &err), 0);
    ck_assert_uint_eq(targets, (1u << LORA_Q) | (1u << LORA_DOWN));
    LoraConfig lc = every_target(0);
    lc.rank = -1;
    ck_assert_int_eq(model_create_lora(&m, &c, &lc, &backend_cpu, 2, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, "rank"), "%s", err.msg);
    lc = every_target(2);
    lc.alpha = NAN;
    ck_assert_int_eq(model_create_lora(&m, &c, &lc, &backend_cpu, 2, 0, &err), -1);
    // bf16 weights train only as a frozen base
    ck_assert_int_eq(model_create(&m, &c, backend_cpu_bf16_weights(), 2, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, "frozen"), "%s", err.msg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("lora");
    TCase *tc = tcase_create("adapters");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fresh_adapter_leaves_logits_bit_identical);
    tcase_add_test(tc, test_adapter_gradients_pass_finite_differences);
    tcase_add_test(tc, test_recompute_gives_identical_adapter_gradients);
    tcase_add_test(tc, test_expert_adapters);
    tcase_add_test(tc, test_merged_weights_give_the_adapted_logits);
    tcase_add_test(tc, test_training_leaves_the_base_bytes_alone);
    tcase_add_test(tc, test_memory_plan_8b_base_fits_80gb);
    tcase_add_test(tc, test_bad_lora_configs_are_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
