// The whole transformer: gradient check of every parameter tensor for both attention modes,
// causality of the AR configuration, and gradient accumulation across micro-batches.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/bf16.h"
#include "model/model.h"
#include "tests/testutil.h"
#include "train/objective.h"
#include "common/rng.h"

static ModelConfig tiny_config(int causal) {
    ModelConfig c = model_config_default();
    c.n_layer = 2;
    c.n_head = 2;
    c.d_model = 8;
    c.d_ff = 12;
    c.vocab_size = 11;
    c.seq_len = 6;
    c.mask_token_id = 10;
    c.causal = causal;
    return c;
}

static Model make_model(const ModelConfig *c, int max_batch) {
    Model m;
    Error err;
    ck_assert_msg(model_create(&m, c, &backend_cpu, max_batch, 0, &err) == 0, "%s", err.msg);
    // larger than the training init, so that every gradient is well above fp32 noise
    fill_normal(m.params, m.n_params, 99, 0.5f);
    return m;
}

static void random_tokens(int *tokens, size_t n, int vocab, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)vocab);
}

typedef struct {
    Model *m;
    const int *inputs, *targets;
    const float *weights;
    int B, T;
    const int *picks;  // a mixture of experts: the unperturbed pass's picks (else NULL)
    int jumps;         // perturbations that changed a pick
} LossCase;

// Every MoE layer's picks of the last pass (a CPU model keeps them all in host memory).
static size_t pick_count(const Model *m) {
    return (size_t)model_moe_layers(&m->cfg) * m->max_batch * m->cfg.seq_len * m->cfg.n_active;
}

// The training loss: cross-entropy, plus a mixture of experts' load-balancing loss. A
// perturbation that changes which experts a row picks moves the loss by a jump, not a slope:
// NaN then, which grad_check's comparisons pass over (and the count says how many).
static double model_scalar(void *p) {
    LossCase *c = p;
    model_forward(c->m, c->inputs, c->B, c->T);
    double loss = model_loss(c->m, c->targets, c->weights) + (double)c->m->aux_loss;
    if (c->picks && memcmp(c->picks, c->m->acts.moe.pick, pick_count(c->m) * sizeof(int))) {
        c->jumps++;
        return NAN;
    }
    return loss;
}

// A mixture of experts in the second of the two layers (the first stays dense): 4 experts of
// width 6, 2 per token, a shared expert of width 5. router 0: LLaDA-MoE's softmax router with
// the load-balancing loss; 1: LLaDA 2.0's grouped sigmoid router (2 groups of 2, the best one
// eligible, weights scaled by 2.5) with an expert bias.
static ModelConfig moe_shape(ModelConfig c, int router) {
    c.n_experts = 4, c.n_active = 2, c.d_expert = 6, c.d_shared = 5, c.dense_layers = 1;
    c.router = router;
    if (router == ROUTER_SOFTMAX) c.aux_loss_coef = 0.1f;
    else c.n_groups = 2, c.topk_groups = 1, c.routed_scale = 2.5f, c.expert_bias = 1;
    return c;
}

// The shapes released models add: grouped-query attention (one key/value head for two query
// heads), q/k/v biases and an LM head tied to the embedding.
static ModelConfig imported_shape(ModelConfig c) {
    c.n_kv_head = 1;
    c.qkv_bias = 1;
    c.tied_embeddings = 1;
    return c;
}

