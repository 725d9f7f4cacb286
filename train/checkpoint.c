#include "train/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/hash.h"
#include "model/hf_model.h"
#include "model/peft.h"
#include "tokenizer/hf_tokenizer.h"
#include "train/packed_file.h"
#include "train/run_dir.h"

// Header, the three arrays and the tokenizer, with the header's checksum field counted as 0.
static uint64_t checkpoint_checksum(const CheckpointHeader *h, const float *arrays[3],
                                    const char *tokenizer) {
    CheckpointHeader copy = *h;
    copy.checksum = 0;
    uint64_t sum = fnv1a(FNV1A_INIT, &copy, sizeof copy);
    for (int i = 0; i < 3; i++) sum = fnv1a(sum, arrays[i], h->n_params * sizeof(float));
    return fnv1a(sum, tokenizer, h->tokenizer_bytes);
}

int checkpoint_save(const char *path, const Trainer *tr, const Tokenizer *t, Error *err) {
    const Model *m = tr->model;
    CheckpointHeader h;
    memset(&h, 0, sizeof h);  // padding bytes too: they are part of the checksum
    memcpy(h.magic, CHECKPOINT_MAGIC, 8);
    h.version = CHECKPOINT_VERSION;
    h.header_bytes = sizeof h;
    h.model = m->cfg;
    h.train = tr->tc;
    h.lora = m->lora;
    h.step = tr->step;
    h.rng_data = tr->rng_data;
    h.rng_mask = tr->rng_mask;
    h.data_pos = tr->data_pos;
    Trainable p = model_trainable(m);  // a LoRA run saves its adapters, not the frozen base
    h.n_params = p.n;
    h.tokenizer_bytes = t->blob ? t->blob_bytes : 0;

    size_t bytes = p.n * sizeof(float);
    float *host = malloc(3 * bytes);
    if (!host) return error_set(err, "%s: out of memory for the checkpoint", path);
    const float *device[3] = {p.params, p.adam_m, p.adam_v};
    const float *arrays[3];
    for (int i = 0; i < 3; i++) {
        p.be->to_host(host + i * p.n, device[i], bytes);
        arrays[i] = host + i * p.n;
    }
    // a diverged run must never overwrite good checkpoints with garbage
    for (size_t i = 0; i < 3 * p.n; i++)
        if (!isfinite(host[i])) {
            free(host);
            return error_set(err, "%s: not saved: the model holds non-finite values", path);
        }
    h.checksum = checkpoint_checksum(&h, arrays, t->blob);

    AtomicFile f;
    if (atomic_open(&f, path, err)) {
        free(host);
        return -1;
    }
    fwrite(&h, sizeof h, 1, f.f);
    fwrite(host, bytes, 3, f.f);
    if (h.tokenizer_bytes) fwrite(t->blob, 1, h.tokenizer_bytes, f.f);
    free(host);
    return atomic_commit(&f, err);
}

static int validate_header(const char *path, const CheckpointHeader *h, long file_size,
                           Error *err) {
    if (memcmp(h->magic, CHECKPOINT_MAGIC, 8) != 0)
        return error_set(err, "%s: not a dllm checkpoint (wrong magic)", path);
    if (h->version != CHECKPOINT_VERSION)
        return error_set(err, "%s: unsupported checkpoint version %u (this build reads %d)", path,
                         h->version, CHECKPOINT_VERSION);
    if (h->header_bytes != sizeof *h)
        return error_set(err, "%s: header size %u, expected %zu", path, h->header_bytes,
                         sizeof *h);
    Error why;
    if (model_config_validate(&h->model, &why))
        return error_set(err, "%s: bad model config: %s", path, why.msg);
    if (train_config_validate(&h->train, &why))
        return error_set(err, "%s: bad training config: %s", path, why.msg);
    if (h->lora.rank != 0 && lora_config_validate(&h->lora, &why))
        return error_set(err, "%s: bad LoRA config: %s", path, why.msg);
    size_t needed = h->lora.rank ? lora_param_count(&h->model, &h->lora) : param_count(&h->model);
    if (h->n_params != needed)
        return error_set(err, "%s: %llu %s stored, the config needs %zu", path,
                         (unsigned long long)h->n_params,
                         h->lora.rank ? "adapter values" : "parameters", needed);
    long expected = (long)sizeof *h + 3L * (long)(h->n_params * sizeof(float)) +
                    (long)h->tokenizer_bytes;
    return file_size_check(path, file_size, expected, err);
}

// The tokenizer must fit the model: no id past the model's vocabulary (released models pad
// theirs beyond the tokenizer's), the same [MASK] when both name one. The model's [MASK] is the
// one used (an AR model has none; an imported tokenizer may not name it).
static int fit_tokenizer(Checkpoint *ck, const char *path, Error *err) {
    const Tokenizer *t = &ck->tokenizer;
    const ModelConfig *m = &ck->header.model;
    if (t->vocab_size > m->vocab_size ||
        (m->mask_token_id >= 0 && t->mask_id >= 0 && t->mask_id != m->mask_token_id)) {
        error_set(err, "%s: the tokenizer (%d tokens, [MASK] %d) does not fit the model "
                  "(vocabulary %d, [MASK] %d)", path, t->vocab_size, t->mask_id, m->vocab_size,
                  m->mask_token_id);
        checkpoint_free(ck);
        return -1;
    }
    ck->tokenizer.mask_id = m->mask_token_id;
    return 0;
}

