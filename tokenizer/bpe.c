#include "tokenizer/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/hash.h"
#include "common/json.h"

// GPT-2's pre-tokenizer regex, which a ByteLevel step with use_regex applies.
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define MAX_STEPS 8

typedef struct {
    pcre2_code *regex;    // a Split step's pattern; NULL for the ByteLevel step
    int add_prefix_space;  // ByteLevel: a piece not starting with ' ' gets one
} PreStep;

typedef struct {
    char *content;
    size_t len;
    int id, special;
} AddedToken;

// Open-addressed tables: text -> id, and (left, right) -> (rank, merged id).
typedef struct {
    const char *key;
    size_t len;
    int id;
} TextSlot;

typedef struct {
    uint64_t pair;  // left << 32 | right, +1 so that 0 marks an empty slot
    int rank, merged;
} MergeSlot;

struct Bpe {
    int vocab_size;
    char **bytes;  // [vocab_size] each token's raw bytes (NULL: unused id)
    size_t *lens;
    char **pieces;   // [vocab_size] the vocabulary's byte-level strings (NULL: not in it)
    unsigned char *special;
    TextSlot *text;  // the vocabulary: byte-level string -> id
    size_t text_cap;
    MergeSlot *merges;
    size_t merge_cap;
    int byte_id[256];          // the vocabulary id of each byte's one-character token
    char byte_char[256][3];    // each byte's printable character, UTF-8, NUL-terminated
    AddedToken *added;
    int n_added;
    unsigned char added_first[256];  // 1 where some added token starts with that byte
    int nfc, ignore_merges, unk_id;
    PreStep steps[MAX_STEPS];  // Split steps, then the ByteLevel step last
    int n_steps;
};

// ---- Tables ----

static size_t text_find(const TextSlot *t, size_t cap, const char *key, size_t len) {
    size_t i = fnv1a(FNV1A_INIT, key, len) & (cap - 1);
    while (t[i].key && (t[i].len != len || memcmp(t[i].key, key, len) != 0)) i = (i + 1) & (cap - 1);
    return i;
}

static int text_lookup(const Bpe *b, const char *key, size_t len) {
    size_t i = text_find(b->text, b->text_cap, key, len);
    return b->text[i].key ? b->text[i].id : -1;
}

// Keeps the first id given for a key.
static void text_insert(Bpe *b, const char *key, size_t len, int id) {
    size_t i = text_find(b->text, b->text_cap, key, len);
    if (!b->text[i].key) b->text[i] = (TextSlot){key, len, id};
}

