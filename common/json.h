// JSON: members of a one-line object read in place (JSONL data, logs), and a whole document
// parsed into a tree (tokenizer.json, config files).
#ifndef DLLM_JSON_H
#define DLLM_JSON_H

#include <stddef.h>
#include <stdio.h>

#include "common/error.h"

// Finds the top-level member `key` of the object in text and decodes its string value (escapes
// and \u surrogate pairs included; a lone \udc80..\udcff is the byte 0x80..0xff, as
// json_write_string writes one) into a malloc'd buffer of *len bytes.
// Returns 0, 1 when the object has no such member, or -1 (with a reason) when the text is not
// a JSON object or the member is not a string.
int json_get_string(const char *text, const char *key, char **value, size_t *len, Error *err);

// The same for a number member.
int json_get_number(const char *text, const char *key, double *value, Error *err);
// The same for an array of strings: *n malloc'd strings (items[i] of lens[i] bytes, each
// NUL-terminated); free with json_free_strings.
int json_get_strings(const char *text, const char *key, char ***items, size_t **lens, int *n,
                     Error *err);
void json_free_strings(char **items, size_t *lens, int n);

// Writes s (NUL-terminated) as a JSON string literal: quotes, backslashes and control
// characters escaped, well-formed UTF-8 as it is, and every other byte b (a piece of a
// byte-level token, say) as the escaped lone surrogate U+DC00 + b, Python's surrogateescape:
// the file stays valid UTF-8 and the bytes come back (json_parse, or Python's
// s.encode("utf-8", "surrogateescape")).
void json_write_string(FILE *f, const char *s);
// The same for n bytes that may hold NULs (written \u0000).
void json_write_bytes(FILE *f, const char *s, size_t n);
// Writes x with the printf format, or null when it is NaN or infinite (JSON has neither).
void json_write_number(FILE *f, const char *format, double x);
// The length of the well-formed UTF-8 sequence at s (n bytes left; RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0 when it is not one.
size_t utf8_sequence_length(const unsigned char *s, size_t n);

// A parsed document. Objects keep their members in file order (keys[i] names items[i]).
typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY,
               JSON_OBJECT } JsonType;

typedef struct JsonValue {
    JsonType type;
    double number;            // JSON_NUMBER
    char *string;             // JSON_STRING: decoded UTF-8, NUL-terminated (may hold NULs)
    size_t len;               // its byte count
    struct JsonValue *items;  // JSON_ARRAY / JSON_OBJECT: n values
    char **keys;              // JSON_OBJECT: n member names
    int n;
} JsonValue;

// Parses a whole document (text must be NUL-terminated); nothing but whitespace may follow it.
// Errors name the line: "line 3: expected ':'".
int json_parse(const char *text, JsonValue *root, Error *err);
void json_free(JsonValue *v);
// The member `key` of an object, or NULL (also when v is not an object).
const JsonValue *json_member(const JsonValue *v, const char *key);
// The member's string, or NULL when it is missing or not a string.
const char *json_member_string(const JsonValue *v, const char *key);

#endif