// Every parameter of every tensor against central differences of the loss. imported 2 adds
// the newer families' shapes: Qwen3's per-head q/k norms, and for AR Mistral's sliding window;
// 5 a head size apart from d_model / n_head (Qwen3-0.6B's kind) and LLaDA 2.0's partial
// rotary.
// imported 3 and 4: a mixture of experts with each router (moe_shape) and the q/k norms.
static void check_model_gradients(int causal, int imported) {
    ModelConfig cfg = tiny_config(causal);
    if (imported) cfg = imported_shape(cfg);
    if (imported == 2) cfg.qk_norm = 1, cfg.sliding_window = causal ? 3 : 0;
    if (imported == 5) cfg.head_dim = 6, cfg.rotary_dim = 4;  // heads of 6, not d_model / n_head
    if (imported == 3 || imported == 4) cfg = moe_shape(cfg, imported - 3), cfg.qk_norm = 1;
    int B = 2, T = cfg.seq_len, N = B * T;
    Model m = make_model(&cfg, B);
    // normalised q and k of this tiny head size attend almost uniformly with gains of 1, which
    // leaves wq's and wk's gradients at fp32 noise: gains of 3 sharpen the attention
    if (cfg.qk_norm)
        for (size_t i = 0; i < (size_t)cfg.n_layer * (cfg.d_model / cfg.n_head); i++)
            m.p.q_norm[i] = m.p.k_norm[i] = 3.0f;
    if (cfg.expert_bias)  // shifts which experts are picked, nothing else
        for (int e = 0; e < cfg.n_experts; e++) m.p.expert_bias[e] = 0.1f * e;
    int tokens[2 * 7], inputs[12], targets[12];
    float weights[12];
    random_tokens(tokens, 2 * 7, cfg.vocab_size - 1, 5);
    if (causal) {
        ar_shift_batch(tokens, B, T, inputs, targets, weights);
    } else {
        // every third token masked (t = 1/3): enough unmasked context that the attention
        // weights, and so wq and wk, matter to the loss well above fp32 noise
        for (int i = 0; i < N; i++) {
            int masked = i % 3 == 1;
            inputs[i] = masked ? cfg.mask_token_id : tokens[i];
            targets[i] = tokens[i];
            weights[i] = masked ? 3.0f / N : 0.0f;
        }
    }
    LossCase c = {&m, inputs, targets, weights, B, T, NULL, 0};
    model_zero_grad(&m);
    model_forward(&m, inputs, B, T);
    float loss = model_loss(&m, targets, weights);
    int *picks = NULL;
    if (cfg.n_experts) {
        picks = malloc(pick_count(&m) * sizeof(int));
        memcpy(picks, m.acts.moe.pick, pick_count(&m) * sizeof(int));
        c.picks = picks;
    }
    // the fused training pass gives the forward's loss, and the gradients checked below
    ck_assert_float_eq(model_loss_backward(&m, targets, weights), loss);

    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(&cfg, specs);
    size_t offset = 0;
    static const char *const shapes[] = {"", " gqa+bias+tied", " gqa+bias+tied+qk-norm+window",
                                         " moe softmax+aux+shared", " moe sigmoid-grouped+bias",
                                         " gqa+bias+tied, heads of 6, rope on 4"};
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        if (!specs[i].size) continue;
        if (i == PARAM_EXPERT_BIAS) {  // never trained: no gradient
            for (size_t j = 0; j < specs[i].size; j++) ck_assert(m.grads[offset + j] == 0.0f);
            offset += specs[i].size;
            continue;
        }
        double err = grad_check(model_scalar, &c, m.params + offset, m.grads + offset,
                                specs[i].size, 2e-2f, 0);
        printf("  %s%s model grad check %-10s (%4zu params) max rel err %.2e\n",
               causal ? "AR " : "MDM", shapes[imported],
               specs[i].name,
               specs[i].size, err);
        fflush(stdout);
        ck_assert_msg(err < 1e-2, "%s: relative gradient error %g", specs[i].name, err);
        offset += specs[i].size;
    }
    if (picks) {  // most perturbations leave the picks as they were
        printf("  %s%s: %d of %zu perturbations changed a pick (skipped)\n",
               causal ? "AR " : "MDM", shapes[imported], c.jumps, 4 * m.n_params);
        ck_assert((size_t)c.jumps < 4 * m.n_params / 10);
        free(picks);
    }
    model_free(&m);
}

START_TEST(test_model_gradients_bidirectional) { check_model_gradients(0, 0); }
END_TEST

START_TEST(test_model_gradients_causal) { check_model_gradients(1, 0); }
END_TEST

START_TEST(test_model_gradients_gqa_bias_tied) {
    check_model_gradients(0, 1);
    check_model_gradients(1, 1);
}
END_TEST

START_TEST(test_model_gradients_qk_norm_sliding_window) {
    check_model_gradients(0, 2);
    check_model_gradients(1, 2);
}
END_TEST

START_TEST(test_model_gradients_head_dim_partial_rope) {
    check_model_gradients(0, 5);
    check_model_gradients(1, 5);
}
END_TEST

START_TEST(test_model_gradients_mixture_of_experts) {
    check_model_gradients(0, 3);
    check_model_gradients(0, 4);
    check_model_gradients(1, 3);
}
END_TEST

// Logits of sequence b at position t, copied out.
static void logits_copy(const Model *m, float *out) {
    memcpy(out, m->acts.logits, (size_t)m->B * m->T * m->cfg.vocab_size * sizeof(float));
}