static size_t merge_find(const MergeSlot *m, size_t cap, uint64_t pair) {
    size_t i = (size_t)((pair * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
    while (m[i].pair && m[i].pair != pair) i = (i + 1) & (cap - 1);
    return i;
}

static uint64_t pair_key(int left, int right) {
    return ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
}

static const MergeSlot *merge_lookup(const Bpe *b, int left, int right) {
    const MergeSlot *s = &b->merges[merge_find(b->merges, b->merge_cap, pair_key(left, right))];
    return s->pair ? s : NULL;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

// ---- The byte-level alphabet ----

static int printable_latin1(int byte) {
    return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
}

// GPT-2's map: printable Latin-1 bytes stand for themselves, the other 68 bytes for the code
// points 256, 257, ... in byte order, so every byte is a visible character.
static int byte_to_codepoint(int byte) {
    if (printable_latin1(byte)) return byte;
    int n = 0;
    for (int c = 0; c < byte; c++) n += !printable_latin1(c);
    return 256 + n;
}

// A token's raw bytes from its byte-level string: mapped characters back to their bytes,
// anything else kept as it is (as the ByteLevel decoder does).
static size_t unmap_bytes(const int *cp_to_byte, const char *s, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) {
            out[n++] = s[i++];
        } else if (cp < 512 && cp_to_byte[cp] >= 0) {
            out[n++] = (char)cp_to_byte[cp];
            i += (size_t)k;
        } else {
            memcpy(out + n, s + i, (size_t)k);
            n += (size_t)k;
            i += (size_t)k;
        }
    }
    return n;
}

// ---- Loading ----

static int set_token(Bpe *b, int id, const char *bytes, size_t len, const char *what,
                     Error *err) {
    if (b->bytes[id]) return 0;  // an added token that is also a vocabulary entry
    b->bytes[id] = malloc(len + 1);
    if (!b->bytes[id]) return error_set(err, "%s: out of memory", what);
    memcpy(b->bytes[id], bytes, len);
    b->bytes[id][len] = '\0';
    b->lens[id] = len;
    return 0;
}

static int valid_id(const JsonValue *v, int limit) {
    return v && v->type == JSON_NUMBER && v->number >= 0 && v->number < limit &&
           v->number == (int)v->number;
}

// Ids at or past this are refused (the largest released vocabularies hold about 256 K tokens).
#define MAX_TOKEN_ID (1 << 24)

// The largest id named by the vocabulary and the added tokens, + 1.
static int count_ids(const JsonValue *vocab, const JsonValue *added) {
    int n = 0;
    for (int i = 0; i < vocab->n; i++)
        if (valid_id(&vocab->items[i], MAX_TOKEN_ID) && (int)vocab->items[i].number >= n)
            n = (int)vocab->items[i].number + 1;
    for (int i = 0; added && i < added->n; i++) {
        const JsonValue *id = json_member(&added->items[i], "id");
        if (valid_id(id, MAX_TOKEN_ID) && (int)id->number >= n) n = (int)id->number + 1;
    }
    return n;
}

static int is_true(const JsonValue *v) { return v && v->type == JSON_TRUE; }
static int is_set(const JsonValue *v) {
    return v && v->type != JSON_NULL && v->type != JSON_FALSE &&
           !(v->type == JSON_STRING && v->len == 0) && !(v->type == JSON_NUMBER && v->number == 0);
}

static int load_vocab(Bpe *b, const JsonValue *vocab, const int *cp_to_byte, const char *what,
                      Error *err) {
    char *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < vocab->n; i++) {
        if (!valid_id(&vocab->items[i], b->vocab_size)) {
            free(buf);
            return error_set(err, "%s: model.vocab[\"%s\"] is not a token id", what,
                             vocab->keys[i]);
        }
        int id = (int)vocab->items[i].number;
        size_t len = strlen(vocab->keys[i]);
        if (b->pieces[id]) {
            free(buf);
            return error_set(err, "%s: model.vocab gives id %d twice", what, id);
        }
        if (len + 1 > cap) {
            cap = 2 * len + 16;
            free(buf);
            buf = malloc(cap);
            if (!buf) return error_set(err, "%s: out of memory", what);
        }
        b->pieces[id] = strdup(vocab->keys[i]);
        if (!b->pieces[id] ||
            set_token(b, id, buf, unmap_bytes(cp_to_byte, vocab->keys[i], len, buf), what, err)) {
            free(buf);
            return error_set(err, "%s: out of memory", what);
        }
        text_insert(b, b->pieces[id], len, id);
    }
    free(buf);
    for (int byte = 0; byte < 256; byte++)
        b->byte_id[byte] = text_lookup(b, b->byte_char[byte], strlen(b->byte_char[byte]));
    return 0;
}

// One merge: "left right" (older files) or ["left", "right"].
static int merge_parts(const JsonValue *m, char *buf, const char **left, const char **right) {
    if (m->type == JSON_ARRAY && m->n == 2 && m->items[0].type == JSON_STRING &&
        m->items[1].type == JSON_STRING) {
        *left = m->items[0].string;
        *right = m->items[1].string;
        return 0;
    }
    if (m->type != JSON_STRING) return -1;
    const char *space = strchr(m->string, ' ');
    if (!space || strchr(space + 1, ' ')) return -1;
    memcpy(buf, m->string, m->len + 1);
    buf[space - m->string] = '\0';
    *left = buf;
    *right = buf + (space - m->string) + 1;
    return 0;
}

