#include "tokenizer/hf_tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/hash.h"
#include "common/json.h"
#include "tokenizer/bpe.h"

// The files a bundle may hold, in bundle order; only tokenizer.json is required.
static const char *const PART_NAMES[] = {"tokenizer.json", "tokenizer_config.json",
                                         "chat_template.jinja"};
#define N_PARTS 3

typedef struct {
    const char *data[N_PARTS];  // NULL: absent
    size_t len[N_PARTS];
} Parts;

int hf_tokenizer_path(const char *path) {
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0) return 1;
    char file[4200];
    snprintf(file, sizeof file, "%s/tokenizer.json", path);
    return file_is_dir(path) && file_size(file) >= 0;
}

// ---- The bundle ----

static void put_bytes(char **p, const void *src, size_t n) {
    memcpy(*p, src, n);
    *p += n;
}

static char *make_bundle(const Parts *parts, size_t *n) {
    uint32_t count = 0;
    size_t total = 8 + 4;
    for (int i = 0; i < N_PARTS; i++) {
        if (!parts->data[i]) continue;
        count++;
        total += 4 + strlen(PART_NAMES[i]) + 8 + parts->len[i];
    }
    char *bundle = malloc(total), *p = bundle;
    if (!bundle) return NULL;
    put_bytes(&p, HF_BUNDLE_MAGIC, 8);
    put_bytes(&p, &count, 4);
    for (int i = 0; i < N_PARTS; i++) {
        if (!parts->data[i]) continue;
        uint32_t name_len = (uint32_t)strlen(PART_NAMES[i]);
        uint64_t len = parts->len[i];
        put_bytes(&p, &name_len, 4);
        put_bytes(&p, PART_NAMES[i], name_len);
        put_bytes(&p, &len, 8);
        put_bytes(&p, parts->data[i], parts->len[i]);
    }
    *n = total;
    return bundle;
}

// Points parts into a bundle, checking every size against the bundle's end.
static int split_bundle(const char *bundle, size_t n, Parts *parts, const char *what,
                        Error *err) {
    memset(parts, 0, sizeof *parts);
    if (n < 12 || memcmp(bundle, HF_BUNDLE_MAGIC, 8) != 0)
        return error_set(err, "%s: not a dllm Hugging Face tokenizer bundle", what);
    uint32_t count;
    memcpy(&count, bundle + 8, 4);
    size_t at = 12;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t name_len;
        uint64_t len;
        if (n - at < 4) return error_set(err, "%s: tokenizer bundle truncated", what);
        memcpy(&name_len, bundle + at, 4);
        at += 4;
        if (n - at < (uint64_t)name_len + 8) return error_set(err, "%s: tokenizer bundle truncated", what);
        const char *name = bundle + at;
        at += name_len;
        memcpy(&len, bundle + at, 8);
        at += 8;
        if (n - at < len) return error_set(err, "%s: tokenizer bundle truncated", what);
        for (int i = 0; i < N_PARTS; i++)
            if (strlen(PART_NAMES[i]) == name_len && memcmp(PART_NAMES[i], name, name_len) == 0) {
                parts->data[i] = bundle + at;
                parts->len[i] = (size_t)len;
            }
        at += (size_t)len;
    }
    if (!parts->data[0]) return error_set(err, "%s: the tokenizer bundle has no tokenizer.json", what);
    return 0;
}

// ---- tokenizer_config.json ----

// A special token's text: a string, or an object with "content" (an AddedToken); NULL if none.
static const char *token_text(const JsonValue *config, const char *key) {
    const JsonValue *v = json_member(config, key);
    if (v && v->type == JSON_OBJECT) return json_member_string(v, "content");
    return v && v->type == JSON_STRING ? v->string : NULL;
}

static int special_id(const Tokenizer *t, const JsonValue *config, const char *key,
                      const char *what, int *id, Error *err) {
    const char *text = token_text(config, key);
    *id = -1;
    if (!text) return 0;
    *id = bpe_token_id(t->bpe, text);
    if (*id < 0) return error_set(err, "%s: %s \"%s\" is not a token of tokenizer.json", what, key, text);
    return 0;
}

// How errors name a part: the file beside `what` (a tokenizer.json path), or `what (part)`.
static void part_name(const char *what, const char *part, char *out, size_t cap) {
    size_t n = strlen(what), k = strlen("tokenizer.json");
    if (n >= k && strcmp(what + n - k, "tokenizer.json") == 0)
        snprintf(out, cap, "%.*s%s", (int)(n - k), what, part);
    else
        snprintf(out, cap, "%s (%s)", what, part);
}