static void check_dependence(int causal) {
    ModelConfig cfg = tiny_config(causal);
    int B = 2, T = cfg.seq_len, V = cfg.vocab_size;
    Model m = make_model(&cfg, B);
    int tokens[12];
    float *base = malloc((size_t)B * T * V * sizeof(float));
    float *changed = malloc((size_t)B * T * V * sizeof(float));
    random_tokens(tokens, B * T, V, 7);
    model_forward(&m, tokens, B, T);
    logits_copy(&m, base);
    for (int j = 0; j < T; j++) {
        int saved = tokens[j];  // token j of sequence 0
        tokens[j] = (saved + 1) % V;
        model_forward(&m, tokens, B, T);
        logits_copy(&m, changed);
        tokens[j] = saved;
        for (int t = 0; t < T; t++) {
            int same = memcmp(base + t * V, changed + t * V, V * sizeof(float)) == 0;
            if (causal && t < j)
                ck_assert_msg(same, "AR: changing token %d changed logits at position %d", j, t);
            else
                ck_assert_msg(!same, "%s: changing token %d left logits at position %d unchanged",
                              causal ? "AR" : "MDM", j, t);
        }
        // sequences in a batch never see each other
        ck_assert_mem_eq(base + T * V, changed + T * V, T * V * sizeof(float));
    }
    free(base);
    free(changed);
    model_free(&m);
}

START_TEST(test_ar_is_causal) { check_dependence(1); }
END_TEST

START_TEST(test_mdm_sees_every_position) { check_dependence(0); }
END_TEST

START_TEST(test_gradient_accumulation) {
    // Two micro-batches at half weight accumulate the gradient of the batch they form together.
    ModelConfig cfg = tiny_config(1);
    int B = 2, T = cfg.seq_len, N = B * T;
    Model m = make_model(&cfg, B);
    int windows[2 * 7], inputs[12], targets[12];
    float weights[12];
    random_tokens(windows, 2 * 7, cfg.vocab_size, 8);
    ar_shift_batch(windows, B, T, inputs, targets, weights);
    model_zero_grad(&m);
    model_forward(&m, inputs, B, T);
    float full_loss = model_loss_backward(&m, targets, weights);
    float *full = malloc(m.n_params * sizeof(float));
    memcpy(full, m.grads, m.n_params * sizeof(float));

    model_zero_grad(&m);
    float accum_loss = 0.0f;
    for (int b = 0; b < B; b++) {
        // a batch of one sequence weighs its positions 1/T; half of that is 1/(2T), as in the pair
        float half[6];
        for (int i = 0; i < T; i++) half[i] = weights[b * T + i] * (float)B / 2.0f;
        model_forward(&m, inputs + b * T, 1, T);
        accum_loss += model_loss_backward(&m, targets + b * T, half);
    }
    ck_assert_float_eq_tol(accum_loss, full_loss, 1e-5f);
    double max_diff = 0.0, max_abs = 0.0;
    for (size_t i = 0; i < m.n_params; i++) {
        max_diff = fmax(max_diff, fabs(full[i] - m.grads[i]));
        max_abs = fmax(max_abs, fabs(full[i]));
    }
    ck_assert_msg(max_diff < 1e-5 * max_abs, "accumulated gradient off by %g (scale %g)", max_diff,
                  max_abs);
    (void)N;
    free(full);
    model_free(&m);
}
END_TEST

// Gradients of a model that recomputes each layer in the backward pass, against one that
// keeps every layer's activations: the same ops on the same inputs, so the same bits.
static void check_recompute(int causal, int moe) {
    ModelConfig cfg = tiny_config(causal);
    cfg.n_layer = 3;
    cfg.qk_norm = causal;  // the AR case with Qwen3's q/k norms: their inputs refilled too
    if (moe) cfg = moe_shape(cfg, ROUTER_SOFTMAX);  // two MoE layers, routed again
    int B = 2, T = cfg.seq_len, N = B * T;
    Model keep = make_model(&cfg, B), again;
    Error err;
    ck_assert_msg(model_create(&again, &cfg, &backend_cpu, B, 1, &err) == 0, "%s", err.msg);
    memcpy(again.params, keep.params, keep.n_params * sizeof(float));
    int inputs[12], targets[12];
    float weights[12];
    random_tokens(inputs, N, cfg.vocab_size, 21);
    random_tokens(targets, N, cfg.vocab_size, 22);
    for (int i = 0; i < N; i++) weights[i] = (float)(i % 3) / N;
    Model *models[2] = {&keep, &again};
    float losses[2];
    for (int i = 0; i < 2; i++) {
        model_zero_grad(models[i]);
        model_forward(models[i], inputs, B, T);
        losses[i] = model_loss_backward(models[i], targets, weights);
    }
    ck_assert_float_eq(losses[0], losses[1]);
    ck_assert_mem_eq(keep.grads, again.grads, keep.n_params * sizeof(float));
    MemoryPlan full = model_memory_plan(&cfg, &backend_cpu, B, 0);
    MemoryPlan lean = model_memory_plan(&cfg, &backend_cpu, B, 1);
    printf("  %s%s recompute: activations %zu -> %zu bytes, gradients identical\n",
           causal ? "AR " : "MDM", moe ? " moe" : "", full.activations, lean.activations);
    ck_assert(lean.activations < full.activations);
    ck_assert(lean.params == full.params && lean.optimizer == 2 * full.params);
    model_free(&keep);
    model_free(&again);
}

