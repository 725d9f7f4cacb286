#include "store/model_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "common/gguf.h"
#include "model/gguf_model.h"
#include "model/hf_model.h"
#include "model/params.h"
#include "model/peft.h"
#include "store/checkpoint.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/hf_tokenizer.h"

// The tokenizer must fit the model: no id past the model's vocabulary (released models pad
// theirs beyond the tokenizer's), the same [MASK] when both name one. The model's [MASK] is the
// one used (an AR model has none; an imported tokenizer may not name it).
static int fit_tokenizer(ModelSource *src, const char *path, Error *err) {
    const Tokenizer *t = &src->tokenizer;
    const ModelConfig *m = &src->header.model;
    if (t->vocab_size > m->vocab_size ||
        (m->mask_token_id >= 0 && t->mask_id >= 0 && t->mask_id != m->mask_token_id)) {
        error_set(err, "%s: the tokenizer (%d tokens, [MASK] %d) does not fit the model "
                  "(vocabulary %d, [MASK] %d)", path, t->vocab_size, t->mask_id, m->vocab_size,
                  m->mask_token_id);
        model_source_free(src);
        return -1;
    }
    src->named_mask_id = t->mask_id;
    src->tokenizer.mask_id = m->mask_token_id;
    return 0;
}

int model_source_adopt_tokenizer(ModelSource *src, const char *blob, size_t bytes, const char *path,
                                 Error *err) {
    if (bytes == 0) {
        tokenizer_init_bytes(&src->tokenizer);
    } else if (tokenizer_from_blob(&src->tokenizer, blob, bytes, path, err)) {
        model_source_free(src);
        return -1;
    }
    return fit_tokenizer(src, path, err);
}

// An imported model's header at step 0 (the default training settings, the objective its
// attention implies) and, with `host`, room for its weights in params.
static int imported_header(ModelSource *src, int host, const char *path, Error *err) {
    CheckpointHeader *h = &src->header;
    memcpy(h->magic, CHECKPOINT_MAGIC, 8);
    h->version = CHECKPOINT_VERSION;
    h->header_bytes = sizeof *h;
    h->train = train_config_default();
    h->train.objective = h->model.causal ? OBJECTIVE_AR : OBJECTIVE_MDM;
    h->n_params = param_count(&h->model);
    src->params = host ? malloc(h->n_params * sizeof(float)) : NULL;
    if (host && !src->params) {
        model_source_free(src);
        return error_set(err, "%s: out of host memory for %llu parameters", path,
                         (unsigned long long)h->n_params);
    }
    return 0;
}

// model_source_from_hf, with the tokenizer read (and fitted to the model) or left empty.
static int from_hf(const char *dir, HfWeights weights, int tokenized, ModelSource *src,
                   Error *err) {
    memset(src, 0, sizeof *src);
    CheckpointHeader *h = &src->header;
    HfArch arch;
    if (hf_config_read(dir, &h->model, &arch, &src->weights_bf16, err)) return -1;
    src->hf_arch = arch;
    src->kind = SOURCE_HF;
    if (weights == HF_WEIGHTS_LATER && !(src->hf_dir = strdup(dir)))
        return error_set(err, "%s: out of memory", dir);
    int host = weights == HF_WEIGHTS_ON_HOST;
    if (imported_header(src, host, dir, err)) return -1;
    if ((host && hf_weights_read(dir, &h->model, arch, src->params, &src->weights_bf16, err)) ||
        (tokenized && tokenizer_load(&src->tokenizer, dir, err))) {
        model_source_free(src);
        return -1;
    }
    return tokenized ? fit_tokenizer(src, dir, err) : 0;
}

int model_source_from_hf(const char *dir, HfWeights weights, ModelSource *src, Error *err) {
    return from_hf(dir, weights, 1, src, err);
}

int model_source_from_hf_untokenized(const char *dir, ModelSource *src, Error *err) {
    return from_hf(dir, HF_WEIGHTS_LATER, 0, src, err);
}

int model_source_from_gguf(const char *path, HfWeights weights, ModelSource *src, Error *err) {
    memset(src, 0, sizeof *src);
    Gguf g;
    if (gguf_open(&g, path, err)) return -1;
    HfArch arch;
    int rc = gguf_model_config(&g, &src->header.model, &arch, &src->weights_bf16,
                               &src->weights_bits, err);
    src->kind = SOURCE_GGUF;
    src->hf_arch = arch;
    if (rc == 0 && weights == HF_WEIGHTS_LATER && !(src->gguf_path = strdup(path)))
        rc = error_set(err, "%s: out of memory", path);
    if (rc == 0) rc = imported_header(src, weights == HF_WEIGHTS_ON_HOST, path, err);
    if (rc == 0 && src->params)
        rc = gguf_model_weights(&g, &src->header.model, arch, weight_sink_host, NULL, src->params,
                                err);
    if (rc == 0) rc = gguf_tokenizer_load(&src->tokenizer, &g, err);
    gguf_close(&g);
    if (rc) {
        model_source_free(src);
        return -1;
    }
    return fit_tokenizer(src, path, err);
}

