#include "cli/flags.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int parse_value(Flag *fl, const char *text, Error *err) {
    char *end = NULL;
    errno = 0;
    switch (fl->type) {
    case FLAG_INT: {
        long v = strtol(text, &end, 10);
        if (*text && !*end && !errno && v >= INT32_MIN && v <= INT32_MAX) {
            *(int *)fl->value = (int)v;
            return 0;
        }
        return error_set(err, "--%s: expected an integer, got '%s'", fl->name, text);
    }
    case FLAG_INT64: {
        long long v = strtoll(text, &end, 10);
        if (*text && !*end && !errno) {
            *(int64_t *)fl->value = v;
            return 0;
        }
        return error_set(err, "--%s: expected an integer, got '%s'", fl->name, text);
    }
    case FLAG_U64: {
        unsigned long long v = strtoull(text, &end, 10);
        if (*text && *text != '-' && !*end && !errno) {
            *(uint64_t *)fl->value = v;
            return 0;
        }
        return error_set(err, "--%s: expected a non-negative integer, got '%s'", fl->name, text);
    }
    case FLAG_FLOAT: {
        float v = strtof(text, &end);
        if (*text && !*end && !errno && isfinite(v)) {
            *(float *)fl->value = v;
            return 0;
        }
        return error_set(err, "--%s: expected a number, got '%s'", fl->name, text);
    }
    case FLAG_STRING:
        *(const char **)fl->value = text;
        return 0;
    }
    return error_set(err, "--%s: unknown flag type", fl->name);
}

int flags_parse(Flag *flags, int n_flags, int argc, char **argv, Error *err) {
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) return 1;
        if (strncmp(arg, "--", 2) != 0)
            return error_set(err, "unexpected argument '%s' (flags look like --name value)", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        Flag *fl = NULL;
        for (int j = 0; j < n_flags; j++)
            if (strlen(flags[j].name) == len && strncmp(flags[j].name, name, len) == 0)
                fl = &flags[j];
        if (!fl) return error_set(err, "unknown flag '--%.*s' (see --help)", (int)len, name);
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) return error_set(err, "--%s: missing value", fl->name);
            value = argv[++i];
        }
        if (parse_value(fl, value, err)) return -1;
        fl->set = 1;
    }
    return 0;
}

static void print_value(FILE *f, const Flag *fl) {
    switch (fl->type) {
    case FLAG_INT: fprintf(f, "%d", *(const int *)fl->value); break;
    case FLAG_INT64: fprintf(f, "%" PRId64, *(const int64_t *)fl->value); break;
    case FLAG_U64: fprintf(f, "%" PRIu64, *(const uint64_t *)fl->value); break;
    case FLAG_FLOAT: fprintf(f, "%g", *(const float *)fl->value); break;
    case FLAG_STRING: {
        const char *s = *(const char *const *)fl->value;
        fprintf(f, "%s", s ? s : "(none)");
        break;
    }
    }
}

void flags_print_help(FILE *f, const char *usage, const Flag *flags, int n_flags) {
    fprintf(f, "%s\n\nflags (default in brackets):\n", usage);
    for (int i = 0; i < n_flags; i++) {
        fprintf(f, "  --%-20s %s [", flags[i].name, flags[i].help);
        print_value(f, &flags[i]);
        fprintf(f, "]\n");
    }
}

const Flag *flags_find(const Flag *flags, int n_flags, const char *name) {
    for (int i = 0; i < n_flags; i++)
        if (strcmp(flags[i].name, name) == 0) return &flags[i];
    return NULL;
}

int flags_choice(const char *flag, const char *value, const char *const *choices, int n,
                 Error *err) {
    for (int i = 0; i < n; i++)
        if (strcmp(value, choices[i]) == 0) return i;
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, i ? "|" : "", sizeof list - strlen(list) - 1);
        strncat(list, choices[i], sizeof list - strlen(list) - 1);
    }
    return error_set(err, "--%s: '%s' is not one of %s", flag, value, list);
}

int flags_split_list(char *list, const char **items, int max) {
    int n = 0;
    for (char *tok = strtok(list, ","); tok && n < max; tok = strtok(NULL, ",")) items[n++] = tok;
    return n;
}

int cli_fail(const char *msg) {
    fprintf(stderr, "dllm: %s\n", msg);
    return 1;
}

int flags_parse_command(Flag *flags, int n_flags, int argc, char **argv, const char *usage) {
    Error err;
    int rc = flags_parse(flags, n_flags, argc, argv, &err);
    if (rc == 1) flags_print_help(stdout, usage, flags, n_flags);
    if (rc < 0) cli_fail(err.msg);
    return rc;
}
