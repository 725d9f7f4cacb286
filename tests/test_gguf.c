// GGUF files written by llama.cpp's own gguf-py from the Hugging Face fixture models
// (scripts/make_gguf_fixtures.py: tests/fixtures/gguf): an F32 file gives the fixture's
// reference logits (transformers'); a quantised one dllm decodes exactly as gguf-py
// dequantises, and its logits are the reference's within the format's error (printed); the
// tokenizer rebuilt from the file encodes as the model directory's tokenizer.json; what dllm
// does not read is refused by name.
#define _GNU_SOURCE  // memmem
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "common/gguf.h"
#include "kernels/ggml_blocks.h"
#include "model/gguf_model.h"
#include "model/linear.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "store/gguf_quantize.h"
#include "store/model_source.h"
#include "tests/testutil.h"

#define GGUF_DIR "tests/fixtures/gguf/"
#define HF_DIR "tests/fixtures/hf_models/"

static void open_gguf_model(const char *file, HfWeights weights, ModelSource *src) {
    char chosen[512];
    int skipped;
    Error err;
    ck_assert_msg(model_source_open(file, weights, src, chosen, sizeof chosen, &skipped, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(src->kind, SOURCE_GGUF);
}

// dllm's logits of the fixture's reference tokens for a GGUF file (its weights streamed from
// the mapped file into the model), and the bytes per weight the model keeps.
static float *gguf_logits(const char *file, const Reference *r, size_t *weight_bytes) {
    ModelSource src;
    open_gguf_model(file, HF_WEIGHTS_LATER, &src);
    ck_assert_ptr_null(src.params);
    Model m;
    Error err;
    ck_assert_msg(model_source_build(&src, &backend_cpu, r->B, &m, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(m.cfg.vocab_size, r->V);
    *weight_bytes = m.be->weight_bytes;
    model_forward(&m, r->tokens, r->B, r->T);
    size_t n = (size_t)r->B * r->T * r->V;
    float *out = malloc(n * sizeof(float));
    backend_cpu.act_to_host(out, m.acts.logits, n);
    model_free(&m);
    model_source_free(&src);
    return out;
}

// The file NAME.TYPE.gguf of fixture NAME against its reference: the largest relative logit
// error and the rows whose argmax agrees.
static double check_file(const char *name, const char *type, double bound, size_t want_bytes) {
    char file[256], dir[256];
    snprintf(file, sizeof file, GGUF_DIR "%s.%s.gguf", name, type);
    snprintf(dir, sizeof dir, HF_DIR "%s", name);
    Reference r = reference_read(dir);
    size_t weight_bytes;
    float *logits = gguf_logits(file, &r, &weight_bytes);
    size_t rows = (size_t)r.B * r.T, same = 0;
    double err = max_relative_error(logits, r.logits, rows * r.V);
    for (size_t i = 0; i < rows; i++)
        same += argmax_row(logits + i * r.V, r.V) == argmax_row(r.logits + i * r.V, r.V);
    printf("  %-6s %-5s (%s weights): max relative logit error %.2e, argmax equal in %zu of "
           "%zu rows\n", name, type, weight_bytes == 2 ? "bf16" : "fp32", err, same, rows);
    fflush(stdout);
    ck_assert_int_eq(weight_bytes, want_bytes);
    ck_assert_msg(err < bound, "%s.%s: logit error %g over %g", name, type, err, bound);
    if (bound <= 1e-5) ck_assert_uint_eq(same, rows);
    free(logits), free(r.tokens), free(r.logits);
    return err;
}

// F32 files: the reference's logits to fp32 rounding (the mapping, the un-permuted q/k rows,
// biases, a tied head, GQA, bidirectional attention).
START_TEST(test_f32_files_match_reference) {
    check_file("llama", "f32", 1e-5, 4);
    check_file("qwen2", "f32", 1e-5, 4);
    check_file("llada", "f32", 1e-5, 4);
}
END_TEST

// Quantised files: bf16 loads as bf16 weights; Q8_0 and Q4_0 are decoded to fp32. Their
// logits move by the format's rounding of the weights: bounds well above what each measures
// (2026-12-06 on these tiny random models: bf16 8.1e-03, Q8_0 0.96-1.7e-02, Q4_0 0.26-0.29)
// and below what a wrong decode gives (errors of order 1).
START_TEST(test_quantised_files_stay_near_reference) {
    check_file("llama", "bf16", 0.05, 2);
    check_file("llama", "q8_0", 0.05, 4);
    check_file("qwen2", "q8_0", 0.05, 4);
    check_file("dream", "q8_0", 0.05, 4);
    check_file("llama", "q4_0", 0.5, 4);
    check_file("llada", "q4_0", 0.5, 4);
}
END_TEST

// A model built from file with the given --weights choice (its weights streamed from the file,
// or decoded onto the host first), its logits over tokens [B, T].
static float *logits_with(const char *file, HfWeights read, const char *weights,
                          const int *tokens, int B, int T, WeightKind *kind, size_t *param_bytes) {
    ModelSource src;
    open_gguf_model(file, read, &src);
    Model m;
    Error err;
    ck_assert_int_eq(model_source_choose_weights(&src, weights, &backend_cpu, &err), 0);
    ck_assert_msg(model_source_build(&src, &backend_cpu, B, &m, &err) == 0, "%s", err.msg);
    *kind = m.kind;
    *param_bytes = linear_param_bytes(&m.cfg, m.be, m.kind);
    model_forward(&m, tokens, B, T);
    size_t n = (size_t)B * T * m.cfg.vocab_size;
    float *out = malloc(n * sizeof(float));
    backend_cpu.act_to_host(out, m.acts.logits, n);
    model_free(&m);
    model_source_free(&src);
    return out;
}

// A file whose matrices are all Q8_0 (Q4_0) stays in 8 (4) bits on the CPU, its blocks as they
// are: its logits are those of the file decoded to fp32 (--weights fp32) up to the rounding of
// the inputs to 8 bits (large on this random model of std 0.3 weights: the bounds are its
// measured errors with a margin). dllm's quantisers are gguf-py's: each file decoded to fp32
// and quantised again (--weights q8 / q4) gives its blocks back, so the same logits bit for
// bit; the Q4_0 file in 8 bits (--weights q8: its codes widened, no rounding) gives the 4-bit
// model's logits bit for bit too. Widths that are not whole blocks are refused by name.
START_TEST(test_quantised_files_stay_in_their_blocks) {
    const char *files[] = {GGUF_DIR "llada_blocks.q8_0.gguf", GGUF_DIR "llada_blocks.q4_0.gguf"};
    const char *again_as[] = {"q8", "q4"};
    double bounds[] = {0.08, 0.16};
    enum { B = 2, T = 24, V = 1024 };
    int tokens[B * T];
    size_t n = (size_t)B * T * V;
    for (int i = 0; i < B * T; i++) tokens[i] = (int)((i * 7919u + 13u) % 1000u);
    for (int f = 0; f < 2; f++) {
        WeightKind kind, k32;
        size_t bytes, bytes32;
        float *qb = logits_with(files[f], HF_WEIGHTS_LATER, "auto", tokens, B, T, &kind, &bytes);
        float *fp32 = logits_with(files[f], HF_WEIGHTS_LATER, "fp32", tokens, B, T, &k32, &bytes32);
        ck_assert_int_eq(linear_block_bits(kind), f ? 4 : 8);
        ck_assert_int_eq(k32, WEIGHTS_PANELS);
        double err = max_relative_error(qb, fp32, n);
        int same = 0;
        for (int r = 0; r < B * T; r++)
            same += argmax_row(qb + r * V, V) == argmax_row(fp32 + r * V, V);
        printf("  %s in %d bits: max relative logit error %.2e against its fp32 decoding, argmax "
               "equal in %d of %d rows; weights %zu bytes (fp32: %zu)\n",
               files[f] + strlen(GGUF_DIR), f ? 4 : 8, err, same, B * T, bytes, bytes32);
        fflush(stdout);
        ck_assert_msg(err < bounds[f] && same >= B * T * 9 / 10, "%g, %d", err, same);
        ck_assert(bytes * (f ? 5 : 3) < bytes32);
        float *again = logits_with(files[f], HF_WEIGHTS_ON_HOST, again_as[f], tokens, B, T, &kind,
                                   &bytes);
        ck_assert_mem_eq(again, qb, n * sizeof(float));
        free(again);
        if (f) {
            float *wide = logits_with(files[f], HF_WEIGHTS_LATER, "q8", tokens, B, T, &kind, &bytes);
            ck_assert_int_eq(kind, WEIGHTS_Q8);
            ck_assert_mem_eq(wide, qb, n * sizeof(float));
            free(wide);
        }
        free(qb), free(fp32);
    }
    printf("  each file decoded and quantised again (--weights q8, q4): the same logits bit for "
           "bit; the Q4_0 file in 8 bits too\n");
    ModelSource src;
    Error err;
    open_gguf_model(GGUF_DIR "llada.f32.gguf", HF_WEIGHTS_LATER, &src);
    ck_assert_int_eq(src.weights_bits, 0);
    ck_assert_int_eq(model_source_choose_weights(&src, "q8", &backend_cpu, &err), 0);
    Model m;
    ck_assert_int_eq(model_source_build(&src, &backend_cpu, 1, &m, &err), -1);
    ck_assert_msg(strstr(err.msg, "d_ff 48 must be multiples"), "%s", err.msg);
    ck_assert_int_eq(model_source_choose_weights(&src, "q2", &backend_cpu, &err), -1);
    ck_assert_msg(strstr(err.msg, "--weights: unknown kind 'q2'"), "%s", err.msg);
    model_source_free(&src);
}
END_TEST

// The weights dllm decodes are the ones gguf-py dequantises, bit for bit: two tensors of each
// quantised file (layer 0's q, in transformers' row order again; layer 1's gate).
START_TEST(test_decoded_weights_equal_gguf_py) {
    Safetensors st;
    Error err;
    ck_assert(safetensors_open(&st, GGUF_DIR "expected.safetensors", &err) == 0);
    int checked = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const SafetensorsTensor *t = &st.tensors[i];
        char name[64], type[16], file[256];
        ck_assert(sscanf(t->name, "%63[^.].%15[^.]", name, type) == 2);
        snprintf(file, sizeof file, GGUF_DIR "%s.%s.gguf", name, type);
        ModelSource src;
        open_gguf_model(file, HF_WEIGHTS_ON_HOST, &src);
        ParamTensors p;
        param_tensors_point(&p, src.params, sizeof(float), &src.header.model);
        const ModelConfig *c = &src.header.model;
        int is_q = strstr(t->name, "attn_q") != NULL;
        const float *got = is_q ? p.wq : p.w_gate + (size_t)c->d_ff * c->d_model;
        size_t n = (size_t)t->shape[0] * t->shape[1];
        float *want = malloc(n * sizeof(float));
        ck_assert(safetensors_read(&st, t->name, t->shape, 2, want, &err) == 0);
        ck_assert_msg(!memcmp(got, want, n * sizeof(float)), "%s differs", t->name);
        free(want);
        model_source_free(&src);
        checked++;
    }
    safetensors_close(&st);
    ck_assert_int_eq(checked, 12);
    printf("  %d tensors of 6 bf16 and quantised files decoded as gguf-py dequantises them, bit for bit\n",
           checked);
}
END_TEST

// Every block type dllm reads, against gguf-py's dequantisation (the K types from random
// blocks: every scale byte, nibble and high-bit pattern).
START_TEST(test_blocks_decode_as_gguf_py) {
    Gguf g;
    Error err;
    ck_assert_msg(gguf_open(&g, GGUF_DIR "blocks.gguf", &err) == 0, "%s", err.msg);
    const char *types[] = {"f16", "bf16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"};
    for (int k = 0; k < 7; k++) {
        char expected[32];
        snprintf(expected, sizeof expected, "%s.expected", types[k]);
        const GgufTensor *t = gguf_tensor(&g, types[k]), *e = gguf_tensor(&g, expected);
        ck_assert(t && e && e->type == GGML_F32 && t->ne[0] == 256 && t->ne[1] == 2);
        float out[512];
        size_t row = ggml_row_bytes(t->type, 256);
        for (int r = 0; r < 2; r++) ggml_decode_row(t->type, t->data + r * row, out + 256 * r, 256);
        ck_assert_msg(!memcmp(out, e->data, sizeof out), "%s differs", types[k]);
    }
    gguf_close(&g);
    printf("  F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K blocks: gguf-py's values bit for bit\n");
}
END_TEST

// The tokenizer a GGUF file carries encodes as the model directory's tokenizer.json (which
// test_tokenizer_hf checks against the tokenizers library), special tokens included.
START_TEST(test_tokenizer_matches_tokenizer_json) {
    static const char *const texts[] = {
        "Hello world, it's 2026!", "  spaces\n\nand lines\t\ttabs", "naïve café — 1234567",
        "<|endoftext|>not special here", "I'd've said: don't!"};
    const char *names[] = {"llama", "qwen2", "llada"};
    for (int k = 0; k < 3; k++) {
        char file[256], dir[256];
        snprintf(file, sizeof file, GGUF_DIR "%s.f32.gguf", names[k]);
        snprintf(dir, sizeof dir, HF_DIR "%s", names[k]);
        ModelSource src;
        open_gguf_model(file, HF_CONFIG_ONLY, &src);
        Tokenizer hf;
        Error err;
        ck_assert_msg(tokenizer_load(&hf, dir, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(src.tokenizer.bos_id, hf.bos_id);
        ck_assert_int_eq(src.tokenizer.eos_id, hf.eos_id);
        for (int i = 0; i < 5; i++) {
            int *a, *b;
            size_t na, nb;
            ck_assert(tokenizer_encode(&src.tokenizer, texts[i], strlen(texts[i]), &a, &na, &err) == 0);
            ck_assert(tokenizer_encode(&hf, texts[i], strlen(texts[i]), &b, &nb, &err) == 0);
            ck_assert_msg(na == nb && !memcmp(a, b, na * sizeof(int)), "%s: \"%s\" encodes "
                          "differently", names[k], texts[i]);
            free(a), free(b);
        }
        tokenizer_free(&hf);
        model_source_free(&src);
    }
    printf("  tokenizers from GGUF (llama-bpe, qwen2): 5 texts encode as tokenizer.json\n");
}
END_TEST

static void expect_refused(const char *path, const char *what) {
    ModelSource src;
    char chosen[512];
    int skipped;
    Error err;
    ck_assert_int_eq(model_source_open(path, HF_WEIGHTS_LATER, &src, chosen, sizeof chosen,
                                       &skipped, &err), -1);
    ck_assert_msg(strstr(err.msg, what) != NULL, "%s: \"%s\" lacks \"%s\"", path, err.msg, what);
}

// Types, architectures and damaged files are refused with the file and the reason named.
START_TEST(test_what_dllm_does_not_read_is_refused) {
    expect_refused(GGUF_DIR "iq2_xs.gguf", "token_embd.weight is IQ2_XS");
    expect_refused(GGUF_DIR "blocks.gguf", "architecture blocks");
    char *data;
    size_t n;
    Error err;
    ck_assert(file_read_all(GGUF_DIR "llama.q4_0.gguf", &data, &n, &err) == 0);
    // cut inside the tensor data, inside the tensor infos, inside the metadata
    size_t cuts[] = {n - 100, n / 2, 2000, 100, 30};
    for (int i = 0; i < 5; i++) {
        Gguf g;
        ck_assert_int_eq(gguf_parse(&g, (const uint8_t *)data, cuts[i], "cut.gguf", &err), -1);
        ck_assert_msg(strstr(err.msg, "cut.gguf"), "%s", err.msg);
    }
    free(data);
    // a LLaDA file claiming Dream's shifted logits
    ck_assert(file_read_all(GGUF_DIR "llada.q4_0.gguf", &data, &n, &err) == 0);
    char *key = memmem(data, n, "diffusion.shift_logits", 22);
    ck_assert(key && key[22 + 4] == 0);  // after the key: uint32 type (bool), the value
    key[22 + 4] = 1;
    const char *path = write_temp_file("shifted.gguf", data, n);
    expect_refused(path, "diffusion.shift_logits is true; a llada model reads each position's");
    memcpy(data + 4, "\x01\x00\x00\x00", 4);  // version 1
    Gguf g;
    ck_assert_int_eq(gguf_parse(&g, (const uint8_t *)data, n, "v1.gguf", &err), -1);
    ck_assert_msg(strstr(err.msg, "GGUF version 1"), "%s", err.msg);
    free(data);
}
END_TEST

// A metadata entry's bytes as the file holds them (key to the value's end).
static int same_kv(const GgufKv *a, const GgufKv *b) {
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0 &&
           a->type == b->type && a->elem == b->elem && a->count == b->count &&
           a->end - a->value == b->end - b->value &&
           memcmp(a->value, b->value, (size_t)(a->end - a->value)) == 0;
}

// dllm quantize of the F32 file against the Q8_0 and Q4_0 files gguf-py wrote from the same
// model: every tensor of the same type, shape and bytes (the same quantisers, the same
// matrices quantised), every metadata entry the same but the file type; then the output
// loads and requantising it is refused by name.
START_TEST(test_quantize_writes_gguf_py_files) {
    const char *types[] = {"q8_0", "q4_0"};
    GgmlType to[] = {GGML_Q8_0, GGML_Q4_0};
    for (int i = 0; i < 2; i++) {
        char out[512], want_path[256];
        snprintf(out, sizeof out, "%s", write_temp_file("quantized.gguf", "", 0));
        snprintf(want_path, sizeof want_path, GGUF_DIR "llama.%s.gguf", types[i]);
        QuantizeStats st;
        Error err;
        ck_assert_msg(gguf_quantize(GGUF_DIR "llama.f32.gguf", out, to[i], &st, &err) == 0, "%s",
                      err.msg);
        Gguf got, want;
        ck_assert_msg(gguf_open(&got, out, &err) == 0, "%s", err.msg);
        ck_assert(gguf_open(&want, want_path, &err) == 0);
        ck_assert_int_eq(got.n_tensors, want.n_tensors);
        int quantised = 0;
        for (size_t t = 0; t < want.n_tensors; t++) {
            const GgufTensor *w = &want.tensors[t], *g = gguf_tensor(&got, w->name);
            ck_assert_msg(g != NULL, "%s missing", w->name);
            ck_assert_msg(g->type == w->type, "%s: %s, gguf-py %s", w->name,
                          ggml_type_name(g->type), ggml_type_name(w->type));
            ck_assert_int_eq(g->n_dims, w->n_dims);
            for (int d = 0; d < 4; d++) ck_assert(g->ne[d] == w->ne[d]);
            ck_assert_int_eq(g->bytes, w->bytes);
            ck_assert_msg(memcmp(g->data, w->data, w->bytes) == 0, "%s: bytes differ", w->name);
            quantised += w->type == to[i];
        }
        ck_assert_int_eq(st.quantised, quantised);
        ck_assert(quantised >= 7);
        Gguf in;
        ck_assert(gguf_open(&in, GGUF_DIR "llama.f32.gguf", &err) == 0);
        for (size_t k = 0; k < in.n_kv; k++) {
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)in.kv[k].key_len, in.kv[k].key);
            const GgufKv *g = gguf_find(&got, key);
            ck_assert_msg(g != NULL, "%s missing", key);
            if (strcmp(key, "general.file_type") != 0)
                ck_assert_msg(same_kv(g, &in.kv[k]), "%s differs", key);
        }
        int64_t ftype = 0;
        ck_assert(gguf_get_int(&got, "general.file_type", &ftype, &err) == 0);
        ck_assert_int_eq(ftype, to[i] == GGML_Q8_0 ? 7 : 2);
        printf("  quantize %s: %d of %zu tensors quantised, every tensor gguf-py's bytes\n",
               types[i], quantised, want.n_tensors);
        gguf_close(&in), gguf_close(&want), gguf_close(&got);
        // the output loads as gguf-py's file does; quantising it again is refused
        ModelSource src, want_src;
        open_gguf_model(out, HF_WEIGHTS_LATER, &src);
        open_gguf_model(want_path, HF_WEIGHTS_LATER, &want_src);
        ck_assert_int_eq(src.weights_bits, want_src.weights_bits);
        ck_assert_int_eq(src.header.model.n_layer, want_src.header.model.n_layer);
        ck_assert_int_eq(src.header.model.vocab_size, want_src.header.model.vocab_size);
        model_source_free(&src), model_source_free(&want_src);
        ck_assert_int_eq(gguf_quantize(out, out, GGML_Q4_0, &st, &err), -1);
        ck_assert_msg(strstr(err.msg, "already; quantize the F32, F16 or BF16 file"), "%s",
                      err.msg);
    }
}
END_TEST

// A copy of fixture `file` with a non-finite value in the data of its first tensor of at least
// two dimensions whose rows are whole blocks of 32: a float NaN (F32 files) or a Q8_0 block
// scale that is a half NaN; the tensor's name into name.
static const char *with_non_finite(const char *file, const char *copy, char *name) {
    char *data;
    size_t n;
    Error err;
    ck_assert(file_read_all(file, &data, &n, &err) == 0);
    Gguf g;
    ck_assert(gguf_parse(&g, (const uint8_t *)data, n, file, &err) == 0);
    const GgufTensor *t = g.tensors;
    while (t->n_dims < 2 || t->ne[0] % 32) t++;
    size_t at = (size_t)(t->data - (const uint8_t *)data);
    if (t->type == GGML_F32) {
        float nan = NAN;
        memcpy(data + at, &nan, 4);
    } else {
        ck_assert_int_eq(t->type, GGML_Q8_0);
        memcpy(data + at, "\x00\x7e", 2);  // fp16 0x7e00: NaN
    }
    snprintf(name, 96, "%s", t->name);
    gguf_close(&g);
    const char *path = write_temp_file(copy, data, n);
    free(data);
    return path;
}

// Weights with a NaN have no 8- or 4-bit code: dllm quantize refuses the file, naming the
// tensor and leaving no output, and so do --weights q8 (decoded on the host, quantised again)
// and --weights q4 (Q8_0 blocks requantised at load), naming the matrix.
START_TEST(test_non_finite_weights_are_not_quantised) {
    char name[96], out[512];
    const char *path = with_non_finite(GGUF_DIR "llama.f32.gguf", "nan.f32.gguf", name);
    snprintf(out, sizeof out, "%s.q8.gguf", path);
    QuantizeStats st;
    Error err;
    ck_assert_int_eq(gguf_quantize(path, out, GGML_Q8_0, &st, &err), -1);
    char want[160];
    snprintf(want, sizeof want, "tensor %s holds a non-finite value (row 0), which has no Q8_0",
             name);
    ck_assert_msg(strstr(err.msg, want), "%s", err.msg);
    ck_assert(access(out, F_OK) != 0);
    path = with_non_finite(GGUF_DIR "llada_blocks.q8_0.gguf", "nan.q8_0.gguf", name);
    const char *weights[] = {"q8", "q4"};
    HfWeights read[] = {HF_WEIGHTS_ON_HOST, HF_WEIGHTS_LATER};
    for (int k = 0; k < 2; k++) {
        ModelSource src;
        Model m;
        open_gguf_model(path, read[k], &src);
        ck_assert_int_eq(model_source_choose_weights(&src, weights[k], &backend_cpu, &err), 0);
        ck_assert_int_eq(model_source_build(&src, &backend_cpu, 1, &m, &err), -1);
        ck_assert_msg(strstr(err.msg, "of layer 0 holds a non-finite value (row 0)"), "%s",
                      err.msg);
        model_source_free(&src);
    }
    printf("  non-finite weights: dllm quantize, --weights q8 and q4 refuse them by name\n");
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_f32_files_match_reference);
    tcase_add_test(tc, test_quantised_files_stay_near_reference);
    tcase_add_test(tc, test_decoded_weights_equal_gguf_py);
    tcase_add_test(tc, test_quantised_files_stay_in_their_blocks);
    tcase_add_test(tc, test_blocks_decode_as_gguf_py);
    tcase_add_test(tc, test_tokenizer_matches_tokenizer_json);
    tcase_add_test(tc, test_what_dllm_does_not_read_is_refused);
    tcase_add_test(tc, test_quantize_writes_gguf_py_files);
    tcase_add_test(tc, test_non_finite_weights_are_not_quantised);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
