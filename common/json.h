// Just enough JSON for JSONL data files: read a string member of a one-line object.
#ifndef DLLM_JSON_H
#define DLLM_JSON_H

#include <stddef.h>

#include "common/error.h"

// Finds the top-level member `key` of the object in text and decodes its string value (escapes
// and \u surrogate pairs included) into a malloc'd UTF-8 buffer of *len bytes.
// Returns 0, 1 when the object has no such member, or -1 (with a reason) when the text is not
// a JSON object or the member is not a string.
int json_get_string(const char *text, const char *key, char **value, size_t *len, Error *err);

#endif