static int load_merges(Bpe *b, const JsonValue *merges, const char *what, Error *err) {
    b->merge_cap = pow2_at_least(2 * (size_t)merges->n + 16);
    b->merges = calloc(b->merge_cap, sizeof *b->merges);
    char buf[1024], joined[2048];
    if (!b->merges) return error_set(err, "%s: out of memory", what);
    for (int i = 0; i < merges->n; i++) {
        const JsonValue *m = &merges->items[i];
        const char *left, *right;
        if ((m->type == JSON_STRING && m->len >= sizeof buf) || merge_parts(m, buf, &left, &right))
            return error_set(err, "%s: model.merges[%d] is not a pair of tokens", what, i);
        size_t ll = strlen(left), rl = strlen(right);
        int l = text_lookup(b, left, ll), r = text_lookup(b, right, rl);
        if (l < 0 || r < 0)
            return error_set(err, "%s: model.merges[%d] refers to '%s', which is not in the "
                                  "vocabulary", what, i, l < 0 ? left : right);
        if (ll + rl >= sizeof joined)
            return error_set(err, "%s: model.merges[%d] is too long", what, i);
        memcpy(joined, left, ll);
        memcpy(joined + ll, right, rl);
        int merged = text_lookup(b, joined, ll + rl);
        if (merged < 0)
            return error_set(err, "%s: model.merges[%d] makes '%.*s', which is not in the "
                                  "vocabulary", what, i, (int)(ll + rl), joined);
        MergeSlot *s = &b->merges[merge_find(b->merges, b->merge_cap, pair_key(l, r))];
        if (!s->pair) *s = (MergeSlot){pair_key(l, r), i, merged};
    }
    return 0;
}

static int load_added(Bpe *b, const JsonValue *added, const char *what, Error *err) {
    if (!added || added->type == JSON_NULL) return 0;
    if (added->type != JSON_ARRAY) return error_set(err, "%s: added_tokens is not an array", what);
    b->added = calloc((size_t)added->n + 1, sizeof *b->added);
    if (!b->added) return error_set(err, "%s: out of memory", what);
    for (int i = 0; i < added->n; i++) {
        const JsonValue *a = &added->items[i], *id = json_member(a, "id");
        const JsonValue *content = json_member(a, "content");
        if (!valid_id(id, b->vocab_size) || !content || content->type != JSON_STRING ||
            content->len == 0)
            return error_set(err, "%s: added_tokens[%d] needs an id and a content", what, i);
        static const char *const unsupported[] = {"single_word", "lstrip", "rstrip"};
        for (int k = 0; k < 3; k++)
            if (is_true(json_member(a, unsupported[k])))
                return error_set(err, "%s: added_tokens[%d] (%s) sets %s, which dllm does not "
                                      "support", what, i, content->string, unsupported[k]);
        AddedToken *t = &b->added[b->n_added];
        t->content = malloc(content->len + 1);
        if (!t->content) return error_set(err, "%s: out of memory", what);
        memcpy(t->content, content->string, content->len + 1);
        b->n_added++;
        t->id = (int)id->number;
        t->len = content->len;
        t->special = is_true(json_member(a, "special"));
        b->special[t->id] = (unsigned char)t->special;
        b->added_first[(unsigned char)t->content[0]] = 1;
        if (set_token(b, t->id, t->content, t->len, what, err)) return -1;
    }
    return 0;
}

static int check_model(Bpe *b, const JsonValue *model, const char *what, Error *err) {
    const char *type = json_member_string(model, "type");
    if (!model || model->type != JSON_OBJECT)
        return error_set(err, "%s: no \"model\" object (not a tokenizer.json?)", what);
    if (type && strcmp(type, "BPE") != 0)
        return error_set(err, "%s: model type %s is not supported (only byte-level BPE)", what,
                         type);
    static const char *const unsupported[] = {"dropout", "continuing_subword_prefix",
                                              "end_of_word_suffix", "byte_fallback"};
    for (int k = 0; k < 4; k++)
        if (is_set(json_member(model, unsupported[k])))
            return error_set(err, "%s: model.%s is set, which dllm does not support", what,
                             unsupported[k]);
    b->ignore_merges = is_true(json_member(model, "ignore_merges"));
    return 0;
}

static int check_normalizer(Bpe *b, const JsonValue *n, const char *what, Error *err) {
    if (!n || n->type == JSON_NULL) return 0;
    const char *type = json_member_string(n, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const JsonValue *list = json_member(n, "normalizers");
        for (int i = 0; list && i < list->n; i++)
            if (check_normalizer(b, &list->items[i], what, err)) return -1;
        return 0;
    }
    if (type && strcmp(type, "NFC") == 0) {
        b->nfc = 1;
        return 0;
    }
    return error_set(err, "%s: normalizer %s is not supported (dllm knows NFC)", what,
                     type ? type : "(no type)");
}