int checkpoint_load(const char *path, Checkpoint *ck, Error *err) {
    memset(ck, 0, sizeof *ck);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long file_size = ftell(f);
    rewind(f);
    CheckpointHeader *h = &ck->header;
    char magic[8];
    int packed = fread(magic, 1, 8, f) == 8 && memcmp(magic, PACKED_MAGIC, 8) == 0;
    rewind(f);
    if (packed) return packed_file_read(path, f, file_size, ck, err);
    if (fread(h, sizeof *h, 1, f) != 1) {
        fclose(f);
        if (file_size >= 8 && memcmp(h->magic, CHECKPOINT_MAGIC, 8) != 0)
            return error_set(err, "%s: not a dllm checkpoint (wrong magic)", path);
        return error_set(err, "%s: truncated: %ld bytes, shorter than the %zu-byte header", path,
                         file_size, sizeof *h);
    }
    if (validate_header(path, h, file_size, err)) {
        fclose(f);
        return -1;
    }
    size_t n = h->n_params;
    float *data = malloc(3 * n * sizeof(float) + h->tokenizer_bytes);
    if (!data) {
        fclose(f);
        return error_set(err, "%s: out of memory for %zu parameters", path, n);
    }
    size_t got = fread(data, sizeof(float), 3 * n, f);
    char *tokenizer = (char *)(data + 3 * n);
    if (got == 3 * n && fread(tokenizer, 1, h->tokenizer_bytes, f) != h->tokenizer_bytes) got = 0;
    fclose(f);
    ck->params = data;
    ck->adam_m = data + n;
    ck->adam_v = data + 2 * n;
    const float *arrays[3] = {ck->params, ck->adam_m, ck->adam_v};
    if (got != 3 * n) {
        checkpoint_free(ck);
        return error_set(err, "%s: read failed after %zu of %zu values", path, got, 3 * n);
    }
    if (checkpoint_checksum(h, arrays, tokenizer) != h->checksum) {
        checkpoint_free(ck);
        return error_set(err, "%s: corrupt: checksum mismatch", path);
    }
    return checkpoint_adopt_tokenizer(ck, tokenizer, h->tokenizer_bytes, path, err);
}

int checkpoint_adopt_tokenizer(Checkpoint *ck, const char *blob, size_t bytes, const char *path,
                               Error *err) {
    if (bytes == 0) {
        tokenizer_init_bytes(&ck->tokenizer);
    } else if (tokenizer_from_blob(&ck->tokenizer, blob, bytes, path, err)) {
        checkpoint_free(ck);
        return -1;
    }
    return fit_tokenizer(ck, path, err);
}

// checkpoint_from_hf, with the tokenizer read (and fitted to the model) or left empty.
static int from_hf(const char *dir, HfWeights weights, int tokenized, Checkpoint *ck,
                   Error *err) {
    memset(ck, 0, sizeof *ck);
    CheckpointHeader *h = &ck->header;
    HfArch arch;
    if (hf_config_read(dir, &h->model, &arch, &ck->weights_bf16, err)) return -1;
    ck->hf_arch = arch;
    ck->from_hf = 1;
    if (weights == HF_WEIGHTS_LATER && !(ck->hf_dir = strdup(dir)))
        return error_set(err, "%s: out of memory", dir);
    memcpy(h->magic, CHECKPOINT_MAGIC, 8);
    h->version = CHECKPOINT_VERSION;
    h->header_bytes = sizeof *h;
    h->train = train_config_default();
    h->train.objective = h->model.causal ? OBJECTIVE_AR : OBJECTIVE_MDM;
    h->n_params = param_count(&h->model);
    int host = weights == HF_WEIGHTS_ON_HOST;
    ck->params = host ? malloc(h->n_params * sizeof(float)) : NULL;
    if (host && !ck->params) {
        checkpoint_free(ck);
        return error_set(err, "%s: out of host memory for %llu parameters", dir,
                         (unsigned long long)h->n_params);
    }
    if ((host && hf_weights_read(dir, &h->model, arch, ck->params, &ck->weights_bf16, err)) ||
        (tokenized && tokenizer_load(&ck->tokenizer, dir, err))) {
        checkpoint_free(ck);
        return -1;
    }
    return tokenized ? fit_tokenizer(ck, dir, err) : 0;
}

int checkpoint_from_hf(const char *dir, HfWeights weights, Checkpoint *ck, Error *err) {
    return from_hf(dir, weights, 1, ck, err);
}

int checkpoint_from_hf_untokenized(const char *dir, Checkpoint *ck, Error *err) {
    return from_hf(dir, HF_WEIGHTS_LATER, 0, ck, err);
}