HfArch model_source_layout(const ModelSource *src) {
    return src->kind == SOURCE_HF || src->kind == SOURCE_GGUF
               ? (HfArch)src->hf_arch
               : hf_export_arch(&src->header.model);
}

// The shape that decides the weights' sizes (not seq_len, attention or logit shift: a LoRA run
// may adapt an AR base to diffusion, or train on shorter rows).
static int same_weight_shape(const ModelConfig *a, const ModelConfig *b) {
    return a->n_layer == b->n_layer && a->n_head == b->n_head &&
           model_kv_heads(a) == model_kv_heads(b) && a->d_model == b->d_model &&
           a->d_ff == b->d_ff && a->vocab_size == b->vocab_size && a->qkv_bias == b->qkv_bias &&
           a->tied_embeddings == b->tied_embeddings;
}

// The base model at path, which must not hold adapters itself; shape: the model config the
// adapters were made for, or NULL (a PEFT directory, which takes the base's).
static int load_base(const char *path, const ModelConfig *shape, HfWeights weights,
                     ModelSource *base, Error *err) {
    char chosen[4200];
    int skipped;
    Error why;
    if (model_source_open(path, weights, base, chosen, sizeof chosen, &skipped, &why))
        return error_set(err, "the LoRA adapters' base model: %s", why.msg);
    const char *problem = base->header.lora.rank ? "holds LoRA adapters itself (merge them with "
                                                   "dllm export --merge 1 and use that)"
                          : shape && !same_weight_shape(&base->header.model, shape)
                              ? "has another shape than the one the adapters were made for"
                              : NULL;
    if (problem) {
        model_source_free(base);
        return error_set(err, "the LoRA adapters' base model %s %s", path, problem);
    }
    return 0;
}

int model_source_base(const ModelSource *src, HfWeights weights, ModelSource *base, Error *err) {
    return load_base(src->header.lora.base, &src->header.model, weights, base, err);
}

int model_source_from_peft(const char *dir, ModelSource *src, Error *err) {
    memset(src, 0, sizeof *src);
    src->kind = SOURCE_PEFT;
    LoraConfig lc;
    if (peft_read_config(dir, &lc, err)) return -1;
    ModelSource base;
    if (load_base(lc.base, NULL, HF_CONFIG_ONLY, &base, err)) return -1;
    CheckpointHeader *h = &src->header;
    *h = base.header;
    h->step = 0;
    float *adapters;
    if (peft_read_adapters(dir, &h->model, &lc, model_source_layout(&base), &adapters, err)) {
        model_source_free(&base);
        return -1;
    }
    h->lora = lc;
    h->n_params = lora_param_count(&h->model, &lc);
    src->params = adapters;
    src->tokenizer = base.tokenizer;  // taken over: base no longer frees it
    memset(&base.tokenizer, 0, sizeof base.tokenizer);
    model_source_free(&base);
    return 0;
}

void model_source_free(ModelSource *src) {
    free(src->params);  // the arrays and the tokenizer bytes share one allocation
    free(src->hf_dir);
    free(src->gguf_path);
    tokenizer_free(&src->tokenizer);
    memset(src, 0, sizeof *src);
}

static int upload_slice(void *model, size_t offset, const float *values, size_t n, Error *err) {
    return model_set_weight_range(model, offset, values, n, err);
}

static int upload_blocks(void *model, int i, int layer, int bits, int row0, int n_rows,
                         const uint8_t *rows, Error *err) {
    return linear_upload_blocks(model, i, layer, bits, row0, n_rows, rows, err);
}

int model_source_copy_weights(const ModelSource *src, Model *m, Error *err) {
    if (src->hf_dir)  // straight from the files, a tensor at a time
        return hf_weights_stream(src->hf_dir, &src->header.model, src->hf_arch, upload_slice, m,
                                 err);
    if (src->gguf_path) {  // the same from the mapped file
        Gguf g;
        if (gguf_open(&g, src->gguf_path, err)) return -1;
        int rc = gguf_model_weights(&g, &src->header.model, src->hf_arch, upload_slice,
                                    linear_block_bits(m->kind) ? upload_blocks : NULL, m, err);
        gguf_close(&g);
        return rc;
    }
    return model_set_weights(m, src->params, err);
}

const Backend *model_source_backend(const ModelSource *src, const Backend *be) {
    ModelMode mode = model_source_mode(src, be);
    if (mode == MODEL_Q8 || mode == MODEL_Q4) return be;  // its norms and biases in fp32
    if (src->weights_bf16 == 2 && be == &backend_cpu) return backend_cpu_bf16_pairs();
    const Backend *bf16 = src->weights_bf16 ? backend_bf16_weights(be) : NULL;
    return bf16 ? bf16 : be;
}