static int add_split(Bpe *b, const char *pattern, uint32_t options, const char *what, Error *err) {
    if (b->n_steps == MAX_STEPS - 1)
        return error_set(err, "%s: too many pre-tokenizer steps", what);
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   options | PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                   &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return error_set(err, "%s: pre-tokenizer regex at offset %zu: %s", what, (size_t)at,
                         (char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if it cannot
    b->steps[b->n_steps++] = (PreStep){.regex = re};
    return 0;
}

static int add_pre_step(Bpe *b, const JsonValue *p, const char *what, Error *err) {
    const char *type = json_member_string(p, "type");
    if (!type) return error_set(err, "%s: a pre-tokenizer has no type", what);
    if (b->n_steps && !b->steps[b->n_steps - 1].regex)
        return error_set(err, "%s: pre-tokenizer %s after ByteLevel is not supported", what, type);
    if (strcmp(type, "Sequence") == 0) {
        const JsonValue *list = json_member(p, "pretokenizers");
        for (int i = 0; list && i < list->n; i++)
            if (add_pre_step(b, &list->items[i], what, err)) return -1;
        return 0;
    }
    if (strcmp(type, "Split") == 0) {
        const JsonValue *pattern = json_member(p, "pattern");
        const char *regex = json_member_string(pattern, "Regex");
        const char *literal = json_member_string(pattern, "String");
        const char *behavior = json_member_string(p, "behavior");
        if (!regex && !literal) return error_set(err, "%s: a Split has no pattern", what);
        if (!behavior || strcmp(behavior, "Isolated") != 0 || is_true(json_member(p, "invert")))
            return error_set(err, "%s: Split behavior %s%s is not supported (dllm knows "
                                  "Isolated)", what, behavior ? behavior : "(none)",
                             is_true(json_member(p, "invert")) ? " inverted" : "");
        return add_split(b, regex ? regex : literal, regex ? 0 : PCRE2_LITERAL, what, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        const JsonValue *use_regex = json_member(p, "use_regex");
        if (!use_regex || use_regex->type == JSON_TRUE)
            if (add_split(b, GPT2_REGEX, 0, what, err)) return -1;
        b->steps[b->n_steps++] = (PreStep){
            .add_prefix_space = is_true(json_member(p, "add_prefix_space"))};
        // the prefix space goes on before the regex split: move ByteLevel's regex after it
        if (b->steps[b->n_steps - 1].add_prefix_space && (!use_regex || is_true(use_regex))) {
            PreStep split = b->steps[b->n_steps - 2];
            b->steps[b->n_steps - 2] = b->steps[b->n_steps - 1];
            b->steps[b->n_steps - 1] = split;
        }
        return 0;
    }
    return error_set(err, "%s: pre-tokenizer %s is not supported", what, type);
}

static int check_pre_tokenizer(Bpe *b, const JsonValue *p, const char *what, Error *err) {
    if (!p || p->type == JSON_NULL)
        return error_set(err, "%s: no pre_tokenizer: not a byte-level BPE tokenizer", what);
    if (add_pre_step(b, p, what, err)) return -1;
    int byte_level = 0;
    for (int i = 0; i < b->n_steps; i++) byte_level += !b->steps[i].regex;
    if (byte_level != 1)
        return error_set(err, "%s: the pre-tokenizer has no ByteLevel step: not a byte-level BPE "
                              "tokenizer", what);
    return 0;
}

static int check_decoder(const JsonValue *d, const char *what, Error *err) {
    const char *type = json_member_string(d, "type");
    if (type && strcmp(type, "ByteLevel") == 0) return 0;
    return error_set(err, "%s: decoder %s is not supported (dllm knows ByteLevel)", what,
                     type ? type : "(none)");
}

static int load(Bpe *b, const JsonValue *root, const char *what, Error *err) {
    const JsonValue *model = json_member(root, "model");
    const JsonValue *vocab = json_member(model, "vocab"), *merges = json_member(model, "merges");
    const JsonValue *added = json_member(root, "added_tokens");
    if (check_model(b, model, what, err)) return -1;
    if (!vocab || vocab->type != JSON_OBJECT || vocab->n == 0)
        return error_set(err, "%s: model.vocab is missing or empty", what);
    if (!merges || merges->type != JSON_ARRAY)
        return error_set(err, "%s: model.merges is missing", what);
    if (check_normalizer(b, json_member(root, "normalizer"), what, err) ||
        check_pre_tokenizer(b, json_member(root, "pre_tokenizer"), what, err) ||
        check_decoder(json_member(root, "decoder"), what, err))
        return -1;

    b->vocab_size = count_ids(vocab, added && added->type == JSON_ARRAY ? added : NULL);
    b->bytes = calloc((size_t)b->vocab_size, sizeof *b->bytes);
    b->lens = calloc((size_t)b->vocab_size, sizeof *b->lens);
    b->pieces = calloc((size_t)b->vocab_size, sizeof *b->pieces);
    b->special = calloc((size_t)b->vocab_size, 1);
    b->text_cap = pow2_at_least(2 * (size_t)b->vocab_size + 16);
    b->text = calloc(b->text_cap, sizeof *b->text);
    if (!b->bytes || !b->lens || !b->pieces || !b->special || !b->text)
        return error_set(err, "%s: out of memory", what);

    int cp_to_byte[512];
    for (int i = 0; i < 512; i++) cp_to_byte[i] = -1;
    for (int byte = 0; byte < 256; byte++) {
        int cp = byte_to_codepoint(byte);
        cp_to_byte[cp] = byte;
        b->byte_char[byte][utf8proc_encode_char(cp, (utf8proc_uint8_t *)b->byte_char[byte])] = 0;
    }
    if (load_vocab(b, vocab, cp_to_byte, what, err) || load_merges(b, merges, what, err) ||
        load_added(b, added, what, err))
        return -1;
    const char *unk = json_member_string(model, "unk_token");
    b->unk_id = unk ? text_lookup(b, unk, strlen(unk)) : -1;
    return 0;
}

Bpe *bpe_load(const char *json, const char *what, Error *err) {
    JsonValue root;
    Error why;
    if (json_parse(json, &root, &why)) {
        error_set(err, "%s: not JSON: %s", what, why.msg);
        return NULL;
    }
    Bpe *b = calloc(1, sizeof *b);
    if (!b) error_set(err, "%s: out of memory", what);
    if (b && load(b, &root, what, err)) {
        bpe_free(b);
        b = NULL;
    }
    json_free(&root);
    return b;
}

void bpe_free(Bpe *b) {
    if (!b) return;
    for (int i = 0; i < b->vocab_size; i++) {  // a load can fail before these exist
        if (b->bytes) free(b->bytes[i]);
        if (b->pieces) free(b->pieces[i]);
    }
    for (int i = 0; i < b->n_added; i++) free(b->added[i].content);
    for (int i = 0; i < b->n_steps; i++) pcre2_code_free(b->steps[i].regex);
    free(b->bytes);
    free(b->lens);
    free(b->pieces);
    free(b->special);
    free(b->text);
    free(b->merges);
    free(b->added);
    free(b);
}

int bpe_vocab_size(const Bpe *b) { return b->vocab_size; }

int bpe_is_special(const Bpe *b, int id) {
    return id >= 0 && id < b->vocab_size && b->special[id];
}

const char *bpe_token_bytes(const Bpe *b, int id, size_t *len) {
    if (id < 0 || id >= b->vocab_size || !b->bytes[id]) return NULL;
    *len = b->lens[id];
    return b->bytes[id];
}

// Maps raw bytes onto the byte-level alphabet (at most 2 bytes of UTF-8 per byte).
static size_t map_bytes(const Bpe *b, const char *s, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        for (const char *c = b->byte_char[(unsigned char)s[i]]; *c; c++) out[n++] = *c;
    return n;
}

int bpe_token_id(const Bpe *b, const char *text) {
    size_t len = strlen(text);
    for (int i = 0; i < b->n_added; i++)
        if (b->added[i].len == len && memcmp(b->added[i].content, text, len) == 0)
            return b->added[i].id;
    char *mapped = malloc(2 * len + 1);
    if (!mapped) return -1;
    int id = text_lookup(b, mapped, map_bytes(b, text, len, mapped));
    free(mapped);
    return id;
}

// ---- Encoding ----

// Output ids, grown as needed.
typedef struct {
    int *ids;
    size_t n, cap;
    Error *err;
    int failed;
} Out;

static void emit(Out *o, int id) {
    if (o->failed) return;
    if (o->n + 2 > o->cap) {  // + 1: callers may append an EOS
        size_t cap = o->cap ? 2 * o->cap : 64;
        int *ids = realloc(o->ids, cap * sizeof *ids);
        if (!ids) {
            o->failed = error_set(o->err, "out of memory for %zu tokens", cap);
            return;
        }
        o->ids = ids;
        o->cap = cap;
    }
    o->ids[o->n++] = id;
}

// One candidate merge of the symbols at `left` and its right neighbour.
typedef struct {
    int rank, left, merged;
} Candidate;

static int before(const Candidate *a, const Candidate *c) {
    return a->rank != c->rank ? a->rank < c->rank : a->left < c->left;
}

static void heap_push(Candidate *h, int *n, Candidate c) {
    int i = (*n)++;
    while (i > 0 && before(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static Candidate heap_pop(Candidate *h, int *n) {
    Candidate top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && before(&h[c + 1], &h[c])) c++;
        if (!before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

typedef struct {
    int id, prev, next;  // a symbol of the word being merged; id -1: merged away
} Symbol;

static void push_candidate(const Bpe *b, const Symbol *sym, int left, Candidate *heap, int *n) {
    if (left < 0 || sym[left].next < 0) return;
    const MergeSlot *m = merge_lookup(b, sym[left].id, sym[sym[left].next].id);
    if (m) heap_push(heap, n, (Candidate){m->rank, left, m->merged});
}

// BPE over one piece's bytes: merges by rank, leftmost first among equal ranks, each
// candidate checked on the way out of the heap against the symbols as they now are.
static void encode_piece(const Bpe *b, const char *s, size_t len, Out *o) {
    if (len == 0) return;
    if (b->ignore_merges && len < 256) {
        char mapped[512];
        int id = text_lookup(b, mapped, map_bytes(b, s, len, mapped));
        if (id >= 0) {
            emit(o, id);
            return;
        }
    }
    Symbol small_sym[64];
    Candidate small_heap[64];
    Symbol *sym = len <= 64 ? small_sym : malloc(len * sizeof *sym);
    Candidate *heap = len <= 64 ? small_heap : malloc(len * sizeof *heap);
    if (!sym || !heap) {
        o->failed = error_set(o->err, "out of memory for a %zu-byte word", len);
        if (sym != small_sym) free(sym);
        if (heap != small_heap) free(heap);
        return;
    }
    int n = 0, count = 0;
    for (size_t i = 0; i < len; i++) {
        int id = b->byte_id[(unsigned char)s[i]];
        if (id < 0) id = b->unk_id;
        if (id < 0) continue;  // as the library does without an unknown token: dropped
        sym[count] = (Symbol){id, count - 1, -1};
        if (count) sym[count - 1].next = count;
        count++;
    }
    for (int i = 0; i < count; i++) push_candidate(b, sym, i, heap, &n);
    while (n > 0) {
        Candidate c = heap_pop(heap, &n);
        int right = sym[c.left].next;
        if (sym[c.left].id < 0 || right < 0) continue;
        const MergeSlot *m = merge_lookup(b, sym[c.left].id, sym[right].id);
        if (!m || m->merged != c.merged || m->rank != c.rank) continue;  // stale
        sym[c.left].id = c.merged;
        sym[c.left].next = sym[right].next;
        if (sym[right].next >= 0) sym[sym[right].next].prev = c.left;
        sym[right].id = -1;
        push_candidate(b, sym, sym[c.left].prev, heap, &n);
        push_candidate(b, sym, c.left, heap, &n);
    }
    for (int i = 0; count > 0 && i >= 0; i = sym[i].next) emit(o, sym[i].id);
    if (sym != small_sym) free(sym);
    if (heap != small_heap) free(heap);
}

typedef struct {
    const Bpe *b;
    pcre2_match_data *match;
    Out *out;
} Encoder;

// Runs pre-tokenizer step k over a piece, then the later steps over what it yields; past the
// last step, the piece is merged.
static void pre_tokenize(Encoder *e, int k, const char *s, size_t len) {
    if (len == 0 || e->out->failed) return;
    if (k == e->b->n_steps) {
        encode_piece(e->b, s, len, e->out);
        return;
    }
    const PreStep *step = &e->b->steps[k];
    if (!step->regex) {  // ByteLevel: the bytes are mapped in encode_piece
        if (!step->add_prefix_space || s[0] == ' ') {
            pre_tokenize(e, k + 1, s, len);
            return;
        }
        char *spaced = malloc(len + 1);
        if (!spaced) {
            e->out->failed = error_set(e->out->err, "out of memory");
            return;
        }
        spaced[0] = ' ';
        memcpy(spaced + 1, s, len);
        pre_tokenize(e, k + 1, spaced, len + 1);
        free(spaced);
        return;
    }
    size_t at = 0;  // matches become pieces, and so do the gaps between them
    while (at < len) {
        int rc = pcre2_match(step->regex, (PCRE2_SPTR)s, len, at, 0, e->match, NULL);
        if (rc < 0) break;
        // copied out: a later step's matches reuse the match data
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->match);
        size_t from = ov[0], to = ov[1];
        if (to == from) {  // an empty match: no piece; move on a character
            if (from >= len) break;
            at = from + 1;
            while (at < len && ((unsigned char)s[at] & 0xC0) == 0x80) at++;
            continue;
        }
        if (from > at) pre_tokenize(e, k + 1, s + at, from - at);
        pre_tokenize(e, k + 1, s + from, to - from);
        at = to;
    }
    if (at < len) pre_tokenize(e, k + 1, s + at, len - at);
}

// A run of text between added tokens: normalized, then pre-tokenized and merged.
static void encode_segment(Encoder *e, const char *s, size_t len) {
    if (len == 0) return;
    utf8proc_uint8_t *nfc = NULL;
    if (e->b->nfc) {
        utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len,
                                          &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (k >= 0) {
            s = (const char *)nfc;
            len = (size_t)k;
        }  // invalid UTF-8 (which the library cannot be given) stays as it is
    }
    pre_tokenize(e, 0, s, len);
    free(nfc);
}

// The longest added token that starts at s[0] and may be matched, or NULL.
static const AddedToken *added_at(const Bpe *b, const char *s, size_t len, int specials) {
    const AddedToken *best = NULL;
    for (int i = 0; i < b->n_added; i++) {
        const AddedToken *t = &b->added[i];
        if ((t->special && !specials) || t->len > len || (best && t->len <= best->len)) continue;
        if (t->content[0] == s[0] && memcmp(t->content, s, t->len) == 0) best = t;
    }
    return best;
}

int bpe_encode(const Bpe *b, const char *text, size_t len, int specials, int **ids, size_t *n,
               Error *err) {
    Out out = {.err = err};
    Encoder e = {b, pcre2_match_data_create(1, NULL), &out};
    if (!e.match) return error_set(err, "out of memory");
    emit(&out, 0);  // the array exists even for empty text
    out.n = 0;
    size_t start = 0;
    for (size_t i = 0; i < len && !out.failed;) {
        const AddedToken *t = b->added_first[(unsigned char)text[i]]
                                  ? added_at(b, text + i, len - i, specials) : NULL;
        if (!t) {
            i++;
            continue;
        }
        encode_segment(&e, text + start, i - start);
        emit(&out, t->id);
        i += t->len;
        start = i;
    }
    if (!out.failed) encode_segment(&e, text + start, len - start);
    pcre2_match_data_free(e.match);
    if (out.failed) {
        free(out.ids);
        return -1;
    }
    *ids = out.ids;
    *n = out.n;
    return 0;
}

int bpe_decode(const Bpe *b, const int *ids, size_t n, char **text, Error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= b->vocab_size)
            return error_set(err, "token %d is outside the vocabulary (0..%d)", ids[i],
                             b->vocab_size - 1);
        if (!b->special[ids[i]] && b->bytes[ids[i]]) total += b->lens[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return error_set(err, "out of memory decoding %zu tokens", n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->special[ids[i]] || !b->bytes[ids[i]]) continue;
        memcpy(out + len, b->bytes[ids[i]], b->lens[ids[i]]);
        len += b->lens[ids[i]];
    }
    out[len] = '\0';
    *text = out;
    return 0;
}