START_TEST(test_recompute_gives_identical_gradients) {
    check_recompute(0, 0);
    check_recompute(1, 0);
    check_recompute(0, 1);
}
END_TEST

START_TEST(test_memory_plan_scales) {
    // the kept activations grow with batch size and the per-layer part vanishes with recompute
    ModelConfig cfg = model_config_default();
    MemoryPlan b8 = model_memory_plan(&cfg, &backend_cpu, 8, 0),
               b16 = model_memory_plan(&cfg, &backend_cpu, 16, 0);
    ck_assert_uint_eq(b8.params, param_count(&cfg) * sizeof(float));
    ck_assert(b16.activations > b8.activations * 19 / 10);
    cfg.n_layer *= 2;
    MemoryPlan deeper = model_memory_plan(&cfg, &backend_cpu, 8, 0),
               deeper_lean = model_memory_plan(&cfg, &backend_cpu, 8, 1);
    cfg.n_layer /= 2;
    MemoryPlan lean = model_memory_plan(&cfg, &backend_cpu, 8, 1);
    // recomputing, a layer costs only its residual-stream slice
    size_t per_layer_kept = deeper.activations - b8.activations;
    size_t per_layer_lean = deeper_lean.activations - lean.activations;
    size_t resid = (size_t)cfg.n_layer * 8 * cfg.seq_len * cfg.d_model * sizeof(float);
    ck_assert_uint_eq(per_layer_lean, resid);
    ck_assert(per_layer_kept > 8 * per_layer_lean);
}
END_TEST

START_TEST(test_memory_plan_1b_bf16) {
    // A 1.2B model (TinyLlama's shape, a 32000-token vocabulary) at 8 x 2048 tokens on a
    // backend that stores activations in bf16 (backend_cuda's act_bytes; the plan reads no
    // more of the table): what fits one 80 GB GPU.
    ModelConfig cfg = model_config_default();
    cfg.n_layer = 22, cfg.n_head = 32, cfg.d_model = 2048, cfg.d_ff = 5632, cfg.seq_len = 2048;
    cfg.vocab_size = 32000, cfg.mask_token_id = 31999;
    Backend bf16_acts = backend_cpu;
    bf16_acts.act_bytes = 2;
    double gb = 1e9;
    for (int recompute = 0; recompute <= 1; recompute++) {
        MemoryPlan fp32 = model_memory_plan(&cfg, &backend_cpu, 8, recompute);
        MemoryPlan bf16 = model_memory_plan(&cfg, &bf16_acts, 8, recompute);
        double total32 = (fp32.params + fp32.grads + fp32.optimizer + fp32.activations) / gb;
        double total16 = (bf16.params + bf16.grads + bf16.optimizer + bf16.activations) / gb;
        printf("  %.2fB params, 8 x 2048, recompute %d: activations %.2f GB fp32, %.2f GB bf16; "
               "total %.2f / %.2f GB\n",
               param_count(&cfg) / 1e9, recompute, fp32.activations / gb, bf16.activations / gb,
               total32, total16);
        // halved up to the fp32 statistics (rstd, lse, losses) and the 256-byte alignment
        ck_assert(bf16.activations < fp32.activations * 0.51);
        if (recompute) ck_assert(total16 < 40.0);
    }
}
END_TEST

START_TEST(test_shorter_sequences) {
    // A batch shorter than seq_len (LLaDA's random-length batches) gives the same logits as
    // the same tokens alone: nothing of the unused tail leaks in.
    ModelConfig cfg = tiny_config(0);
    Model m = make_model(&cfg, 2);
    int tokens[12];
    random_tokens(tokens, 12, cfg.vocab_size, 9);
    model_forward(&m, tokens, 1, 3);
    float first[3 * 11];
    memcpy(first, m.acts.logits, sizeof first);
    model_forward(&m, tokens, 2, 6);
    model_forward(&m, tokens, 1, 3);
    ck_assert_mem_eq(first, m.acts.logits, sizeof first);
    model_free(&m);
}
END_TEST