HfArch checkpoint_layout(const Checkpoint *ck) {
    return ck->from_hf ? (HfArch)ck->hf_arch : hf_export_arch(&ck->header.model);
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
                     Checkpoint *base, Error *err) {
    char chosen[4200];
    int skipped;
    Error why;
    if (checkpoint_load_latest(path, weights, base, chosen, sizeof chosen, &skipped, &why))
        return error_set(err, "the LoRA adapters' base model: %s", why.msg);
    const char *problem = base->header.lora.rank ? "holds LoRA adapters itself (merge them with "
                                                   "dllm export --merge 1 and use that)"
                          : shape && !same_weight_shape(&base->header.model, shape)
                              ? "has another shape than the one the adapters were made for"
                              : NULL;
    if (problem) {
        checkpoint_free(base);
        return error_set(err, "the LoRA adapters' base model %s %s", path, problem);
    }
    return 0;
}

int checkpoint_load_base(const Checkpoint *ck, HfWeights weights, Checkpoint *base, Error *err) {
    return load_base(ck->header.lora.base, &ck->header.model, weights, base, err);
}

int checkpoint_from_peft(const char *dir, Checkpoint *ck, Error *err) {
    memset(ck, 0, sizeof *ck);
    LoraConfig lc;
    if (peft_read_config(dir, &lc, err)) return -1;
    Checkpoint base;
    if (load_base(lc.base, NULL, HF_CONFIG_ONLY, &base, err)) return -1;
    CheckpointHeader *h = &ck->header;
    *h = base.header;
    h->step = 0;
    float *adapters;
    if (peft_read_adapters(dir, &h->model, &lc, checkpoint_layout(&base), &adapters, err)) {
        checkpoint_free(&base);
        return -1;
    }
    h->lora = lc;
    h->n_params = lora_param_count(&h->model, &lc);
    ck->params = adapters;
    ck->tokenizer = base.tokenizer;  // taken over: base no longer frees it
    memset(&base.tokenizer, 0, sizeof base.tokenizer);
    checkpoint_free(&base);
    return 0;
}

void checkpoint_free(Checkpoint *ck) {
    free(ck->params);  // the arrays and the tokenizer bytes share one allocation
    free(ck->hf_dir);
    tokenizer_free(&ck->tokenizer);
    memset(ck, 0, sizeof *ck);
}

static int upload_slice(void *model, size_t offset, const float *values, size_t n, Error *err) {
    return model_set_weight_range(model, offset, values, n, err);
}

int checkpoint_copy_weights(const Checkpoint *ck, Model *m, Error *err) {
    if (ck->hf_dir)  // straight from the files, a tensor at a time
        return hf_weights_stream(ck->hf_dir, &ck->header.model, ck->hf_arch, upload_slice, m,
                                 err);
    return model_set_weights(m, ck->params, err);
}

const Backend *checkpoint_backend(const Checkpoint *ck, const Backend *be) {
    const Backend *bf16 = ck->weights_bf16 ? backend_bf16_weights(be) : NULL;
    return bf16 ? bf16 : be;
}

// A LoRA checkpoint's inference model: the base's weights, then the adapters.
static int adapted_model(const Checkpoint *ck, const Backend *be, int max_batch, Model *m,
                         Error *err) {
    Checkpoint base;
    if (checkpoint_load_base(ck, HF_WEIGHTS_LATER, &base, err)) return -1;
    int rc = model_create_lora(m, &ck->header.model, &ck->header.lora,
                               checkpoint_backend(&base, be), max_batch, MODEL_INFERENCE, err);
    if (rc == 0 && checkpoint_copy_weights(&base, m, err)) {
        model_free(m);
        rc = -1;
    }
    if (rc == 0) model_set_lora(m, ck->params);
    checkpoint_free(&base);
    return rc;
}

int checkpoint_model(const Checkpoint *ck, const Backend *be, int max_batch, Model *m,
                     Error *err) {
    if (ck->header.lora.rank) return adapted_model(ck, be, max_batch, m, err);
    if (ck->packed_codes) {
        if (model_create(m, &ck->header.model, be, max_batch, MODEL_PACKED, err)) return -1;
        model_set_packed(m, ck->params, ck->packed_scales, ck->packed_codes);
        return 0;
    }
    if (model_create(m, &ck->header.model, checkpoint_backend(ck, be), max_batch, MODEL_INFERENCE,
                     err))
        return -1;
    if (checkpoint_copy_weights(ck, m, err)) {
        model_free(m);
        return -1;
    }
    return 0;
}

void checkpoint_restore(const Checkpoint *ck, Trainer *tr) {
    Trainable p = model_trainable(tr->model);
    size_t bytes = p.n * sizeof(float);
    p.be->to_device(p.params, ck->params, bytes);
    p.be->to_device(p.adam_m, ck->adam_m, bytes);
    p.be->to_device(p.adam_v, ck->adam_v, bytes);
    tr->step = ck->header.step;
    tr->rng_data = ck->header.rng_data;
    tr->rng_mask = ck->header.rng_mask;
    tr->data_pos = ck->header.data_pos;
}
