#include "tokenizer/gguf_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "tokenizer/hf_tokenizer.h"

// The split patterns of the pre-tokenizers dllm knows, as their tokenizer.json files give them.
static const struct {
    const char *names;  // the GGUF names, space-separated
    const char *regex;
} PRE_TOKENIZERS[] = {
    {"llama-bpe llama3 llama-v3",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"qwen2 deepseek-r1-qwen",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"gpt-2", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
    {"llada-moe bailingmoe",
     "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*"
     "|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
};

enum { TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4 };

static const char *pre_regex(const char *name, size_t n) {
    for (size_t i = 0; i < sizeof PRE_TOKENIZERS / sizeof *PRE_TOKENIZERS; i++)
        for (const char *p = PRE_TOKENIZERS[i].names; *p;) {
            size_t len = strcspn(p, " ");
            if (len == n && memcmp(p, name, n) == 0) return PRE_TOKENIZERS[i].regex;
            p += len + (p[len] == ' ');
        }
    return NULL;
}

static const GgufKv *string_array(const Gguf *g, const char *key, Error *err) {
    const GgufKv *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_ARRAY || kv->elem != GGUF_STRING) {
        error_set(err, "%s: %s is missing or not an array of strings", g->path, key);
        return NULL;
    }
    return kv;
}

// tokenizer.json: the vocabulary (ids in order), the merges, the pre-tokenizer, the added
// tokens (control tokens special, user-defined ones not).
static void write_tokenizer_json(FILE *f, const GgufKv *tokens, const GgufKv *types,
                                 const GgufKv *merges, const char *regex) {
    fputs("{\"version\":\"1.0\",\"added_tokens\":[", f);
    const uint8_t *p = tokens->value;
    int first = 1;
    for (uint64_t i = 0; i < tokens->count; i++) {
        const char *s;
        size_t n;
        p = gguf_string_at(p, &s, &n);
        int64_t type = types ? gguf_array_int(types, i) : 1;
        if (type != TOKEN_CONTROL && type != TOKEN_USER_DEFINED) continue;
        fprintf(f, "%s{\"id\":%llu,\"content\":", first ? "" : ",", (unsigned long long)i);
        json_write_bytes(f, s, n);
        fprintf(f, ",\"special\":%s}", type == TOKEN_CONTROL ? "true" : "false");
        first = 0;
    }
    fputs("],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
          "{\"type\":\"Split\",\"pattern\":{\"Regex\":", f);
    json_write_string(f, regex);
    fputs("},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
          "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
          "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{", f);
    p = tokens->value;
    for (uint64_t i = 0; i < tokens->count; i++) {
        const char *s;
        size_t n;
        p = gguf_string_at(p, &s, &n);
        if (i) fputc(',', f);
        json_write_bytes(f, s, n);
        fprintf(f, ":%llu", (unsigned long long)i);
    }
    fputs("},\"merges\":[", f);
    p = merges ? merges->value : NULL;
    for (uint64_t i = 0; merges && i < merges->count; i++) {
        const char *s;
        size_t n;
        p = gguf_string_at(p, &s, &n);
        if (i) fputc(',', f);
        json_write_bytes(f, s, n);
    }
    fputs("]}}", f);
}

// The text of token `id` of the vocabulary, or NULL past its end.
static int token_text(const GgufKv *tokens, int64_t id, const char **s, size_t *n) {
    if (id < 0 || (uint64_t)id >= tokens->count) return -1;
    const uint8_t *p = tokens->value;
    for (int64_t i = 0; i <= id; i++) p = gguf_string_at(p, s, n);
    return 0;
}

// tokenizer_config.json: the special tokens by text, and the chat template.
static int write_config(FILE *f, const Gguf *g, const GgufKv *tokens, Error *err) {
    static const char *const SPECIALS[][2] = {{"bos_token", "tokenizer.ggml.bos_token_id"},
                                              {"eos_token", "tokenizer.ggml.eos_token_id"},
                                              {"pad_token", "tokenizer.ggml.padding_token_id"},
                                              {"mask_token", "tokenizer.ggml.mask_token_id"}};
    fputc('{', f);
    int first = 1;
    for (int i = 0; i < 4; i++) {
        int64_t id;
        int rc = gguf_get_int(g, SPECIALS[i][1], &id, err);
        if (rc < 0) return -1;
        if (rc == 1) continue;
        const char *s;
        size_t n;
        if (token_text(tokens, id, &s, &n))
            return error_set(err, "%s: %s %lld is past the vocabulary's %llu tokens", g->path,
                             SPECIALS[i][1], (long long)id, (unsigned long long)tokens->count);
        fprintf(f, "%s\"%s\":", first ? "" : ",", SPECIALS[i][0]);
        json_write_bytes(f, s, n);
        first = 0;
    }
    const char *tmpl;
    size_t n;
    int rc = gguf_get_string(g, "tokenizer.chat_template", &tmpl, &n, err);
    if (rc < 0) return -1;
    if (rc == 0) {
        fprintf(f, "%s\"chat_template\":", first ? "" : ",");
        json_write_bytes(f, tmpl, n);
    }
    fputc('}', f);
    return 0;
}

int gguf_tokenizer_load(Tokenizer *t, const Gguf *g, Error *err) {
    const char *model, *pre = "";
    size_t model_len, pre_len = 0;
    int rc = gguf_get_string(g, "tokenizer.ggml.model", &model, &model_len, err);
    if (rc < 0) return -1;
    if (rc == 1) return error_set(err, "%s: no tokenizer (tokenizer.ggml.model)", g->path);
    if (model_len != 4 || memcmp(model, "gpt2", 4) != 0)
        return error_set(err, "%s: tokenizer.ggml.model %.*s; dllm reads byte-level BPE (gpt2) "
                              "vocabularies from GGUF", g->path, (int)(model_len < 40 ? model_len : 40),
                         model);
    if (gguf_get_string(g, "tokenizer.ggml.pre", &pre, &pre_len, err) < 0) return -1;
    const char *regex = pre_regex(pre, pre_len);
    if (!regex)
        return error_set(err, "%s: tokenizer.ggml.pre %.*s; dllm knows llama-bpe, qwen2, gpt-2 "
                              "and llada-moe", g->path, (int)(pre_len < 40 ? pre_len : 40), pre);
    const GgufKv *tokens = string_array(g, "tokenizer.ggml.tokens", err);
    const GgufKv *merges = tokens ? string_array(g, "tokenizer.ggml.merges", err) : NULL;
    if (!merges) return -1;
    const GgufKv *types = gguf_find(g, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_ARRAY || types->count != tokens->count ||
                  types->elem == GGUF_STRING || types->elem == GGUF_F32 || types->elem == GGUF_F64))
        return error_set(err, "%s: tokenizer.ggml.token_type is not one integer per token",
                         g->path);
    char *json = NULL, *config = NULL;
    size_t json_len = 0, config_len = 0;
    FILE *jf = open_memstream(&json, &json_len), *cf = open_memstream(&config, &config_len);
    if (!jf || !cf) {
        if (jf) fclose(jf);
        if (cf) fclose(cf);
        free(json), free(config);
        return error_set(err, "%s: out of memory", g->path);
    }
    write_tokenizer_json(jf, tokens, types, merges, regex);
    rc = write_config(cf, g, tokens, err);
    fclose(jf), fclose(cf);
    if (rc == 0) {
        char what[4200];
        snprintf(what, sizeof what, "%s (its tokenizer)", g->path);
        rc = hf_tokenizer_from_texts(t, json, json_len, config, config_len, what, err);
    }
    free(json), free(config);
    return rc;
}
