// Just enough JSON for JSONL files (data, logs): read a member of a one-line object.
#ifndef DLLM_JSON_H
#define DLLM_JSON_H

#include <stddef.h>

#include "common/error.h"

// Finds the top-level member `key` of the object in text and decodes its string value (escapes
// and \u surrogate pairs included) into a malloc'd UTF-8 buffer of *len bytes.
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

#endif
