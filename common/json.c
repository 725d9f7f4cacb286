#include "common/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p;
    Error *err;
} Parser;

static void skip_space(Parser *ps) {
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static int hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v * 16 + (unsigned)d;
    }
    return 0;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Parses a string at ps->p (on its opening quote). With out != NULL, decodes into out, which
// must hold as many bytes as the raw string (decoding never grows it).
static int parse_string(Parser *ps, char *out, size_t *len) {
    if (*ps->p != '"') return error_set(ps->err, "expected a string");
    const char *p = ps->p + 1;
    size_t n = 0;
    while (*p != '"') {
        if (*p == '\0') return error_set(ps->err, "unterminated string");
        if (*p != '\\') {
            if (out) out[n] = *p;
            n++;
            p++;
            continue;
        }
        p++;
        const char *simple = strchr("\"\\/bfnrt", *p);
        if (*p && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if (out) out[n] = decoded[simple - "\"\\/bfnrt"];
            n++;
            p++;
        } else if (*p == 'u') {
            unsigned cp, lo;
            if (hex4(p + 1, &cp)) return error_set(ps->err, "bad \\u escape");
            p += 5;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u' && !hex4(p + 2, &lo) &&
                lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC80 && cp < 0xDD00) {  // a lone byte (json_write_string)
                if (out) out[n] = (char)(cp - 0xDC00);
                n++;
                continue;
            }
            char tmp[4];
            size_t k = put_utf8(out ? out + n : tmp, cp);
            n += k;
        } else {
            return error_set(ps->err, "bad escape '\\%c'", *p ? *p : '0');
        }
    }
    ps->p = p + 1;
    *len = n;
    return 0;
}

// Parses the value at ps->p into v or, with v NULL, only checks and skips it (defined below,
// with the whole-document parser).
static int parse_value(Parser *ps, JsonValue *v, int depth);

// Positions ps at the value of the top-level member `key` of the object in text.
// Returns 0, 1 when there is no such member, or -1 when the text is not a JSON object.
static int find_member(Parser *ps, const char *key) {
    skip_space(ps);
    if (*ps->p != '{') return error_set(ps->err, "not a JSON object");
    ps->p++;
    skip_space(ps);
    size_t key_len = strlen(key);
    while (*ps->p != '}') {
        const char *name = ps->p + 1;
        size_t name_len;
        if (parse_string(ps, NULL, &name_len)) return -1;
        int match = (size_t)(ps->p - 1 - name) == key_len && memcmp(name, key, key_len) == 0;
        skip_space(ps);
        if (*ps->p++ != ':') return error_set(ps->err, "expected ':' after a member name");
        skip_space(ps);
        if (match) return 0;
        if (parse_value(ps, NULL, 0)) return -1;
        skip_space(ps);
        if (*ps->p == ',') {
            ps->p++;
            skip_space(ps);
        } else if (*ps->p != '}') {
            return error_set(ps->err, "expected ',' or '}'");
        }
    }
    return 1;
}

// Decodes the string at ps->p into a malloc'd, NUL-terminated buffer.
static int decode_string(Parser *ps, char **value, size_t *len) {
    const char *start = ps->p;
    if (parse_string(ps, NULL, len)) return -1;
    *value = malloc((size_t)(ps->p - start) + 1);
    if (!*value) return error_set(ps->err, "out of memory");
    ps->p = start;
    parse_string(ps, *value, len);
    (*value)[*len] = '\0';
    return 0;
}

int json_get_string(const char *text, const char *key, char **value, size_t *len, Error *err) {
    Parser ps = {text, err};
    int rc = find_member(&ps, key);
    if (rc) return rc;
    if (*ps.p != '"') return error_set(err, "member \"%s\" is not a string", key);
    return decode_string(&ps, value, len);
}

int json_get_number(const char *text, const char *key, double *value, Error *err) {
    Parser ps = {text, err};
    int rc = find_member(&ps, key);
    if (rc) return rc;
    char *end;
    *value = strtod(ps.p, &end);
    if (end == ps.p || !strchr(",} \t\r\n", *end))
        return error_set(err, "member \"%s\" is not a number", key);
    return 0;
}

void json_free_strings(char **items, size_t *lens, int n) {
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
    free(lens);
}

int json_get_strings(const char *text, const char *key, char ***items, size_t **lens, int *n,
                     Error *err) {
    Parser ps = {text, err};
    int rc = find_member(&ps, key);
    if (rc) return rc;
    if (*ps.p != '[') return error_set(err, "member \"%s\" is not an array", key);
    ps.p++;
    *items = NULL, *lens = NULL, *n = 0;
    for (;;) {
        skip_space(&ps);
        if (*ps.p == ']' && *n == 0) return 0;
        if (*ps.p != '"') {
            json_free_strings(*items, *lens, *n);
            return error_set(err, "member \"%s\" is not an array of strings", key);
        }
        *items = realloc(*items, (size_t)(*n + 1) * sizeof **items);
        *lens = realloc(*lens, (size_t)(*n + 1) * sizeof **lens);
        if (decode_string(&ps, &(*items)[*n], &(*lens)[*n])) {
            json_free_strings(*items, *lens, *n);
            return -1;
        }
        (*n)++;
        skip_space(&ps);
        if (*ps.p == ']') return 0;
        if (*ps.p++ != ',') {
            json_free_strings(*items, *lens, *n);
            return error_set(err, "member \"%s\": expected ',' or ']'", key);
        }
    }
}

// ---- Whole documents as trees ----

