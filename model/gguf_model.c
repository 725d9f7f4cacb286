#include "model/gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "kernels/ggml_blocks.h"
#include "kernels/qblocks.h"
#include "model/linear.h"
#include "model/params.h"

// The file's name of ParamTensors field i (%d: the layer), without ".weight" / ".bias".
static const char *const TENSOR_NAMES[N_PARAM_TENSORS] = {
    "token_embd", "blk.%d.attn_norm", "blk.%d.attn_q", "blk.%d.attn_k", "blk.%d.attn_v",
    "blk.%d.attn_q", "blk.%d.attn_k", "blk.%d.attn_v", "blk.%d.attn_output", "blk.%d.ffn_norm",
    "blk.%d.ffn_gate", "blk.%d.ffn_up", "blk.%d.ffn_down", "output_norm", "output",
    "blk.%d.attn_q_norm", "blk.%d.attn_k_norm"};

static void tensor_name(int i, int layer, char *buf, size_t cap) {
    char stem[64];
    snprintf(stem, sizeof stem, TENSOR_NAMES[i], layer);
    snprintf(buf, cap, "%s.%s", stem, i >= 5 && i <= 7 ? "bias" : "weight");
}

// "{arch}.suffix" as an integer: required (absent is an error) unless fallback >= 0.
static int arch_int(const Gguf *g, const char *arch, const char *suffix, int64_t fallback,
                    int *out, Error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = fallback;
    int rc = gguf_get_int(g, key, &v, err);
    if (rc < 0) return -1;
    if (rc == 1 && fallback < 0) return error_set(err, "%s: missing metadata %s", g->path, key);
    if (v < 0 || v > (1 << 30))
        return error_set(err, "%s: metadata %s is %lld", g->path, key, (long long)v);
    *out = (int)v;
    return 0;
}

static int arch_float(const Gguf *g, const char *arch, const char *suffix, double fallback,
                      float *out, Error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v = fallback;
    if (gguf_get_float(g, key, &v, err) < 0) return -1;
    *out = (float)v;
    return 0;
}

// Metadata dllm does not implement: refused when present (with a value other than `none`).
static int refuse_key(const Gguf *g, const char *arch, const char *suffix, const char *why,
                      Error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const GgufKv *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type == GGUF_STRING) {
        const char *s;
        size_t n;
        gguf_string_at(kv->value, &s, &n);
        if (n == 4 && memcmp(s, "none", 4) == 0) return 0;
    }
    return error_set(err, "%s: metadata %s is set: %s", g->path, key, why);
}

static int read_arch(const Gguf *g, char *arch, size_t cap, HfArch *out, Error *err) {
    const char *s;
    size_t n;
    int rc = gguf_get_string(g, "general.architecture", &s, &n, err);
    if (rc < 0) return -1;
    if (rc == 1) return error_set(err, "%s: missing metadata general.architecture", g->path);
    snprintf(arch, cap, "%.*s", (int)(n < 60 ? n : 60), s);
    static const struct { const char *name; HfArch arch; } known[] = {
        {"llama", HF_LLAMA}, {"qwen2", HF_QWEN2}, {"llada", HF_LLADA}, {"dream", HF_DREAM}};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, s, n) == 0) {
            *out = known[i].arch;
            return 0;
        }
    return error_set(err, "%s: architecture %s; dllm reads GGUF files of llama, qwen2, llada "
                          "and dream", g->path, arch);
}

// The matrices' storage: every one BF16 makes a bf16-weight model.
// Whether g has matrices and every one is of type a or b.
static int all_matrices(const Gguf *g, GgmlType a, GgmlType b) {
    int any = 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        if (g->tensors[i].n_dims < 2) continue;
        if (g->tensors[i].type != a && g->tensors[i].type != b) return 0;
        any = 1;
    }
    return any;
}