// An inference model on the CPU reads its projections and LM head from panels (converted in
// place by its first pass): its logits are a training model's to rounding, for a plain and an
// imported shape (GQA, biases, tied head: the head stays rows), and weights set after a pass
// (back to rows, converted again) give the new model's logits. On the bf16-weight table the
// panels are bf16: the logits are those of fp32 weights rounded to bf16.
static void check_inference_panels(ModelConfig cfg, const Backend *be) {
    Error err;
    Model train = make_model(&cfg, 2), infer;
    ck_assert_msg(model_create(&infer, &cfg, be, 2, MODEL_INFERENCE, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(infer.kind, WEIGHTS_PANELS);
    int tokens[12], V = cfg.vocab_size;
    random_tokens(tokens, 12, V, 5);
    for (int round = 0; round < 2; round++) {
        if (round) fill_normal(train.params, train.n_params, 7, 0.5f);
        if (be->weight_bytes == 2)
            for (size_t i = 0; i < train.n_params; i++)
                train.params[i] = bf16_to_float(float_to_bf16(train.params[i]));
        ck_assert_int_eq(model_set_weights(&infer, train.params, &err), 0);
        model_forward(&train, tokens, 2, 6);
        model_forward(&infer, tokens, 2, 6);
        ck_assert_int_eq(infer.lin.in_panels, 1);
        const float *got = infer.acts.logits, *want = train.acts.logits;
        double worst = 0.0;
        for (int i = 0; i < 12 * V; i++) worst = fmax(worst, fabs(got[i] - want[i]));
        ck_assert_msg(worst < 1e-4, "round %d: max |logit difference| %g", round, worst);
    }
    model_free(&train);
    model_free(&infer);
}

START_TEST(test_inference_panels_give_the_same_logits) {
    const Backend *tables[] = {&backend_cpu, backend_cpu_bf16_weights()};
    for (int b = 0; b < 2; b++) {
        check_inference_panels(tiny_config(0), tables[b]);
        check_inference_panels(imported_shape(tiny_config(1)), tables[b]);
    }
}
END_TEST

// An inference model whose layers share one key/value slice (model_keep_kv 0: a sampler
// without a cache) gives the same logits for whole-row passes, bit for bit, and never writes
// the other layers' slices.
START_TEST(test_unkept_kv_gives_the_same_logits) {
    ModelConfig cfg = tiny_config(0);
    Error err;
    Model m;
    ck_assert_msg(model_create(&m, &cfg, &backend_cpu, 2, MODEL_INFERENCE, &err) == 0, "%s",
                  err.msg);
    float *w = malloc(param_count(&cfg) * sizeof(float));
    fill_normal(w, param_count(&cfg), 3, 0.5f);
    ck_assert_int_eq(model_set_weights(&m, w, &err), 0);
    int tokens[12], V = cfg.vocab_size;
    random_tokens(tokens, 12, V, 4);
    float kept[12 * 11], unkept[12 * 11];
    model_infer(&m, tokens, NULL, 2, 6, 0, 6);
    memcpy(kept, m.acts.logits, sizeof kept);
    size_t slice = (size_t)12 * model_kv_dim(&cfg), rest = (cfg.n_layer - 1) * slice;
    float *k_rest = (float *)m.acts.k + slice, *v_rest = (float *)m.acts.v + slice;
    for (size_t i = 0; i < rest; i++) k_rest[i] = v_rest[i] = 7.0f;
    model_keep_kv(&m, 0);
    model_infer(&m, tokens, NULL, 2, 6, 0, 6);
    memcpy(unkept, m.acts.logits, sizeof unkept);
    model_keep_kv(&m, 1);
    ck_assert_mem_eq(kept, unkept, sizeof kept);
    for (size_t i = 0; i < rest; i++) ck_assert(k_rest[i] == 7.0f && v_rest[i] == 7.0f);
    free(w);
    model_free(&m);
}
END_TEST

// On the bf16-pairs table (--weights bf16) the projections' inputs are rounded to bf16 too: the
// logits are the exact bf16-weight model's up to that rounding, plain and imported shapes.
START_TEST(test_bf16_pairs_model_gives_the_bf16_logits) {
    for (int k = 0; k < 2; k++) {
        ModelConfig cfg = tiny_config(0);
        cfg.d_model = 32, cfg.d_ff = 48;
        if (k) cfg = imported_shape(cfg);
        Error err;
        Model exact, pairs;
        ck_assert_msg(model_create(&exact, &cfg, backend_cpu_bf16_weights(), 2, MODEL_INFERENCE,
                                   &err) == 0, "%s", err.msg);
        ck_assert_msg(model_create(&pairs, &cfg, backend_cpu_bf16_pairs(), 2, MODEL_INFERENCE,
                                   &err) == 0, "%s", err.msg);
        float *w = malloc(param_count(&cfg) * sizeof(float));
        fill_normal(w, param_count(&cfg), 7, 0.3f);
        ck_assert_int_eq(model_set_weights(&exact, w, &err), 0);
        ck_assert_int_eq(model_set_weights(&pairs, w, &err), 0);
        int tokens[12], V = cfg.vocab_size;
        random_tokens(tokens, 12, V, 5);
        model_forward(&exact, tokens, 2, 6);
        model_forward(&pairs, tokens, 2, 6);
        const float *got = pairs.acts.logits, *want = exact.acts.logits;
        double worst = 0.0, scale = 0.0;
        for (int i = 0; i < 12 * V; i++) {
            worst = fmax(worst, fabs(got[i] - want[i]));
            scale = fmax(scale, fabs(want[i]));
        }
        ck_assert_msg(worst < 0.03 * scale && worst > 0.0, "%g of %g", worst, scale);
        printf("  bf16 pairs model: logits within %.4f of the largest exact bf16 logit%s\n",
               worst / scale, k ? " (tied head, GQA, biases)" : "");
        free(w);
        model_free(&exact);
        model_free(&pairs);
    }
}
END_TEST

// A block-quantised model (MODEL_Q8 / MODEL_Q4: embedding, projections and LM head in blocks of
// 32, inputs quantised to 8 bits per block) made from a training model's weights gives its
// logits up to the rounding (4-bit weights: a looser bound), for a plain and an imported shape
// (GQA, biases, tied head), also after its weights are set again; its weights take under a
// third (a fifth) of fp32's memory. Widths that are not whole blocks, and tables without block
// ops, are refused by name.
static void check_qb_model(ModelConfig cfg, ModelMode mode) {
    Error err;
    int bits = mode == MODEL_Q8 ? 8 : 4;
    Model train = make_model(&cfg, 2), qb;
    ck_assert_msg(model_create(&qb, &cfg, &backend_cpu, 2, mode, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(linear_block_bits(qb.kind), bits);
    ck_assert(linear_param_bytes(&cfg, &backend_cpu, qb.kind) * (bits == 8 ? 3 : 5) <
              param_count(&cfg) * sizeof(float));
    int tokens[12], V = cfg.vocab_size;
    random_tokens(tokens, 12, V, 5);
    for (int round = 0; round < 2; round++) {
        fill_normal(train.params, train.n_params, 7 + round, 0.1f);
        ck_assert_int_eq(model_set_weights(&qb, train.params, &err), 0);
        model_forward(&train, tokens, 2, 6);
        model_forward(&qb, tokens, 2, 6);
        const float *got = qb.acts.logits, *want = train.acts.logits;
        double worst = 0.0, scale = 0.0;
        int agree = 0;
        for (int i = 0; i < 12 * V; i++) {
            worst = fmax(worst, fabs(got[i] - want[i]));
            scale = fmax(scale, fabs(want[i]));
        }
        for (int r = 0; r < 12; r++)
            agree += argmax_row(got + r * V, V) == argmax_row(want + r * V, V);
        ck_assert_msg(worst < (bits == 8 ? 0.05 : 0.3) * scale && agree >= (bits == 8 ? 10 : 7),
                      "%d bits, round %d: max |logit difference| %g of %g, argmax %d of 12", bits,
                      round, worst, scale, agree);
        if (round)
            printf("  %d-bit model: logits within %.3f of the largest, argmax %d of 12%s\n", bits,
                   worst / scale, agree, cfg.tied_embeddings ? " (tied head, GQA, biases)" : "");
    }
    model_free(&train);
    model_free(&qb);
}

// Weights set a piece at a time (whole panels of 16 rows, as GGUF files are read) give the
// model of the whole upload; a piece that splits a panel is refused by name.
static void check_qb_pieces(ModelConfig cfg) {
    Error err;
    Model whole, pieces;
    ck_assert_int_eq(model_create(&whole, &cfg, &backend_cpu, 2, MODEL_Q4, &err), 0);
    ck_assert_int_eq(model_create(&pieces, &cfg, &backend_cpu, 2, MODEL_Q4, &err), 0);
    size_t n = param_count(&cfg);
    float *w = malloc(n * sizeof(float));
    fill_normal(w, n, 11, 0.1f);
    ck_assert_int_eq(model_set_weights(&whole, w, &err), 0);
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(&cfg, specs);
    size_t at = 0;
    for (int i = 0; i < N_PARAM_TENSORS; at += specs[i].size, i++)
        for (size_t v = 0; v < specs[i].size; v += 32 * specs[i].cols) {
            size_t k = specs[i].size - v < 32 * specs[i].cols ? specs[i].size - v : 32 * specs[i].cols;
            ck_assert_int_eq(model_set_weight_range(&pieces, at + v, w + at + v, k, &err), 0);
        }
    int tokens[12];
    random_tokens(tokens, 12, cfg.vocab_size, 6);
    model_forward(&whole, tokens, 2, 6);
    model_forward(&pieces, tokens, 2, 6);
    ck_assert_mem_eq(whole.acts.logits, pieces.acts.logits, 12 * cfg.vocab_size * sizeof(float));
    ck_assert_int_eq(model_set_weight_range(&pieces, 8 * cfg.d_model, w + 8 * cfg.d_model,
                                            16 * cfg.d_model, &err), -1);
    ck_assert_msg(strstr(err.msg, "tok_emb of layer 0 given from value"), "%s", err.msg);
    free(w);
    model_free(&whole);
    model_free(&pieces);
}

START_TEST(test_qb_models_give_the_fp32_logits) {
    ModelConfig cfg = tiny_config(0);
    cfg.d_model = 64, cfg.d_ff = 96, cfg.vocab_size = 40, cfg.mask_token_id = 39;
    for (int k = 0; k < 2; k++) {
        check_qb_model(cfg, k ? MODEL_Q4 : MODEL_Q8);
        check_qb_model(imported_shape(cfg), k ? MODEL_Q4 : MODEL_Q8);
    }
    check_qb_pieces(cfg);
    Model m;
    Error err;
    ModelConfig odd = cfg;
    odd.d_ff = 80;
    ck_assert_int_eq(model_create(&m, &odd, &backend_cpu, 1, MODEL_Q4, &err), -1);
    ck_assert_msg(strstr(err.msg, "d_ff 80 must be multiples"), "%s", err.msg);
    ck_assert_int_eq(model_create(&m, &cfg, backend_cpu_bf16_weights(), 1, MODEL_Q8, &err), -1);
    ck_assert_msg(strstr(err.msg, "8-bit weights run on the CPU backend"), "%s", err.msg);
}
END_TEST

START_TEST(test_init_is_seeded) {
    ModelConfig cfg = tiny_config(0);
    Model a = make_model(&cfg, 1), b = make_model(&cfg, 1);
    ck_assert(model_init_params(&a, 42, NULL) == 0);
    ck_assert(model_init_params(&b, 42, NULL) == 0);
    ck_assert_mem_eq(a.params, b.params, a.n_params * sizeof(float));
    ck_assert(model_init_params(&b, 43, NULL) == 0);
    ck_assert(memcmp(a.params, b.params, a.n_params * sizeof(float)) != 0);
    ck_assert_float_eq(a.p.final_norm[0], 1.0f);  // norm gains start at 1
    model_free(&a);
    model_free(&b);
}
END_TEST

// The host copy of fresh weights is as large as the model: when it cannot be had, an error
// (it was written through unchecked: a crash). The address space is capped just above what
// the process uses once the model exists (Check runs each test in its own process).
START_TEST(test_init_out_of_memory_is_an_error) {
#ifdef __SANITIZE_ADDRESS__
    // AddressSanitizer's own allocator cannot live under an address-space cap: the plain build
    // runs this test
    printf("  init out of memory: skipped under AddressSanitizer\n");
    return;
#endif
    ModelConfig c = model_config_default();
    c.n_layer = 4, c.d_model = 256, c.d_ff = 1024, c.n_head = 4, c.seq_len = 32;
    Model m;
    Error err;
    ck_assert(model_create(&m, &c, &backend_cpu, 1, 0, &err) == 0);
    long pages = 0, page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert(f && fscanf(f, "%ld", &pages) == 1);
    fclose(f);
    struct rlimit lim = {(rlim_t)(pages * page + (m.n_params * sizeof(float)) / 2),
                         RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
    ck_assert_int_eq(model_init_params(&m, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "out of host memory for the initial weights"), "%s", err.msg);
}
END_TEST

START_TEST(test_bad_config_is_refused) {
    ModelConfig cfg = tiny_config(0);
    cfg.d_model = 9;  // not a multiple of n_head
    Model m;
    Error err;
    ck_assert_int_eq(model_create(&m, &cfg, &backend_cpu, 1, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, "multiple of n_head") != NULL, "%s", err.msg);
    cfg = tiny_config(0);
    cfg.mask_token_id = cfg.vocab_size;
    ck_assert_int_eq(model_create(&m, &cfg, &backend_cpu, 1, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, "mask_token_id") != NULL, "%s", err.msg);
    cfg = tiny_config(0);
    cfg.n_kv_head = 3;  // does not divide n_head
    ck_assert_int_eq(model_create(&m, &cfg, &backend_cpu, 1, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, "n_kv_head") != NULL, "%s", err.msg);
}
END_TEST

// Block diffusion's reductions (BD3-LM): blocks as long as the sequence give the MDM's loss
// and gradients, blocks of one the AR loss (tests/testutil.c; test_gpu runs them on CUDA).
START_TEST(test_bd3_reduces_to_mdm_and_ar) {
    double e_mdm = bd3_mdm_reduction_error(&backend_cpu);
    double e_ar = bd3_ar_reduction_error(&backend_cpu);
    printf("  bd3, block = seq_len vs mdm: rel. error %.1e (loss and gradients); block = 1 vs "
           "ar: %.1e\n", e_mdm, e_ar);
    ck_assert(e_mdm < 1e-5 && e_ar < 1e-5);
}
END_TEST

// The annealing window: 0 keys past the query is causal attention (the logits of the same
// weights as an AR model), the whole sequence is the MDM's bidirectional attention.
START_TEST(test_attention_window_spans_causal_to_full) {
    ModelConfig bidir = tiny_config(0), causal = tiny_config(1);
    Model a = make_model(&bidir, 1), c = make_model(&causal, 1);
    int tokens[6] = {1, 4, 2, 8, 5, 7};
    size_t n = (size_t)6 * bidir.vocab_size;
    float *full = malloc(n * sizeof(float)), *ar = malloc(n * sizeof(float));
    model_forward(&a, tokens, 1, 6);
    memcpy(full, a.acts.logits, n * sizeof(float));
    model_forward(&c, tokens, 1, 6);
    memcpy(ar, c.acts.logits, n * sizeof(float));
    a.window = 0;
    model_forward(&a, tokens, 1, 6);
    ck_assert_mem_eq(a.acts.logits, ar, n * sizeof(float));
    a.window = 2;  // in between: neither
    model_forward(&a, tokens, 1, 6);
    ck_assert(memcmp(a.acts.logits, ar, n * sizeof(float)) != 0 &&
              memcmp(a.acts.logits, full, n * sizeof(float)) != 0);
    a.window = 6;
    model_forward(&a, tokens, 1, 6);
    ck_assert_mem_eq(a.acts.logits, full, n * sizeof(float));
    free(full), free(ar);
    model_free(&a), model_free(&c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("transformer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_model_gradients_bidirectional);
    tcase_add_test(tc, test_model_gradients_causal);
    tcase_add_test(tc, test_model_gradients_gqa_bias_tied);
    tcase_add_test(tc, test_model_gradients_qk_norm_sliding_window);
    tcase_add_test(tc, test_model_gradients_mixture_of_experts);
    tcase_add_test(tc, test_model_gradients_head_dim_partial_rope);
    tcase_add_test(tc, test_ar_is_causal);
    tcase_add_test(tc, test_mdm_sees_every_position);
    tcase_add_test(tc, test_gradient_accumulation);
    tcase_add_test(tc, test_shorter_sequences);
    tcase_add_test(tc, test_inference_panels_give_the_same_logits);
    tcase_add_test(tc, test_qb_models_give_the_fp32_logits);
    tcase_add_test(tc, test_bf16_pairs_model_gives_the_bf16_logits);
    tcase_add_test(tc, test_unkept_kv_gives_the_same_logits);
    tcase_add_test(tc, test_recompute_gives_identical_gradients);
    tcase_add_test(tc, test_memory_plan_scales);
    tcase_add_test(tc, test_memory_plan_1b_bf16);
    tcase_add_test(tc, test_init_is_seeded);
    tcase_add_test(tc, test_init_out_of_memory_is_an_error);
    tcase_add_test(tc, test_bad_config_is_refused);
    tcase_add_test(tc, test_bd3_reduces_to_mdm_and_ar);
    tcase_add_test(tc, test_attention_window_spans_causal_to_full);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