static int read_config(Tokenizer *t, const Parts *parts, const char *file, Error *err) {
    char what[4400];
    part_name(file, "tokenizer_config.json", what, sizeof what);
    JsonValue config = {0};
    Error why;
    char *text = NULL;
    if (parts->data[1]) {
        text = malloc(parts->len[1] + 1);
        if (!text) return error_set(err, "%s: out of memory", what);
        memcpy(text, parts->data[1], parts->len[1]);
        text[parts->len[1]] = '\0';
        int rc = json_parse(text, &config, &why);
        free(text);
        if (rc) return error_set(err, "%s: not JSON: %s", what, why.msg);
        if (config.type != JSON_OBJECT) {
            json_free(&config);
            return error_set(err, "%s: not a JSON object", what);
        }
    }
    int rc = special_id(t, &config, "bos_token", what, &t->bos_id, err) ||
             special_id(t, &config, "eos_token", what, &t->eos_id, err) ||
             special_id(t, &config, "pad_token", what, &t->pad_id, err) ||
             special_id(t, &config, "mask_token", what, &t->mask_id, err);
    if (rc == 0) {
        static const char *const masks[] = {"<|mdm_mask|>", "<|mask|>", "[MASK]", "<mask>"};
        for (int i = 0; i < 4 && t->mask_id < 0; i++) t->mask_id = bpe_token_id(t->bpe, masks[i]);
        if (t->pad_id < 0) t->pad_id = t->eos_id;
        // the template: chat_template.jinja, else the config's string (or its "default" entry)
        char *jinja = NULL;
        const JsonValue *tmpl = json_member(&config, "chat_template");
        if (parts->data[2]) {
            jinja = strndup(parts->data[2], parts->len[2]);
        } else if (tmpl && tmpl->type == JSON_STRING) {
            jinja = strdup(tmpl->string);
        } else if (tmpl && tmpl->type == JSON_ARRAY) {
            for (int i = 0; i < tmpl->n && !jinja; i++) {
                const char *name = json_member_string(&tmpl->items[i], "name");
                const char *body = json_member_string(&tmpl->items[i], "template");
                if (name && body && strcmp(name, "default") == 0) jinja = strdup(body);
            }
        }
        chat_template_recognize(&t->chat, jinja, token_text(&config, "bos_token"));
        free(jinja);
    }
    json_free(&config);
    return rc ? -1 : 0;
}

// ---- Loading ----

int hf_tokenizer_from_bundle(Tokenizer *t, const char *bundle, size_t n, const char *what,
                             Error *err) {
    memset(t, 0, sizeof *t);
    t->kind = TOKENIZER_BPE;
    t->prompt_id = t->response_id = -1;
    t->blob = malloc(n);
    if (!t->blob) return error_set(err, "%s: out of memory", what);
    memcpy(t->blob, bundle, n);
    t->blob_bytes = n;
    t->hash = fnv1a(FNV1A_INIT, bundle, n);
    Parts parts;
    if (split_bundle(t->blob, n, &parts, what, err)) {
        tokenizer_free(t);
        return -1;
    }
    // bpe_load wants NUL-terminated text
    char *json = strndup(parts.data[0], parts.len[0]);
    char where[4400];
    part_name(what, "tokenizer.json", where, sizeof where);
    t->bpe = json ? bpe_load(json, where, err) : NULL;
    if (!json) error_set(err, "%s: out of memory", what);
    free(json);
    if (!t->bpe || read_config(t, &parts, what, err)) {
        tokenizer_free(t);
        return -1;
    }
    t->vocab_size = bpe_vocab_size(t->bpe);
    return 0;
}

// The bundle of parts, loaded.
static int from_parts(Tokenizer *t, const Parts *parts, const char *what, Error *err) {
    size_t n = 0;
    char *bundle = make_bundle(parts, &n);
    if (!bundle) return error_set(err, "%s: out of memory", what);
    int rc = hf_tokenizer_from_bundle(t, bundle, n, what, err);
    free(bundle);
    return rc;
}

int hf_tokenizer_from_texts(Tokenizer *t, const char *json, size_t json_len, const char *config,
                            size_t config_len, const char *what, Error *err) {
    Parts parts = {{json, config}, {json_len, config_len}};
    return from_parts(t, &parts, what, err);
}

int hf_tokenizer_load(Tokenizer *t, const char *path, Error *err) {
    char dir[4200], files[N_PARTS][4300];
    if (file_is_dir(path)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(files[0], sizeof files[0], "%s/tokenizer.json", dir);
    } else {
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
        snprintf(files[0], sizeof files[0], "%s", path);
    }
    Parts parts = {0};
    char *data[N_PARTS] = {NULL};
    int rc = 0;
    for (int i = 0; i < N_PARTS && rc == 0; i++) {
        if (i > 0) snprintf(files[i], sizeof files[i], "%s/%s", dir, PART_NAMES[i]);
        if (i > 0 && file_size(files[i]) < 0) continue;  // optional
        rc = file_read_all(files[i], &data[i], &parts.len[i], err);
        parts.data[i] = data[i];
    }
    if (rc == 0) rc = from_parts(t, &parts, files[0], err);
    for (int i = 0; i < N_PARTS; i++) free(data[i]);
    return rc;
}

int hf_tokenizer_write_files(const Tokenizer *t, const char *dir, Error *err) {
    Parts parts;
    if (split_bundle(t->blob, t->blob_bytes, &parts, "tokenizer", err)) return -1;
    for (int i = 0; i < N_PARTS; i++) {
        if (!parts.data[i]) continue;
        char path[4300];
        snprintf(path, sizeof path, "%s/%s", dir, PART_NAMES[i]);
        AtomicFile f;
        if (atomic_open(&f, path, err)) return -1;
        fwrite(parts.data[i], 1, parts.len[i], f.f);
        if (atomic_commit(&f, err)) return -1;
    }
    return 0;
}