int gguf_model_config(const Gguf *g, ModelConfig *m, HfArch *arch_out, int *bf16, int *bits,
                      Error *err) {
    memset(m, 0, sizeof *m);
    char arch[64];
    HfArch a = HF_LLAMA;
    int max_seq, key_length = 0, rope_dims = 0;
    if (read_arch(g, arch, sizeof arch, &a, err) ||
        arch_int(g, arch, "block_count", -1, &m->n_layer, err) ||
        arch_int(g, arch, "embedding_length", -1, &m->d_model, err) ||
        arch_int(g, arch, "feed_forward_length", -1, &m->d_ff, err) ||
        arch_int(g, arch, "attention.head_count", -1, &m->n_head, err) ||
        arch_int(g, arch, "attention.head_count_kv", 0, &m->n_kv_head, err) ||
        arch_int(g, arch, "context_length", 2048, &max_seq, err) ||
        arch_int(g, arch, "attention.key_length", 0, &key_length, err) ||
        arch_int(g, arch, "rope.dimension_count", 0, &rope_dims, err) ||
        arch_float(g, arch, "rope.freq_base", 10000.0, &m->rope_theta, err) ||
        arch_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-6, &m->norm_eps, err) ||
        refuse_key(g, arch, "rope.scaling.type", "dllm reads no RoPE scaling from GGUF", err) ||
        refuse_key(g, arch, "expert_count", "dllm reads no mixture of experts from GGUF", err) ||
        refuse_key(g, arch, "attention.sliding_window", "dllm reads no sliding window from "
                                                        "GGUF", err))
        return -1;
    if (gguf_tensor(g, "rope_freqs.weight"))
        return error_set(err, "%s: tensor rope_freqs.weight (LLaMA 3.1's RoPE scaling) is not "
                              "read by dllm", g->path);
    if (m->n_head <= 0 || m->n_layer <= 0)
        return error_set(err, "%s: %d heads, %d layers", g->path, m->n_head, m->n_layer);
    int head = key_length ? key_length : m->d_model / m->n_head;
    if (head * m->n_head != m->d_model) m->head_dim = head;
    if (rope_dims && rope_dims != head)
        return error_set(err, "%s: %s.rope.dimension_count %d is not the head size %d (a "
                              "partial rotary, which dllm reads from config.json only)",
                         g->path, arch, rope_dims, head);
    const GgufTensor *emb = gguf_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return error_set(err, "%s: no 2-D tensor token_embd.weight", g->path);
    if (emb->ne[0] != (uint64_t)m->d_model)
        return error_set(err, "%s: token_embd.weight rows are %llu wide; %s.embedding_length is "
                              "%d", g->path, (unsigned long long)emb->ne[0], arch, m->d_model);
    if ((size_t)m->n_layer > g->n_tensors)
        return error_set(err, "%s: %s.block_count %d is more than the file's %zu tensors",
                         g->path, arch, m->n_layer, g->n_tensors);
    m->vocab_size = (int)emb->ne[1];
    m->tied_embeddings = gguf_tensor(g, "output.weight") == NULL;
    m->seq_len = max_seq < HF_MAX_SEQ_LEN ? max_seq : HF_MAX_SEQ_LEN;
    m->qkv_bias = a == HF_QWEN2 || a == HF_DREAM;
    m->qk_norm = gguf_tensor(g, "blk.0.attn_q_norm.weight") != NULL;
    m->mask_token_id = -1;
    m->causal = a == HF_LLAMA || a == HF_QWEN2;
    if (!m->causal) {
        int64_t mask = -1;
        if (gguf_get_int(g, "tokenizer.ggml.mask_token_id", &mask, err) < 0) return -1;
        if (mask < 0 || mask >= m->vocab_size)
            return error_set(err, "%s: a %s model needs tokenizer.ggml.mask_token_id (the "
                                  "[MASK] it fills in)", g->path, arch);
        m->mask_token_id = (int)mask;
        m->logit_shift = a == HF_DREAM;
        int shift = m->logit_shift;  // llama.cpp's key for it, when written, must agree
        if (gguf_get_bool(g, "diffusion.shift_logits", &shift, err) < 0) return -1;
        if (shift != m->logit_shift)
            return error_set(err, "%s: diffusion.shift_logits is %s; a %s model reads %s",
                             g->path, shift ? "true" : "false", arch,
                             m->logit_shift ? "position i's token at row i - 1"
                                            : "each position's token at its own row");
    }
    *arch_out = a;
    if (bf16) *bf16 = all_matrices(g, GGML_BF16, GGML_BF16);
    if (bits) *bits = all_matrices(g, GGML_Q4_0, GGML_Q4_0)   ? 4
                      : all_matrices(g, GGML_Q8_0, GGML_Q4_0) ? 8
                                                              : 0;
    Error why;
    if (model_config_validate(m, &why)) return error_set(err, "%s: %s", g->path, why.msg);
    return 0;
}