int model_source_choose_weights(ModelSource *src, const char *choice, const Backend *be,
                                Error *err) {
    if (strcmp(choice, "auto") == 0) return 0;
    if (strcmp(choice, "fp32") == 0) {
        src->weights_bf16 = src->weights_bits = 0;
        return 0;
    }
    int pairs = strcmp(choice, "bf16") == 0;
    if (!pairs && strcmp(choice, "q8") != 0 && strcmp(choice, "q4") != 0)
        return error_set(err, "--weights: unknown kind '%s' (auto, fp32, bf16, q8, q4)", choice);
    const ModelConfig *c = &src->header.model;
    if (be != &backend_cpu)
        return error_set(err, "--weights %s runs on the CPU backend (--device cpu)", choice);
    if (src->kind == SOURCE_PACKED || src->header.lora.rank || c->ternary || (!pairs && c->n_experts))
        return error_set(err, "--weights %s takes a dense model without adapters (this one is %s)",
                         choice,
                         src->header.lora.rank ? "LoRA adapters"
                         : c->n_experts        ? "a mixture of experts"
                                               : "ternary");
    if (pairs && (c->d_model % 2 || model_q_dim(c) % 2 || c->d_ff % 2))
        return error_set(err, "--weights bf16 takes inputs in pairs: d_model %d, q width %d and "
                              "d_ff %d must be even", c->d_model, model_q_dim(c), c->d_ff);
    src->weights_bf16 = pairs ? 2 : 0;
    src->weights_bits = pairs ? 0 : choice[1] == '8' ? 8 : 4;
    return 0;
}

ModelMode model_source_mode(const ModelSource *src, const Backend *be) {
    if (src->kind == SOURCE_PACKED) return MODEL_PACKED;
    if (!src->weights_bits || !be->matmul_qb) return MODEL_INFERENCE;
    return src->weights_bits == 8 ? MODEL_Q8 : MODEL_Q4;
}

// A LoRA checkpoint's inference model: the base's weights, then the adapters.
static int adapted_model(const ModelSource *src, const Backend *be, int max_batch, Model *m,
                         Error *err) {
    ModelSource base;
    if (model_source_base(src, HF_WEIGHTS_LATER, &base, err)) return -1;
    int rc = model_create_lora(m, &src->header.model, &src->header.lora,
                               model_source_backend(&base, be), max_batch, MODEL_INFERENCE, err);
    if (rc == 0 && model_source_copy_weights(&base, m, err)) {
        model_free(m);
        rc = -1;
    }
    if (rc == 0) model_set_lora(m, src->params);
    model_source_free(&base);
    return rc;
}

int model_source_build(const ModelSource *src, const Backend *be, int max_batch, Model *m,
                       Error *err) {
    if (src->header.lora.rank) return adapted_model(src, be, max_batch, m, err);
    if (src->kind == SOURCE_PACKED) {
        if (model_create(m, &src->header.model, be, max_batch, MODEL_PACKED, err)) return -1;
        linear_upload_packed(m, src->params, src->packed_scales, src->packed_codes);
        return 0;
    }
    if (model_create(m, &src->header.model, model_source_backend(src, be), max_batch,
                     model_source_mode(src, be), err))
        return -1;
    if (model_source_copy_weights(src, m, err)) {
        model_free(m);
        return -1;
    }
    return 0;
}

int run_checkpoints(const char *dir, int64_t *steps, int cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long long step;
        char tail[8];
        if (sscanf(e->d_name, "step_%lld.%7s", &step, tail) == 2 && strcmp(tail, "ckpt") == 0)
            steps[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++)  // insertion sort, newest first
        for (int j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

void run_checkpoint_path(const char *dir, int64_t step, char *out, size_t cap) {
    snprintf(out, cap, "%s/step_%08lld.ckpt", dir, (long long)step);
}

int model_source_open(const char *path, HfWeights imported, ModelSource *src, char *chosen,
                      size_t cap, int *skipped, Error *err) {
    *skipped = 0;
    struct stat st;
    if (stat(path, &st) != 0) return error_set(err, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        snprintf(chosen, cap, "%s", path);
        if (gguf_file(path)) return model_source_from_gguf(path, imported, src, err);
        return checkpoint_load(path, src, err);
    }
    if (peft_dir(path)) {  // LoRA adapters in peft's layout, on the base they name
        snprintf(chosen, cap, "%s", path);
        return model_source_from_peft(path, src, err);
    }
    if (hf_model_dir(path)) {  // a Hugging Face model directory, not a run
        snprintf(chosen, cap, "%s", path);
        return model_source_from_hf(path, imported, src, err);
    }
    int64_t steps[1024];
    int n = run_checkpoints(path, steps, 1024);
    Error first;
    for (int i = 0; i < n; i++) {
        run_checkpoint_path(path, steps[i], chosen, cap);
        if (checkpoint_load(chosen, src, i == 0 ? &first : err) == 0) return 0;
        (*skipped)++;
    }
    if (n == 0) return error_set(err, "%s: no step_*.ckpt checkpoints in this run directory", path);
    return error_set(err, "%s: none of its %d checkpoints is complete (newest: %s)", path, n,
                     first.msg);
}