static int line_of(const char *text, const char *at) {
    int line = 1;
    for (const char *p = text; p < at; p++) line += *p == '\n';
    return line;
}

// Appends an empty slot to an array or object under construction.
static JsonValue *grow(JsonValue *v, Parser *ps) {
    if ((v->n & (v->n - 1)) == 0) {  // capacity doubles at powers of two
        size_t cap = v->n ? 2 * (size_t)v->n : 1;
        JsonValue *items = realloc(v->items, cap * sizeof *items);
        if (!items) return error_set(ps->err, "out of memory"), NULL;
        v->items = items;
        if (v->type == JSON_OBJECT) {
            char **keys = realloc(v->keys, cap * sizeof *keys);
            if (!keys) return error_set(ps->err, "out of memory"), NULL;
            v->keys = keys;
        }
    }
    JsonValue *slot = &v->items[v->n];
    memset(slot, 0, sizeof *slot);
    if (v->type == JSON_OBJECT) v->keys[v->n] = NULL;
    v->n++;
    return slot;
}

// The members of the object or array whose bracket is at ps->p: into v, or skipped (v NULL).
static int parse_members(Parser *ps, JsonValue *v, int object, int depth) {
    char close = object ? '}' : ']';
    ps->p++;
    skip_space(ps);
    if (*ps->p == close) {
        ps->p++;
        return 0;
    }
    for (;;) {
        JsonValue *slot = NULL;
        if (v && !(slot = grow(v, ps))) return -1;
        if (object) {
            size_t len;
            if (*ps->p != '"') return error_set(ps->err, "expected a member name");
            if (v ? decode_string(ps, &v->keys[v->n - 1], &len) : parse_string(ps, NULL, &len))
                return -1;
            skip_space(ps);
            if (*ps->p++ != ':') return error_set(ps->err, "expected ':'");
        }
        if (parse_value(ps, slot, depth + 1)) return -1;
        skip_space(ps);
        if (*ps->p == close) {
            ps->p++;
            return 0;
        }
        if (*ps->p++ != ',') return error_set(ps->err, "expected ',' or '%c'", close);
        skip_space(ps);
    }
}

static int parse_value(Parser *ps, JsonValue *v, int depth) {
    if (depth > 64) return error_set(ps->err, "nested too deeply");
    skip_space(ps);
    static const struct { const char *word; JsonType type; } words[] = {
        {"null", JSON_NULL}, {"false", JSON_FALSE}, {"true", JSON_TRUE}};
    JsonValue skipped;
    size_t len;
    if (!v) v = &skipped;
    int keep = v != &skipped;
    switch (*ps->p) {
    case '"':
        v->type = JSON_STRING;
        return keep ? decode_string(ps, &v->string, &v->len) : parse_string(ps, NULL, &len);
    case '{': v->type = JSON_OBJECT; return parse_members(ps, keep ? v : NULL, 1, depth);
    case '[': v->type = JSON_ARRAY; return parse_members(ps, keep ? v : NULL, 0, depth);
    default:
        if (!keep) {  // JSONL lines: numbers and words as a run of their characters (nan too)
            const char *start = ps->p;
            while (*ps->p && strchr("+-.0123456789eEtruefalsn", *ps->p)) ps->p++;
            return ps->p > start ? 0 : error_set(ps->err, "unexpected character '%c'", *start);
        }
        for (int i = 0; i < 3; i++) {
            size_t k = strlen(words[i].word);
            if (strncmp(ps->p, words[i].word, k) == 0) {
                v->type = words[i].type;
                ps->p += k;
                return 0;
            }
        }
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
            char *end;
            v->type = JSON_NUMBER;
            v->number = strtod(ps->p, &end);
            ps->p = end;
            return 0;
        }
        return *ps->p ? error_set(ps->err, "unexpected character '%c'", *ps->p)
                      : error_set(ps->err, "unexpected end of text");
    }
}

int json_parse(const char *text, JsonValue *root, Error *err) {
    Error why;
    Parser ps = {text, &why};
    memset(root, 0, sizeof *root);
    int rc = parse_value(&ps, root, 0);
    if (rc == 0) {
        skip_space(&ps);
        if (*ps.p) rc = error_set(&why, "text after the end of the document");
    }
    if (rc) {
        json_free(root);
        return error_set(err, "line %d: %s", line_of(text, ps.p), why.msg);
    }
    return 0;
}

void json_free(JsonValue *v) {
    for (int i = 0; i < v->n; i++) {
        json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
    memset(v, 0, sizeof *v);
}

const JsonValue *json_member(const JsonValue *v, const char *key) {
    if (!v || v->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0) return &v->items[i];
    return NULL;
}

const char *json_member_string(const JsonValue *v, const char *key) {
    const JsonValue *m = json_member(v, key);
    return m && m->type == JSON_STRING ? m->string : NULL;
}

size_t utf8_sequence_length(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    // the second byte's range rules out overlong forms, surrogates and code points > U+10FFFF
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) ||
        (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
        return 0;
    return len;
}

void json_write_string(FILE *f, const char *s) { json_write_bytes(f, s, strlen(s)); }

void json_write_bytes(FILE *f, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t len = utf8_sequence_length(u + i, n - i);
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
        else if (len == 0) fprintf(f, "\\u%04x", 0xDC00 + c);  // surrogateescape
        else fwrite(u + i, 1, len, f);
        i += len > 1 ? len : 1;
    }
    fputc('"', f);
}

void json_write_number(FILE *f, const char *format, double x) {
    if (isfinite(x)) fprintf(f, format, x);
    else fputs("null", f);
}