// llama.cpp's converter stores each head's rows of q and k (hd rows a head) with the two
// halves interleaved: file row h hd + 2 j + s holds row h hd + s hd / 2 + j. Undone in place,
// a head at a time through tmp (hd rows), on rows of row_bytes (floats, or Q8_0 blocks).
static void unpermute_rows(void *x, void *tmp, int n_heads, int hd, size_t row_bytes) {
    for (int h = 0; h < n_heads; h++) {
        char *head = (char *)x + (size_t)h * hd * row_bytes;
        memcpy(tmp, head, (size_t)hd * row_bytes);
        for (int j = 0; j < hd / 2; j++)
            for (int s = 0; s < 2; s++)
                memcpy(head + (size_t)(s * hd / 2 + j) * row_bytes,
                       (char *)tmp + (size_t)(2 * j + s) * row_bytes, row_bytes);
    }
}

enum { CHUNK_ROWS = 256 };  // rows handed over at a time (a multiple of the panels' 16)

// A Q8_0 or Q4_0 matrix (field i of layer l) into sink: the mapped file's rows a chunk at a time,
// each chunk's pages handed back once taken (so the peak memory holds no more than a chunk of
// the file beside the model), or for q and k a copy in buf unpermuted through tmp.
static int block_matrix(GgufTensor *t, int i, int l, BlockSink sink, void *user, uint8_t *buf,
                        void *tmp, int unpermute, int heads, int hd, Error *err) {
    int bits = t->type == GGML_Q8_0 ? 8 : 4, rows = (int)t->ne[1], rc = 0;
    size_t row_bytes = ggml_row_bytes(t->type, t->ne[0]);
    if (unpermute) {
        memcpy(buf, t->data, t->bytes);
        unpermute_rows(buf, tmp, heads, hd, row_bytes);
        rc = sink(user, i, l, bits, 0, rows, buf, err);
    }
    for (int r0 = 0; r0 < rows && !unpermute && !rc; r0 += CHUNK_ROWS) {
        int n = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS;
        rc = sink(user, i, l, bits, r0, n, t->data + (size_t)r0 * row_bytes, err);
        file_map_drop(t->data + (size_t)r0 * row_bytes, (size_t)n * row_bytes);
    }
    file_map_drop(t->data, t->bytes);
    t->used = 1;
    return rc;
}

// Tensor i of `layer`, checked against the config's shape (rows x cols; a vector: cols 1).
static GgufTensor *find_tensor(const Gguf *g, int i, int layer, size_t rows, size_t cols,
                               Error *err) {
    char name[96];
    tensor_name(i, layer, name, sizeof name);
    GgufTensor *t = gguf_tensor(g, name);
    if (!t) {
        error_set(err, "%s: missing tensor %s", g->path, name);
        return NULL;
    }
    int want_dims = cols == 1 ? 1 : 2;
    if (t->n_dims != want_dims || t->ne[0] != (cols == 1 ? rows : cols) ||
        (cols > 1 && t->ne[1] != rows)) {
        error_set(err, "%s: tensor %s is %llu x %llu (%d dims); the config needs %zu x %zu",
                  g->path, name, (unsigned long long)t->ne[1], (unsigned long long)t->ne[0],
                  t->n_dims, rows, cols);
        return NULL;
    }
    return t;
}

