// Models from elsewhere: tiny LLaDA, Dream, LLaMA and Qwen2 models saved by their reference
// implementations (scripts/make_hf_model_fixtures.py: tests/fixtures/hf_models), loaded by dllm
// and compared logit for logit with the reference's; LoRA adapters saved by peft on two of them
// (scripts/make_peft_fixtures.py: tests/fixtures/peft) likewise; safetensors validation; export
// round trips.
#define _GNU_SOURCE  // memmem
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bf16.h"
#include "common/file.h"
#include "common/json.h"
#include "model/hf_model.h"
#include "model/model.h"
#include "model/peft.h"
#include "model/safetensors.h"
#include "sampler/sampler.h"
#include "tests/testutil.h"
#include "store/checkpoint.h"
#include "train/run_dir.h"

#define FIXTURES "tests/fixtures/hf_models/"

static const Backend *be = &backend_cpu;

// The logits of the reference tokens for checkpoint ck's inference model (freed after), and
// the model's config and bytes per weight (2: the file's bf16, as stored).
static float *checkpoint_logits(ModelSource *ck, const Reference *r, ModelConfig *cfg,
                                size_t *weight_bytes) {
    Model m;
    Error err;
    ck_assert_msg(model_source_build(ck, be, r->B, &m, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(m.cfg.vocab_size, r->V);
    *cfg = m.cfg;
    *weight_bytes = m.be->weight_bytes;
    model_forward(&m, r->tokens, r->B, r->T);
    size_t n = (size_t)r->B * r->T * r->V;
    float *out = malloc(n * sizeof(float));
    be->act_to_host(out, m.acts.logits, n);
    model_free(&m);
    model_source_free(ck);
    return out;
}

// dllm's logits of the reference tokens for the model in dir (a fixture or an export).
static float *dllm_logits(const char *dir, const Reference *r, ModelConfig *cfg,
                          size_t *weight_bytes) {
    ModelSource ck;
    Error err;  // the commands' path: weights streamed from the files into the model
    ck_assert_msg(model_source_from_hf(dir, HF_WEIGHTS_LATER, &ck, &err) == 0, "%s", err.msg);
    ck_assert_ptr_null(ck.params);
    return checkpoint_logits(&ck, r, cfg, weight_bytes);
}

static void check_fixture(const char *name, int kv_heads, int bias, int tied, int bf16) {
    char dir[256];
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    Reference r = reference_read(dir);
    ModelConfig cfg;
    size_t weight_bytes;
    float *logits = dllm_logits(dir, &r, &cfg, &weight_bytes);
    double err = max_relative_error(logits, r.logits, (size_t)r.B * r.T * r.V);
    printf("  %-10s %-24s %s weights: max relative logit error %.2e, argmax equal in every row\n", name,
           cfg.causal          ? "(causal)"
           : cfg.logit_shift   ? "(bidirectional, shifted)"
           : cfg.block_size    ? "(block-causal)"
                               : "(bidirectional)",
           weight_bytes == 2 ? "bf16" : "fp32", err);
    ck_assert_int_eq(weight_bytes, bf16 ? 2 : 4);  // a bf16 file's weights stay bf16
    fflush(stdout);
    ck_assert_msg(err < 1e-5, "%s: logits differ from the reference: %g", name, err);
    // greedy decoding picks the same token at every row
    size_t rows = (size_t)r.B * r.T, same = 0;
    for (size_t i = 0; i < rows; i++)
        same += argmax_row(logits + i * r.V, r.V) == argmax_row(r.logits + i * r.V, r.V);
    ck_assert_msg(same == rows, "%s: the argmax differs in %zu of %zu rows", name, rows - same,
                  rows);
    ck_assert_int_eq(model_kv_heads(&cfg), kv_heads);
    ck_assert_int_eq(cfg.qkv_bias, bias);
    ck_assert_int_eq(cfg.tied_embeddings, tied);
    free(logits), free(r.tokens), free(r.logits);
}

START_TEST(test_llada_matches_reference) { check_fixture("llada", 2, 0, 0, 0); }
END_TEST

START_TEST(test_llada_bf16_matches_reference) { check_fixture("llada_bf16", 2, 0, 0, 1); }
END_TEST

START_TEST(test_dream_matches_reference) {
    check_fixture("dream", 2, 1, 0, 0);
    ModelSource ck;
    Error err;
    ck_assert(model_source_from_hf(FIXTURES "dream", HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
    ck_assert_int_eq(ck.header.model.logit_shift, 1);
    ck_assert_int_eq(ck.header.model.mask_token_id, 1003);
    ck_assert_int_eq(ck.tokenizer.mask_id, 1003);
    model_source_free(&ck);
}
END_TEST

// -log softmax(row)[target], in double
static double nll(const float *row, int V, int target) {
    double maxv = -INFINITY, sum = 0.0;
    for (int v = 0; v < V; v++) maxv = fmax(maxv, row[v]);
    for (int v = 0; v < V; v++) sum += exp(row[v] - maxv);
    return maxv + log(sum) - row[target];
}

// Dream reads position t's prediction from logit row t - 1: the loss does, and the sampler
// does (greedy, one token per step, against the same rule written out here).
START_TEST(test_dream_reads_logits_one_row_back) {
    Reference r = reference_read(FIXTURES "dream");
    ModelSource ck;
    Error err;
    ck_assert(model_source_from_hf(FIXTURES "dream", HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
    Model m;
    ck_assert(model_source_build(&ck, be, r.B, &m, &err) == 0);
    int N = r.B * r.T, V = r.V, mask = m.cfg.mask_token_id;
    int *targets = calloc(N, sizeof(int));
    float *weights = calloc(N, sizeof(float));
    double expect = 0.0;
    for (int t = 1; t < r.T; t += 3) {  // score positions 1, 4, 7, 10 of sequence 1
        int n = r.T + t;
        targets[n] = (t * 37) % 900;
        weights[n] = 1.0f;
        expect += nll(r.logits + (size_t)(n - 1) * V, V, targets[n]);
    }
    model_forward(&m, r.tokens, r.B, r.T);
    double loss = model_loss(&m, targets, weights);
    printf("  dream loss at shifted rows: %.6f, written out %.6f\n", loss, expect);
    ck_assert_double_eq_tol(loss, expect, 1e-4 * expect);

    // greedy sampling, one token per step, of 6 tokens after a 4-token prompt
    int P = 4, G = 6, T = P + G, x[10], out[10], len;
    const int *prompts[1] = {r.tokens};
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = G, sc.block_length = G, sc.steps = G, sc.temperature = 0.0f;
    ck_assert_msg(llada_generate(&m, &sc, prompts, &P, 1, out, &len, NULL, NULL, NULL, &err) == 0,
                  "%s", err.msg);
    memcpy(x, r.tokens, P * sizeof(int));
    for (int i = P; i < T; i++) x[i] = mask;
    float *logits = malloc((size_t)T * V * sizeof(float));
    for (int step = 0; step < G; step++) {
        model_forward(&m, x, 1, T);
        be->act_to_host(logits, m.acts.logits, (size_t)T * V);
        int best_pos = -1, best_tok = -1;
        double best = -1.0;
        for (int t = P; t < T; t++) {
            if (x[t] != mask) continue;
            const float *row = logits + (size_t)(t - 1) * V;  // one row back
            int arg = -1;
            for (int v = 0; v < V; v++)
                if (v != mask && (arg < 0 || row[v] > row[arg])) arg = v;
            double z = 0.0;
            for (int v = 0; v < V; v++)
                if (v != mask) z += exp((double)row[v] - row[arg]);
            if (1.0 / z > best) best = 1.0 / z, best_pos = t, best_tok = arg;
        }
        x[best_pos] = best_tok;
    }
    ck_assert_mem_eq(out + P, x + P, G * sizeof(int));
    printf("  dream greedy sampling: the same %d tokens as the one-row-back rule\n", G);
    free(logits), free(targets), free(weights), free(r.tokens), free(r.logits);
    model_free(&m);
    model_source_free(&ck);
}
END_TEST

// ---- the exact-LLaDA sampler against LLaDA's own generate() ----

typedef struct {
    const JsonValue *states;  // [steps][B][T] the reference sequences after each step
    int B, T, step, first_bad;
} TraceCheck;

static int compare_step(void *user, const StepEvent *ev) {
    TraceCheck *c = user;
    const JsonValue *state = c->step < c->states->n ? &c->states->items[c->step] : NULL;
    for (int b = 0; b < c->B && c->first_bad < 0; b++)
        for (int t = 0; t < c->T && c->first_bad < 0; t++)
            if (!state || (int)state->items[b].items[t].number != ev->tokens[(size_t)b * ev->T + t])
                c->first_bad = c->step;
    c->step++;
    return 0;
}

// A LLaDA model whose [MASK] wins about a quarter of its argmaxes, sampled with --allow-mask 1:
// every step's sequences equal those of LLaDA's generate() (the reference's states, committed
// by scripts/make_hf_model_fixtures.py --llada), including cases where a position left [MASK]
// by an earlier block is committed in a later one, with and without guidance, batches of 2.
START_TEST(test_exact_mode_follows_llada_generate) {
    const char *dir = FIXTURES "llada_mask_wins";
    char *text, path[512];
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/reference_trace.json", dir);
    ck_assert_msg(file_read_all(path, &text, &n, &err) == 0, "%s", err.msg);
    JsonValue root;
    ck_assert_msg(json_parse(text, &root, &err) == 0, "%s", err.msg);
    free(text);
    ModelSource ck;
    ck_assert_msg(model_source_from_hf(dir, HF_WEIGHTS_ON_HOST, &ck, &err) == 0, "%s", err.msg);
    Model m;
    ck_assert_msg(model_source_build(&ck, be, 4, &m, &err) == 0, "%s", err.msg);
    const JsonValue *cases = json_member(&root, "cases");
    int equal = 0, revisits = 0;
    for (int k = 0; k < cases->n; k++) {
        const JsonValue *c = &cases->items[k], *prompts = json_member(c, "prompts");
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = (int)json_member(c, "gen_length")->number;
        sc.block_length = (int)json_member(c, "block_length")->number;
        sc.steps = (int)json_member(c, "steps")->number;
        sc.cfg_scale = (float)json_member(c, "cfg")->number;
        sc.temperature = 0.0f, sc.allow_mask = 1, sc.eos_id = -1;
        int B = prompts->n, P = prompts->items[0].n, T = P + sc.gen_length;
        int ids[2][64], *rows[2], lens[2], out[2 * 128], lengths[2];
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < P; t++) ids[b][t] = (int)prompts->items[b].items[t].number;
            rows[b] = ids[b], lens[b] = P;
        }
        TraceCheck check = {json_member(c, "states"), B, T, 0, -1};
        ck_assert_msg(llada_generate(&m, &sc, (const int *const *)rows, lens, B, out, lengths,
                                     NULL, compare_step, &check, &err) == 0, "%s", err.msg);
        // a position of an earlier block still [MASK] when a block starts (then a candidate)
        int per_block = sc.steps / (sc.gen_length / sc.block_length), revisit = 0;
        for (int s = per_block - 1; s < check.states->n - 1; s += per_block)
            for (int b = 0; b < B; b++)
                for (int t = P; t < P + (s + 1) / per_block * sc.block_length; t++)
                    revisit |= (int)check.states->items[s].items[b].items[t].number ==
                               m.cfg.mask_token_id;
        revisits += revisit;
        int same = check.first_bad < 0 && check.step == check.states->n;
        if (!same)
            printf("  case %d: differs from LLaDA's generate() at step %d of %d\n", k,
                   check.first_bad, check.states->n);
        equal += same;
    }
    printf("  exact mode: %d of %d cases equal LLaDA's generate() at every step (in %d a block "
           "starts with an earlier block's [MASK] still there)\n", equal, cases->n, revisits);
    ck_assert_int_eq(equal, cases->n);
    ck_assert_int_gt(revisits, 0);
    json_free(&root);
    model_free(&m);
    model_source_free(&ck);
}
END_TEST

START_TEST(test_llama_matches_reference) { check_fixture("llama", 2, 0, 1, 0); }
END_TEST

START_TEST(test_qwen2_bf16_matches_reference) { check_fixture("qwen2", 1, 1, 1, 1); }
END_TEST

// Qwen3 (transformers 5's class): per-head RMS norms on q and k with random gains, GQA, tied;
// and a Qwen3 whose heads are not hidden_size / heads.
START_TEST(test_qwen3_qk_norm_matches_reference) {
    check_fixture("qwen3", 2, 0, 1, 0);
    ModelSource ck;
    Error err;
    ck_assert(model_source_from_hf(FIXTURES "qwen3", HF_CONFIG_ONLY, &ck, &err) == 0);
    ck_assert_int_eq(ck.header.model.qk_norm, 1);
    model_source_free(&ck);
    // Qwen3-0.6B's kind: heads of 16 over hidden 32 / 4 heads (q and the attention output 64
    // wide), untied head
    check_fixture("qwen3_hd", 2, 0, 0, 0);
    ck_assert(model_source_from_hf(FIXTURES "qwen3_hd", HF_CONFIG_ONLY, &ck, &err) == 0);
    ck_assert_int_eq(ck.header.model.head_dim, 16);
    ck_assert_int_eq(model_q_dim(&ck.header.model), 64);
    model_source_free(&ck);
}
END_TEST

// Every MoE layer's picks of the fixture's tokens against the reference's `picks` [MoE
// layers, B * T, k], expert for expert, in order (a training model keeps each layer's).
static void check_picks(const char *name, const ModelSource *ck) {
    const ModelConfig *c = &ck->header.model;
    char path[256];
    snprintf(path, sizeof path, FIXTURES "%s/reference.safetensors", name);
    Safetensors st;
    Error err;
    ck_assert(safetensors_open(&st, path, &err) == 0);
    const SafetensorsTensor *t = safetensors_find(&st, "picks");
    int layers = model_moe_layers(c);
    ck_assert(t && t->ndim == 3 && t->shape[0] == layers && t->shape[2] == c->n_active);
    size_t rows = (size_t)t->shape[1], per_layer = rows * c->n_active;
    float *want = malloc(layers * per_layer * sizeof(float));
    ck_assert(safetensors_read(&st, "picks", t->shape, 3, want, &err) == 0);
    safetensors_close(&st);
    snprintf(path, sizeof path, FIXTURES "%s", name);
    Reference r = reference_read(path);
    ck_assert_int_eq((size_t)r.B * r.T, rows);
    Model m;
    ck_assert_msg(model_create(&m, c, be, r.B, MODEL_TRAINING, &err) == 0, "%s", err.msg);
    ck_assert(model_set_weights(&m, ck->params, &err) == 0);
    model_forward(&m, r.tokens, r.B, r.T);
    size_t same = 0, stride = (size_t)r.B * c->seq_len * c->n_active;  // a layer's slice
    for (int l = 0; l < layers; l++)
        for (size_t i = 0; i < per_layer; i++)
            same += m.acts.moe.pick[l * stride + i] == (int)want[l * per_layer + i];
    printf("  %s routing: %zu of %zu picks (%d MoE layers x %zu rows x %d) equal the "
           "reference's, in order\n", name, same, layers * per_layer, layers, rows, c->n_active);
    ck_assert_uint_eq(same, layers * per_layer);
    model_free(&m);
    free(want), free(r.tokens), free(r.logits);
}

// LLaDA-MoE (its own modeling file): a dense layer, then two MoE layers of 8 experts, 2 picked
// per token, a shared expert, q/k norms and a random expert bias. The logits, every MoE
// layer's picks, and the same model stored as bf16.
START_TEST(test_llada_moe_matches_reference) {
    check_fixture("llada_moe", 2, 0, 0, 0);
    ModelSource ck;
    Error err;
    ck_assert(model_source_from_hf(FIXTURES "llada_moe", HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
    const ModelConfig *c = &ck.header.model;
    ck_assert(c->n_experts == 8 && c->n_active == 2 && c->d_expert == 16 && c->d_shared == 24);
    ck_assert(c->dense_layers == 1 && c->expert_bias == 1 && c->qk_norm == 1 && !c->causal);
    check_picks("llada_moe", &ck);
    // stored as bf16 it keeps bf16 weights (the expert bias widened for the router): the logits
    // of an fp32 model given the same rounded weights
    Reference r = reference_read(FIXTURES "llada_moe");
    char out[256];
    snprintf(out, sizeof out, "/tmp/dllm_moe_bf16_%d", (int)getpid());
    ck_assert(hf_export(out, c, ck.params, -1, 0, SAFETENSORS_BF16, &err) == 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp " FIXTURES "llada_moe/tokenizer*.json %s", out);
    ck_assert_int_eq(system(cmd), 0);
    for (size_t i = 0; i < ck.header.n_params; i++)
        ck.params[i] = bf16_to_float(float_to_bf16(ck.params[i]));
    Model m;
    ck_assert(model_create(&m, c, be, r.B, MODEL_INFERENCE, &err) == 0);
    ck_assert(model_set_weights(&m, ck.params, &err) == 0);
    model_forward(&m, r.tokens, r.B, r.T);
    ModelConfig again;
    size_t weight_bytes;
    float *bf16_logits = dllm_logits(out, &r, &again, &weight_bytes);
    double e = max_relative_error(bf16_logits, m.acts.logits, (size_t)r.B * r.T * r.V);
    printf("  llada_moe in bf16: %zu-byte weights, logits within %.2e of fp32 with the same "
           "rounded weights\n", weight_bytes, e);
    ck_assert(weight_bytes == 2 && e < 1e-5);
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    ck_assert_int_eq(system(cmd), 0);
    free(bf16_logits), free(r.tokens), free(r.logits);
    model_free(&m);
    model_source_free(&ck);
}
END_TEST

// LLaDA 2.0 (its own modeling file): block diffusion over two blocks of 32 under its
// block-causal mask, a dense layer, then two MoE layers under the grouped sigmoid router (8
// experts in 4 groups, the best 2 groups eligible, 2 picks scaled by 2.5) with a random expert
// bias and a shared expert, q/k norms, RoPE on half of each head.
START_TEST(test_llada2_matches_reference) {
    check_fixture("llada2", 2, 0, 0, 0);
    ModelSource ck;
    Error err;
    ck_assert(model_source_from_hf(FIXTURES "llada2", HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
    const ModelConfig *c = &ck.header.model;
    ck_assert(c->block_size == 32 && c->rotary_dim == 4 && c->router == ROUTER_SIGMOID_GROUPED);
    ck_assert(c->n_experts == 8 && c->n_groups == 4 && c->topk_groups == 2 && c->n_active == 2);
    ck_assert(c->routed_scale == 2.5f && c->d_shared == 16 && c->dense_layers == 1);
    ck_assert(c->expert_bias && c->qk_norm && c->aux_loss_coef == 0.0f);
    check_picks("llada2", &ck);
    model_source_free(&ck);
}
END_TEST

// Mistral's sliding window (4 keys over 12 positions): the reference's logits, and without the
// window the first 4 rows stay and the later ones move (the window is what makes them equal).
START_TEST(test_mistral_sliding_window_matches_reference) {
    check_fixture("mistral", 2, 0, 0, 0);
    Reference r = reference_read(FIXTURES "mistral");
    ModelSource ck;
    Error err;
    ck_assert(model_source_from_hf(FIXTURES "mistral", HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
    ck_assert_int_eq(ck.header.model.sliding_window, 4);
    ck.header.model.sliding_window = 0;
    ModelConfig cfg;
    size_t weight_bytes;
    float *wide = checkpoint_logits(&ck, &r, &cfg, &weight_bytes);
    size_t row = (size_t)r.V, first = 4 * row;
    double early = 0.0, late = 0.0;
    for (int b = 0; b < r.B; b++) {
        const float *w = wide + (size_t)b * r.T * row, *ref = r.logits + (size_t)b * r.T * row;
        early = fmax(early, max_relative_error(w, ref, first));
        late = fmax(late, max_relative_error(w + first, ref + first, (size_t)(r.T - 4) * row));
    }
    printf("  mistral without its window: rows 0-3 within %.2e, rows 4-11 off by %.2e\n", early,
           late);
    ck_assert(early < 1e-5 && late > 1e-2);
    // greedy AR sampling (one new row a pass, the window through the key cache) gives at each
    // step the argmax of a whole pass over the sequence so far
    ck_assert(model_source_from_hf(FIXTURES "mistral", HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
    Model m;
    ck_assert(model_source_build(&ck, be, 1, &m, &err) == 0);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 10, sc.temperature = 0.0f, sc.eos_id = -1;
    const int *prompts[1] = {r.tokens};
    int P = 5, out[64], lengths[1];
    ck_assert_msg(ar_generate(&m, &sc, prompts, &P, 1, out, lengths, NULL, NULL, NULL, &err) == 0,
                  "%s", err.msg);
    float *logits = malloc((size_t)(P + sc.gen_length) * r.V * sizeof(float));
    for (int t = P; t < P + sc.gen_length; t++) {
        model_forward(&m, out, 1, t);
        be->act_to_host(logits, m.acts.logits, (size_t)t * r.V);
        const float *last = logits + (size_t)(t - 1) * r.V;
        int best = 0;
        for (int v = 1; v < r.V; v++) best = last[v] > last[best] ? v : best;
        ck_assert_int_eq(out[t], best);
    }
    printf("  mistral greedy: 10 tokens past a 5-token prompt, each the argmax of a whole pass\n");
    free(logits);
    model_free(&m);
    model_source_free(&ck);
    free(wide), free(r.tokens), free(r.logits);
}
END_TEST

// Llama 3.1/3.2's RoPE scaling, the fixture's settings: head 8's frequencies 1, 0.1, 0.01,
// 0.001 (wavelengths 6.3, 63, 628, 6283) against the bands < 32/4 kept, > 32/0.5 stretched
// by 32, between blended
START_TEST(test_llama3_rope_scaling_matches_reference) {
    check_fixture("llama3_rope", 2, 0, 1, 0);
    ModelConfig c = model_config_default();
    c.rope_scaling = (RopeScaling){32.0f, 0.5f, 4.0f, 32};
    double smooth = (32.0 / (2.0 * M_PI / 0.1) - 0.5) / (4.0 - 0.5);
    ck_assert_double_eq_tol(model_rope_frequency(&c, 0, 4), 1.0, 1e-12);
    ck_assert_double_eq_tol(model_rope_frequency(&c, 1, 4), (1 - smooth) * 0.1 / 32 + smooth * 0.1,
                            1e-12);
    ck_assert_double_eq_tol(model_rope_frequency(&c, 2, 4), 0.01 / 32, 1e-12);
}
END_TEST

// Configs as transformers >= 5 saves them: RoPE inside rope_parameters (rope_theta 500000 and
// 1e6 here: read as 10000 they would give other logits), the dtype as "dtype" (qwen2_tf5's
// bf16 weights stay bf16), Qwen2's layer_types; and llama3 scaling inside the block.
START_TEST(test_transformers5_configs_match_reference) {
    check_fixture("llama_tf5", 2, 0, 1, 0);
    check_fixture("qwen2_tf5", 1, 1, 1, 1);
    check_fixture("llama3_rope_tf5", 2, 0, 1, 0);
}
END_TEST

// Export writes what import reads: the same weights bit for bit (F32), and logits within
// bf16 rounding when exported as BF16.
START_TEST(test_export_round_trip) {
    const char *names[] = {"llada",  "dream",    "llama",    "qwen2",
                           "mistral", "qwen3", "qwen3_hd", "llada_moe"};
    for (int i = 0; i < 8; i++) {
        char dir[256], out[256];
        snprintf(dir, sizeof dir, FIXTURES "%s", names[i]);
        snprintf(out, sizeof out, "/tmp/dllm_export_%d_%s", (int)getpid(), names[i]);
        ModelSource ck;
        Error err;
        ck_assert(model_source_from_hf(dir, HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
        ck_assert_msg(hf_export(out, &ck.header.model, ck.params, -1, 0, SAFETENSORS_F32, &err) == 0,
                      "%s", err.msg);
        ModelConfig again;
        HfArch arch;
        ck_assert_msg(hf_config_read(out, &again, &arch, NULL, &err) == 0, "%s", err.msg);
        ck_assert_mem_eq(&again, &ck.header.model, sizeof again);
        float *copy = malloc(ck.header.n_params * sizeof(float));
        ck_assert(hf_weights_read(out, &again, arch, copy, NULL, &err) == 0);
        ck_assert_mem_eq(copy, ck.params, ck.header.n_params * sizeof(float));
        printf("  export %-9s -> %s layout: config and %llu weights identical\n", names[i],
               hf_arch_name(arch), (unsigned long long)ck.header.n_params);
        // bf16 export: every weight rounded once
        ck_assert(hf_export(out, &again, ck.params, -1, 0, SAFETENSORS_BF16, &err) == 0);
        ck_assert(hf_weights_read(out, &again, arch, copy, NULL, &err) == 0);
        for (size_t j = 0; j < ck.header.n_params; j++)
            ck_assert_float_eq(copy[j], bf16_to_float(float_to_bf16(ck.params[j])));
        free(copy);
        model_source_free(&ck);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", out);
        ck_assert_int_eq(system(cmd), 0);
    }
    // what transformers needs beside the weights: the released models' auto_map (LLaDA and
    // Dream load through AutoModel with their modeling files), and for a scaled RoPE a
    // max_position_embeddings no shorter than the context it was scaled from
    const char *wants[][2] = {
        {"llada", "\"auto_map\": {\"AutoConfig\": \"configuration_llada.LLaDAConfig\", "
                  "\"AutoModel\": \"modeling_llada.LLaDAModelLM\""},
        {"dream", "\"auto_map\": {\"AutoConfig\": \"configuration_dream.DreamConfig\", "
                  "\"AutoModel\": \"modeling_dream.DreamModel\"}"},
        {"llama3_rope", "\"max_position_embeddings\": 32,"}};
    for (int i = 0; i < 3; i++) {
        char dir[256], out[256], path[300], *text;
        size_t n;
        ModelSource ck;
        Error err;
        snprintf(dir, sizeof dir, FIXTURES "%s", wants[i][0]);
        snprintf(out, sizeof out, "/tmp/dllm_export_%d_%s", (int)getpid(), wants[i][0]);
        ck_assert(model_source_from_hf(dir, HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
        ck.header.model.seq_len = 16;  // trained at 16 from Llama 3's scaling of 32
        ck_assert_msg(hf_export(out, &ck.header.model, ck.params, -1, 0, SAFETENSORS_F32,
                                &err) == 0,
                      "%s", err.msg);
        snprintf(path, sizeof path, "%s/config.json", out);
        ck_assert(file_read_all(path, &text, &n, &err) == 0);
        ck_assert_msg(strstr(text, wants[i][1]), "%s not in %s", wants[i][1], text);
        free(text);
        model_source_free(&ck);
        snprintf(path, sizeof path, "rm -rf %s", out);
        ck_assert_int_eq(system(path), 0);
    }
}
END_TEST

// ---- LoRA adapters as peft writes them, on their base ----

// dllm's logits of the reference tokens for the adapters in dir, on the base they name.
static float *adapted_logits(const char *dir, const Reference *r, LoraConfig *lc) {
    ModelSource ck;
    char chosen[512];
    int skipped;
    Error err;
    ck_assert_msg(model_source_open(dir, HF_WEIGHTS_LATER, &ck, chosen, sizeof chosen,
                                    &skipped, &err) == 0, "%s", err.msg);
    *lc = ck.header.lora;
    ModelConfig cfg;
    size_t weight_bytes;
    return checkpoint_logits(&ck, r, &cfg, &weight_bytes);
}

static void check_peft_fixture(const char *name, int rank, float alpha, const char *targets) {
    char dir[256], got[64];
    snprintf(dir, sizeof dir, "tests/fixtures/peft/%s", name);
    Reference r = reference_read(dir);
    LoraConfig lc;
    float *logits = adapted_logits(dir, &r, &lc);
    double err = max_relative_error(logits, r.logits, (size_t)r.B * r.T * r.V);
    lora_format_targets(lc.targets, got, sizeof got);
    printf("  peft %-14s rank %d, alpha %g, targets %s: max relative logit error %.2e\n", name,
           lc.rank, lc.alpha, got, err);
    ck_assert_int_eq(lc.rank, rank);
    ck_assert_float_eq(lc.alpha, alpha);
    ck_assert_str_eq(got, targets);
    ck_assert_msg(err < 1e-5, "%s: logits differ from peft's: %g", name, err);
    free(logits), free(r.tokens), free(r.logits);
}

START_TEST(test_peft_adapters_match_reference) {
    check_peft_fixture("llama_all", 4, 8.0f, "q,k,v,o,gate,up,down");
    check_peft_fixture("qwen2_qv_down", 2, 5.0f, "q,v,down");  // on a bf16 base
}
END_TEST

// ---- bad input: one message naming the file (and tensor) and the problem ----

static char scratch[256];

// A copy of a fixture directory to break.
static const char *copy_fixture(const char *name) {
    snprintf(scratch, sizeof scratch, "/tmp/dllm_hfbad_%d", (int)getpid());
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r " FIXTURES "%s %s", scratch, name, scratch);
    ck_assert_int_eq(system(cmd), 0);
    return scratch;
}

static void expect_refused(const char *dir, const char *what) {
    ModelSource ck;
    Error err;
    ck_assert_int_eq(model_source_from_hf(dir, HF_WEIGHTS_ON_HOST, &ck, &err), -1);
    printf("  refused: %s\n", err.msg);
    ck_assert_msg(strstr(err.msg, what), "expected \"%s\" in: %s", what, err.msg);
}

// The config of the model directory dir, which must load.
static ModelConfig expect_read(const char *dir) {
    ModelSource ck;
    Error err;
    ck_assert_msg(model_source_from_hf(dir, HF_WEIGHTS_LATER, &ck, &err) == 0, "%s", err.msg);
    ModelConfig c = ck.header.model;
    model_source_free(&ck);
    return c;
}

// Replaces the first occurrence of `from` in dir/file by `to` (same length or not).
static void edit_file(const char *dir, const char *file, const char *from, const char *to) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    ck_assert(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *data = malloc(n + strlen(to) + 1);
    ck_assert(fread(data, 1, n, f) == (size_t)n);
    fclose(f);
    char *at = memmem(data, n, from, strlen(from));
    ck_assert_msg(at, "%s not in %s", from, path);
    size_t head = at - data, tail = n - head - strlen(from);
    f = fopen(path, "wb");
    fwrite(data, 1, head, f);
    fwrite(to, 1, strlen(to), f);
    fwrite(at + strlen(from), 1, tail, f);
    fclose(f);
    free(data);
}

// A copy of fixture `name` with the first `from` in its `file` replaced by `to`.
static const char *edited(const char *name, const char *file, const char *from, const char *to) {
    const char *d = copy_fixture(name);
    edit_file(d, file, from, to);
    return d;
}

static void truncate_file(const char *dir, const char *file, long keep) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    ck_assert_int_eq(truncate(path, keep), 0);
}

static void expect_peft_refused(const char *dir, const char *what) {
    ModelSource ck;
    Error err;
    ck_assert_int_eq(model_source_from_peft(dir, &ck, &err), -1);
    printf("  refused: %s\n", err.msg);
    ck_assert_msg(strstr(err.msg, what), "expected \"%s\" in: %s", what, err.msg);
}

// A copy of a peft fixture whose base path works from the project root.
static const char *copy_peft_fixture(void) {
    char cmd[700];
    snprintf(scratch, sizeof scratch, "/tmp/dllm_peftbad_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r tests/fixtures/peft/qwen2_qv_down %s", scratch,
             scratch);
    ck_assert_int_eq(system(cmd), 0);
    edit_file(scratch, "adapter_config.json", "../../hf_models/qwen2",
              "tests/fixtures/hf_models/qwen2");
    return scratch;
}

START_TEST(test_bad_peft_adapters_are_refused) {
    ModelSource ck;
    Error err;
    const char *dir = copy_peft_fixture();
    ck_assert_msg(model_source_from_peft(dir, &ck, &err) == 0, "%s", err.msg);
    model_source_free(&ck);
    edit_file(dir, "adapter_config.json", "\"use_dora\": false", "\"use_dora\": true");
    expect_peft_refused(dir, "use_dora");
    dir = copy_peft_fixture();
    edit_file(dir, "adapter_config.json", "tests/fixtures/hf_models/qwen2", "Qwen/Qwen2-0.5B");
    expect_peft_refused(dir, "'Qwen/Qwen2-0.5B' is not a local path");
    dir = copy_peft_fixture();
    edit_file(dir, "adapter_config.json", "\"r\": 2", "\"r\": 3");
    expect_peft_refused(dir, "lora_A.weight");  // the stored shapes are rank 2
    // an adapter on a module dllm does not adapt (the LM head) is named, not ignored
    dir = copy_peft_fixture();
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    Safetensors st;
    ck_assert(safetensors_open(&st, path, &err) == 0);
    int n = st.n_tensors;
    SafetensorsOut *out = calloc(n + 1, sizeof *out);
    float **values = calloc(n + 1, sizeof *values);
    for (int i = 0; i < n; i++) {
        SafetensorsTensor *t = &st.tensors[i];
        values[i] = malloc(t->shape[0] * t->shape[1] * sizeof(float));
        ck_assert(safetensors_read(&st, t->name, t->shape, 2, values[i], &err) == 0);
        out[i] = (SafetensorsOut){t->name, 2, {t->shape[0], t->shape[1]}, values[i]};
    }
    values[n] = calloc(2 * 64, sizeof(float));
    out[n] = (SafetensorsOut){"base_model.model.lm_head.lora_A.weight", 2, {2, 64}, values[n]};
    char rewritten[600];
    snprintf(rewritten, sizeof rewritten, "%s.new", path);
    ck_assert(safetensors_write(rewritten, out, n + 1, SAFETENSORS_F32, &err) == 0);
    safetensors_close(&st);
    ck_assert_int_eq(rename(rewritten, path), 0);
    expect_peft_refused(dir, "base_model.model.lm_head.lora_A.weight is not an adapter");
    for (int i = 0; i <= n; i++) free(values[i]);
    free(values), free(out);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

// One edit of a fixture's file each, and the refusal it must bring.
static const struct {
    const char *fixture, *file, *from, *to, *refusal;
} bad_edits[] = {
    {"llama", "model.safetensors", "\"F32\"", "\"I64\"", "dtype I64"},
    {"llama", "model.safetensors", "[1009,32]", "[32,1009]",
     "shape [32, 1009], expected [1009, 32]"},
    // a tensor left out under another name: missing, then extra
    {"llama", "model.safetensors", "model.norm.weight", "model.norm.weigh_",
     "missing tensor model.norm.weight"},
    {"llama", "config.json", "\"llama\"", "\"gpt2\"", "model_type gpt2"},
    {"qwen2", "config.json", "\"use_sliding_window\": false", "\"use_sliding_window\": true",
     "use_sliding_window"},
    {"mistral", "config.json", "\"sliding_window\": 4", "\"sliding_window\": -4",
     "sliding_window -4 must be positive"},
    {"qwen3", "config.json", "\"attention_bias\": false", "\"attention_bias\": true",
     "attention_bias"},
    {"qwen3", "config.json", "\"head_dim\": 8", "\"head_dim\": 7",
     "head size 7 must be even for RoPE"},
    {"qwen3", "config.json", "\"head_dim\": 8", "\"head_dim\": 16",
     "q_proj.weight has shape [32, 32], expected [64, 32]"},
    {"llada_moe", "config.json", "\"moe_layer_freq\": [\n    0,\n    1,",
     "\"moe_layer_freq\": [\n    1,\n    0,",
     "moe_layer_freq has a dense layer (1) after an MoE one"},
    {"llada_moe", "config.json", "\"partial_rotary_factor\": 1.0",
     "\"partial_rotary_factor\": 0.5", "partial_rotary_factor 0.5"},
    {"llada_moe", "config.json", "\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9",
     "n_active 9 must be in [1, min(n_experts 8, 16)]"},
    {"llada_moe", "model.safetensors", "mlp.experts.7.up_proj", "mlp.experts.9.up_proj",
     "missing tensor model.layers.1.mlp.experts.7.up_proj.weight"},
    {"llada2", "config.json", "\"use_bias\": false", "\"use_bias\": true", "use_bias"},
    {"llada2", "config.json", "\"partial_rotary_factor\": 0.5",
     "\"partial_rotary_factor\": 0.3", "partial_rotary_factor 0.3 does not turn an even number"},
    {"llada2", "config.json", "\"mask_token_id\": 1007,", "", "missing mask_token_id"},
    {"llama", "config.json", "\"rope_scaling\": null",
     "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
     "rope_scaling of type yarn; dllm implements default and llama3"},
    // transformers 5's block: other types refused by name, a disagreeing theta refused
    {"llama_tf5", "config.json", "\"rope_type\": \"default\"",
     "\"rope_type\": \"yarn\", \"factor\": 4.0",
     "rope_parameters of type yarn; dllm implements default and llama3"},
    {"llama_tf5", "config.json", "\"rope_type\": \"default\"",
     "\"rope_type\": \"linear\", \"factor\": 2.0", "rope_parameters of type linear"},
    {"llama_tf5", "config.json", "\"rope_parameters\"",
     "\"rope_theta\": 10000.0, \"rope_parameters\"",
     "rope_theta 10000 and rope_parameters.rope_theta 500000 differ"},
    {"qwen2_tf5", "config.json", "\"full_attention\"", "\"sliding_attention\"",
     "layer_types[0] is sliding_attention; dllm implements full_attention"},
    {"llama", "config.json", "\"vocab_size\": 1009", "\"vocab_size\": 2e9",
     "vocab_size 2000000000 is out of range"},
    {"llada", "config.json", "\"block_type\": \"llama\"", "\"block_type\": \"sequential\"",
     "block_type"},
    // the shapes say 2 layers, the config 3; then 1, and layer 1's tensors are left over
    {"llama", "config.json", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3",
     "missing tensor model.layers.2"},
    {"llama", "config.json", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1",
     "is not part of a LLaMA model"},
};

START_TEST(test_bad_files_are_refused) {
    const char *d;
    d = copy_fixture("llama");
    truncate_file(d, "model.safetensors", 1000);
    expect_refused(d, "past the end");
    d = copy_fixture("llama");  // cut inside the last tensor
    truncate_file(d, "model.safetensors", 150000);
    expect_refused(d, "past the end of the file's data");
    d = copy_fixture("llama");
    truncate_file(d, "model.safetensors", 5);
    expect_refused(d, "too short");
    for (size_t i = 0; i < sizeof bad_edits / sizeof bad_edits[0]; i++)
        expect_refused(edited(bad_edits[i].fixture, bad_edits[i].file, bad_edits[i].from,
                              bad_edits[i].to),
                       bad_edits[i].refusal);
    // "default" means no scaling, what dllm does: read
    d = edited("llama", "config.json", "\"rope_scaling\": null",
               "\"rope_scaling\": {\"rope_type\": \"default\"}");
    ck_assert_float_eq(expect_read(d).rope_scaling.factor, 0.0f);
    // a null rope_scaling beside rope_parameters is no second block; a real one is refused
    d = edited("llama_tf5", "config.json", "\"rope_parameters\"",
               "\"rope_scaling\": null, \"rope_parameters\"");
    ck_assert_float_eq(expect_read(d).rope_theta, 500000.0f);
    edit_file(d, "config.json", "\"rope_scaling\": null",
              "\"rope_scaling\": {\"rope_type\": \"default\"}");
    expect_refused(d, "both rope_parameters and rope_scaling are set");
}
END_TEST

// Hand-made headers: offsets that overlap or leave the file, a header length past the end.
static void write_raw(const char *dir, const char *header, size_t data_bytes) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_bytes; i++) fputc(0, f);
    fclose(f);
}

START_TEST(test_bad_offsets_are_refused) {
    const char *d = copy_fixture("llama");
    write_raw(d,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
              24);
    expect_refused(d, "overlap");
    write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    expect_refused(d, "past the end of the file's data");
    // the data area must be covered exactly (the safetensors library's rule)
    write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 20);
    expect_refused(d, "4 bytes after the tensors' data belong to no tensor");
    write_raw(d,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[20,24]}}",
              24);
    expect_refused(d, "4 bytes before tensor b belong to no tensor");
    write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 16);
    expect_refused(d, "12 bytes for a F32 tensor of 4 values");
    write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]", 16);
    expect_refused(d, "header");
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    FILE *f = fopen(path, "wb");
    uint64_t huge = 1u << 30;
    fwrite(&huge, 8, 1, f);
    fputs("{}", f);
    fclose(f);
    expect_refused(d, "header length 1073741824 runs past the end");
}
END_TEST

// A sharded model: two files and an index; the same logits. An index naming a missing file
// is refused.
START_TEST(test_sharded_model) {
    const char *d = copy_fixture("llama");
    ModelSource ck;
    Error err;
    ck_assert(model_source_from_hf(FIXTURES "llama", HF_WEIGHTS_ON_HOST, &ck, &err) == 0);
    Safetensors st;
    ck_assert(safetensors_open(&st, FIXTURES "llama", &err) == 0);
    // the tensors, half into each shard, as fp32
    SafetensorsOut *out = calloc(st.n_tensors, sizeof *out);
    float **data = calloc(st.n_tensors, sizeof *data);
    char index[16384];
    size_t at = (size_t)snprintf(index, sizeof index, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < st.n_tensors; i++) {
        SafetensorsTensor *t = &st.tensors[i];
        size_t n = 1;
        for (int k = 0; k < t->ndim; k++) n *= t->shape[k];
        data[i] = malloc(n * sizeof(float));
        ck_assert(safetensors_read(&st, t->name, t->shape, t->ndim, data[i], &err) == 0);
        out[i].name = t->name;
        out[i].ndim = t->ndim;
        memcpy(out[i].shape, t->shape, sizeof t->shape);
        out[i].data = data[i];
        at += (size_t)snprintf(index + at, sizeof index - at, "%s\"%s\": \"part-%d.safetensors\"",
                               i ? ", " : "", t->name, i % 2);
    }
    snprintf(index + at, sizeof index - at, "}}");
    char path[512];
    for (int part = 0; part < 2; part++) {
        SafetensorsOut mine[64];
        int n = 0;
        for (int i = part; i < st.n_tensors; i += 2) mine[n++] = out[i];
        snprintf(path, sizeof path, "%s/part-%d.safetensors", d, part);
        ck_assert(safetensors_write(path, mine, n, SAFETENSORS_F32, &err) == 0);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", d);
    FILE *f = fopen(path, "w");
    fputs(index, f);
    fclose(f);
    ModelSource sharded;
    ck_assert_msg(model_source_from_hf(d, HF_WEIGHTS_ON_HOST, &sharded, &err) == 0, "%s", err.msg);
    ck_assert_mem_eq(sharded.params, ck.params, ck.header.n_params * sizeof(float));
    printf("  sharded (2 files + index): the same %llu weights\n",
           (unsigned long long)ck.header.n_params);
    model_source_free(&sharded);
    snprintf(path, sizeof path, "%s/part-1.safetensors", d);
    unlink(path);
    expect_refused(d, "part-1.safetensors, which is missing");
    for (int i = 0; i < st.n_tensors; i++) free(data[i]);
    free(data), free(out);
    safetensors_close(&st);
    model_source_free(&ck);
}
END_TEST

int main(void) {
    Suite *s = suite_create("hf_models");
    TCase *tc = tcase_create("import");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_llada_matches_reference);
    tcase_add_test(tc, test_llada_bf16_matches_reference);
    tcase_add_test(tc, test_dream_matches_reference);
    tcase_add_test(tc, test_dream_reads_logits_one_row_back);
    tcase_add_test(tc, test_llama_matches_reference);
    tcase_add_test(tc, test_qwen2_bf16_matches_reference);
    tcase_add_test(tc, test_mistral_sliding_window_matches_reference);
    tcase_add_test(tc, test_qwen3_qk_norm_matches_reference);
    tcase_add_test(tc, test_llada_moe_matches_reference);
    tcase_add_test(tc, test_llada2_matches_reference);
    tcase_add_test(tc, test_llama3_rope_scaling_matches_reference);
    tcase_add_test(tc, test_transformers5_configs_match_reference);
    tcase_add_test(tc, test_exact_mode_follows_llada_generate);
    tcase_add_test(tc, test_export_round_trip);
    tcase_add_test(tc, test_bad_files_are_refused);
    tcase_add_test(tc, test_bad_offsets_are_refused);
    tcase_add_test(tc, test_sharded_model);
    tcase_add_test(tc, test_peft_adapters_match_reference);
    tcase_add_test(tc, test_bad_peft_adapters_are_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