// A tensor's values into sink at offset (its place in the flat layout): decoded a chunk of
// rows at a time into buf, each chunk's file pages handed back once decoded, so the peak memory
// holds a chunk of it beside the model; q and k whole, their rows (of unpermute_bytes, a
// bias's: one value) reordered through tmp.
static int decode_tensor(GgufTensor *t, WeightSink sink, void *user, size_t offset, float *buf,
                         void *tmp, size_t unpermute_bytes, int heads, int hd, Error *err) {
    size_t row_values = t->ne[0], n_rows = t->ne[1];
    size_t chunk = unpermute_bytes ? n_rows : CHUNK_ROWS;
    size_t row_bytes = ggml_row_bytes(t->type, row_values);
    int rc = 0;
    for (size_t r0 = 0; r0 < n_rows && !rc; r0 += chunk) {
        size_t n = n_rows - r0 < chunk ? n_rows - r0 : chunk;
        for (size_t r = 0; r < n; r++)
            ggml_decode_row(t->type, t->data + (r0 + r) * row_bytes, buf + r * row_values,
                            row_values);
        file_map_drop(t->data + r0 * row_bytes, n * row_bytes);
        if (unpermute_bytes) unpermute_rows(buf, tmp, heads, hd, unpermute_bytes);
        rc = sink(user, offset + r0 * row_values, buf, n * row_values, err);
    }
    file_map_drop(t->data, t->bytes);
    t->used = 1;
    return rc;
}

int gguf_model_weights(Gguf *g, const ModelConfig *c, HfArch arch, WeightSink sink,
                       BlockSink block_sink, void *user, Error *err) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    for (int i = PARAM_ROUTER; i < N_PARAM_TENSORS; i++)
        if (specs[i].size) return error_set(err, "%s: experts are not read from GGUF", g->path);
    // every tensor present and of its shape before anything is allocated: the sizes are then
    // the file's, not whatever its metadata claims
    size_t largest = 1;
    for (int i = 0; i < PARAM_ROUTER; i++)
        for (int l = 0; l < specs[i].layers && specs[i].size; l++) {
            if (!find_tensor(g, i, l, specs[i].rows, specs[i].cols, err)) return -1;
            if (specs[i].rows * specs[i].cols > largest) largest = specs[i].rows * specs[i].cols;
        }
    int hd = model_head_dim(c), permuted = arch == HF_LLAMA || arch == HF_LLADA;
    float *slice = malloc(largest * sizeof(float));  // (a chunk of rows is all most use)
    float *tmp = malloc((size_t)hd * c->d_model * sizeof(float));
    int rc = slice && tmp ? 0 : error_set(err, "%s: out of host memory for a %zu-value tensor",
                                          g->path, largest);
    size_t offset = 0;
    for (int i = 0; i < PARAM_ROUTER && !rc; i++) {
        size_t n = specs[i].rows * specs[i].cols;
        for (int l = 0; l < specs[i].layers && n && !rc; l++) {
            GgufTensor *t = find_tensor(g, i, l, specs[i].rows, specs[i].cols, err);
            int heads = i == 2 || i == 5 ? c->n_head : model_kv_heads(c);
            int unpermute = permuted && (i == 2 || i == 3 || i == 5 || i == 6);
            if (block_sink && linear_qb_tensor(i) && (t->type == GGML_Q8_0 || t->type == GGML_Q4_0)) {
                rc = block_matrix(t, i, l, block_sink, user, (uint8_t *)slice, tmp, unpermute,
                                  heads, hd, err);
                continue;
            }
            rc = decode_tensor(t, sink, user, offset + l * n, slice, tmp,
                               unpermute ? specs[i].cols * sizeof(float) : 0, heads, hd, err);
        }
        offset += specs[i].size;
    }
    free(slice), free(tmp);
    const GgufTensor *extra = rc ? NULL : gguf_unused(g);
    if (extra)
        rc = error_set(err, "%s: tensor %s is not part of a %s model of this config", g->path,
                       extra->name, hf_arch_name(arch));
    return rc;
}
