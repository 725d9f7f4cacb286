#include "sweep/plan.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

typedef enum { SEC_PROSE, SEC_BASE, SEC_RUNS, SEC_GRID, SEC_BUDGET, SEC_REPORT } Section;

typedef struct {
    char key[64];
    char values[32][256];
    int n;
} GridLine;

typedef struct {
    Plan *p;
    const char *path;
    int line;
    Error *err;
    // the table
    char columns[PLAN_MAX_VARIED + 1][64];
    int n_columns, table_rows, seen_separator;
    char cells[PLAN_MAX_RUNS][PLAN_MAX_VARIED + 1][256];
    GridLine grid[PLAN_MAX_VARIED];
    int n_grid;
} Parser;

static int fail(Parser *ps, const char *fmt, const char *detail) {
    char msg[400];
    snprintf(msg, sizeof msg, fmt, detail);
    return error_set(ps->err, "%s:%d: %s", ps->path, ps->line, msg);
}

// Trims spaces at both ends, in place.
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static Section section_named(const char *name) {
    static const struct { const char *name; Section s; } known[] = {
        {"base", SEC_BASE}, {"runs", SEC_RUNS}, {"grid", SEC_GRID},
        {"budget", SEC_BUDGET}, {"report", SEC_REPORT},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcasecmp(name, known[i].name) == 0) return known[i].s;
    return SEC_PROSE;
}

// "- key: value" (or "* key: value"); returns 0 and points key/value into line, 1 if the line
// is not a list item, -1 when it is one without a colon.
static int list_item(char *line, char **key, char **value) {
    char *s = trim(line);
    if ((*s != '-' && *s != '*') || !isspace((unsigned char)s[1])) return 1;
    s = trim(s + 2);
    char *colon = strchr(s, ':');
    if (!colon) return -1;
    *colon = '\0';
    *key = trim(s);
    *value = trim(colon + 1);
    if (**key == '-') *key += strspn(*key, "-");  // "--lr: 1e-3" reads as "lr"
    return 0;
}

static int set_flag(Parser *ps, PlanFlag *flags, int *n, const char *key, const char *value) {
    if (strcmp(key, "run") == 0 || strcmp(key, "resume") == 0)
        return fail(ps, "--%s is set by the sweep for each run", key);
    if (strlen(key) >= sizeof flags[0].name || strlen(value) >= sizeof flags[0].value)
        return fail(ps, "%s: flag name or value too long", key);
    for (int i = 0; i < *n; i++)
        if (strcmp(flags[i].name, key) == 0) return fail(ps, "--%s given twice", key);
    if (*n >= PLAN_MAX_FLAGS) return fail(ps, "%s: too many flags", key);
    snprintf(flags[*n].name, sizeof flags[0].name, "%s", key);
    snprintf(flags[*n].value, sizeof flags[0].value, "%s", value);
    (*n)++;
    return 0;
}

// "--flag value --flag2 value2" inside a fenced block of the base section.
static int base_flags(Parser *ps, char *line) {
    char *save, *tok = strtok_r(line, " \t", &save);
    while (tok) {
        if (strcmp(tok, "\\") == 0) break;  // a shell line continuation
        if (strncmp(tok, "--", 2) != 0) return fail(ps, "expected a --flag, got '%s'", tok);
        char *key = tok + 2, *value = strchr(key, '=');
        if (value) *value++ = '\0';
        else value = strtok_r(NULL, " \t", &save);
        if (!value || strcmp(value, "\\") == 0) return fail(ps, "--%s needs a value", key);
        if (set_flag(ps, ps->p->base, &ps->p->n_base, key, value)) return -1;
        tok = strtok_r(NULL, " \t", &save);
    }
    return 0;
}

// Splits "| a | b |" into trimmed cells; returns the count.
static int split_row(char *line, char cells[][256], int max) {
    char *s = trim(line) + 1;  // past the leading '|'
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '|') s[n - 1] = '\0';
    int count = 0;
    for (char *cell = s;; count++) {
        char *bar = strchr(cell, '|');
        if (bar) *bar = '\0';
        if (count < max) snprintf(cells[count], 256, "%s", trim(cell));
        if (!bar) return count + 1;
        cell = bar + 1;
    }
}

static int table_row(Parser *ps, char *line) {
    char cells[PLAN_MAX_VARIED + 2][256];
    int n = split_row(line, cells, PLAN_MAX_VARIED + 2);
    if (ps->n_columns == 0) {
        if (n > PLAN_MAX_VARIED + 1) return fail(ps, "%s", "too many columns");
        for (int i = 0; i < n; i++) {
            const char *c = cells[i] + strspn(cells[i], "-");  // "--lr" reads as "lr"
            if (!*c) return fail(ps, "%s", "an empty column name");
            snprintf(ps->columns[i], sizeof ps->columns[i], "%s", c);
        }
        ps->n_columns = n;
        return 0;
    }
    if (!ps->seen_separator) {
        if (strspn(cells[0], "-: ") != strlen(cells[0]))
            return fail(ps, "%s", "expected the |---| line under the table header");
        ps->seen_separator = 1;
        return 0;
    }
    if (n != ps->n_columns) {
        char detail[64];
        snprintf(detail, sizeof detail, "%d cells, the header has %d", n, ps->n_columns);
        return fail(ps, "%s", detail);
    }
    if (ps->table_rows >= PLAN_MAX_RUNS) return fail(ps, "%s", "too many rows");
    for (int i = 0; i < n; i++) {
        if (!cells[i][0]) return fail(ps, "empty cell in column '%s'", ps->columns[i]);
        memcpy(ps->cells[ps->table_rows][i], cells[i], sizeof cells[i]);
    }
    ps->table_rows++;
    return 0;
}

static int grid_line(Parser *ps, const char *key, char *values) {
    if (ps->n_grid >= PLAN_MAX_VARIED) return fail(ps, "%s", "too many grid lines");
    GridLine *g = &ps->grid[ps->n_grid];
    snprintf(g->key, sizeof g->key, "%s", key);
    g->n = 0;
    for (char *v = values;;) {
        char *comma = strchr(v, ',');
        if (comma) *comma = '\0';
        if (g->n >= 32) return fail(ps, "%s: more than 32 values", key);
        snprintf(g->values[g->n++], 256, "%s", trim(v));
        if (!g->values[g->n - 1][0]) return fail(ps, "%s: an empty value", key);
        if (!comma) break;
        v = comma + 1;
    }
    ps->n_grid++;
    return 0;
}

// 2000000, 2e6, 2M, 500k
static int parse_amount(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    double scale = *end == 'k' || *end == 'K' ? 1e3 : *end == 'M' ? 1e6 : *end == 'G' ? 1e9 : 1;
    if (scale != 1) end++;
    if (end == s || *trim(end) || !(v > 0) || !isfinite(v)) return -1;
    *out = v * scale;
    return 0;
}

static int budget_line(Parser *ps, const char *key, const char *value) {
    double v;
    if (parse_amount(value, &v)) return fail(ps, "budget '%s' is not a positive number", value);
    if (strcmp(key, "minutes") != 0 && v >= 9e18)  // steps and tokens are counted in int64
        return fail(ps, "budget '%s' is too large", value);
    Plan *p = ps->p;
    if (strcmp(key, "steps") == 0) p->budget_steps = (int64_t)v;
    else if (strcmp(key, "tokens") == 0) p->budget_tokens = (int64_t)v;
    else if (strcmp(key, "minutes") == 0) p->budget_minutes = v;
    else return fail(ps, "unknown budget '%s' (steps, tokens or minutes)", key);
    if (p->budget_steps && p->budget_tokens)
        return fail(ps, "%s", "give steps or tokens, not both");
    return 0;
}

static int report_line(Parser *ps, const char *key, const char *value) {
    Plan *p = ps->p;
    if (strcmp(key, "metric") == 0) {
        if (strcmp(value, "val_loss") != 0 && strcmp(value, "train_loss") != 0 &&
            strcmp(value, "exact") != 0)
            return fail(ps, "metric '%s': val_loss, train_loss or exact", value);
        snprintf(p->metric, sizeof p->metric, "%s", value);
    } else if (strcmp(key, "prompt") == 0) {
        snprintf(p->prompt, sizeof p->prompt, "%s", value);
    } else if (strcmp(key, "exact") == 0) {
        snprintf(p->exact, sizeof p->exact, "%s", value);
    } else if (strcmp(key, "reference") == 0) {
        snprintf(p->reference, sizeof p->reference, "%s", value);
    } else if (strcmp(key, "check") == 0) {
        int choices = strncmp(value, "choices ", 8) == 0;
        if (!choices && strncmp(value, "exact ", 6) != 0)
            return fail(ps, "check '%s': give 'choices FILE' or 'exact FILE'", value);
        if (p->n_checks == PLAN_MAX_CHECKS)
            return fail(ps, "%s", "more than 4 checks");
        p->check_is_choices[p->n_checks] = choices;
        snprintf(p->check_file[p->n_checks++], sizeof p->check_file[0], "%s",
                 value + (choices ? 8 : 6));
    } else {
        return fail(ps, "unknown report setting '%s' (metric, prompt, exact, reference, check)",
                    key);
    }
    return 0;
}

static int parse_line(Parser *ps, Section sec, int in_fence, char *line) {
    if (sec == SEC_BASE && in_fence) return base_flags(ps, line);
    if (in_fence) return 0;
    if (sec == SEC_RUNS && trim(line)[0] == '|') return table_row(ps, line);
    char *key, *value;
    int rc = list_item(line, &key, &value);
    if (rc == 1) return 0;  // prose
    if (sec == SEC_PROSE || sec == SEC_RUNS) return 0;  // lists in prose are prose
    if (rc < 0) return fail(ps, "%s", "expected '- name: value'");
    if (sec == SEC_BASE) return set_flag(ps, ps->p->base, &ps->p->n_base, key, value);
    if (sec == SEC_GRID) return grid_line(ps, key, value);
    if (sec == SEC_BUDGET) return budget_line(ps, key, value);
    return report_line(ps, key, value);
}

// A directory-safe piece of a run name.
static void append_name(char *name, size_t cap, const char *piece) {
    size_t n = strlen(name);
    if (n && n + 1 < cap) name[n++] = '-';
    for (const char *c = piece; *c && n + 1 < cap; c++)
        name[n++] = isalnum((unsigned char)*c) || *c == '.' || *c == '_' || *c == '-' ? *c : '_';
    name[n] = '\0';
}

static void add_varied(Plan *p, PlanRun *r, const char *key, const char *value) {
    snprintf(r->varied[r->n_varied].name, sizeof r->varied[0].name, "%s", key);
    snprintf(r->varied[r->n_varied].value, sizeof r->varied[0].value, "%s", value);
    r->n_varied++;
    if (!plan_varies(p, key)) snprintf(p->varied_names[p->n_varied_names++], 64, "%s", key);
}

// Table rows (or one empty row) crossed with the grid's cartesian product.
static int expand_runs(Parser *ps) {
    Plan *p = ps->p;
    int rows = ps->table_rows ? ps->table_rows : 1, combos = 1;
    for (int g = 0; g < ps->n_grid; g++) combos *= ps->grid[g].n;
    if ((long)rows * combos > PLAN_MAX_RUNS)
        return error_set(ps->err, "%s: %ld runs, more than %d", ps->path, (long)rows * combos,
                         PLAN_MAX_RUNS);
    int name_col = -1;
    for (int c = 0; c < ps->n_columns; c++)
        if (strcasecmp(ps->columns[c], "name") == 0) name_col = c;
    // each run holds its varied settings in PLAN_MAX_VARIED slots (columns + grid lines)
    int varied = (ps->table_rows ? ps->n_columns - (name_col >= 0) : 0) + ps->n_grid;
    if (varied > PLAN_MAX_VARIED)
        return error_set(ps->err, "%s: %d varied settings (table columns and grid lines), more "
                                  "than %d", ps->path, varied, PLAN_MAX_VARIED);
    for (int row = 0; row < rows; row++)
        for (int k = 0; k < combos; k++) {
            PlanRun *r = &p->runs[p->n_runs];
            memset(r, 0, sizeof *r);
            if (name_col >= 0) append_name(r->name, sizeof r->name, ps->cells[row][name_col]);
            for (int c = 0; ps->table_rows && c < ps->n_columns; c++) {
                if (c == name_col) continue;
                add_varied(p, r, ps->columns[c], ps->cells[row][c]);
                if (name_col < 0) append_name(r->name, sizeof r->name, ps->cells[row][c]);
            }
            for (int g = 0, rest = k; g < ps->n_grid; g++) {
                const GridLine *gl = &ps->grid[g];
                const char *v = gl->values[rest % gl->n];
                rest /= gl->n;
                add_varied(p, r, gl->key, v);
                // "mdm" names itself; a number needs its setting: "lr3e-3", "seed1"
                char piece[320];
                int numeric = strchr("0123456789.-+", v[0]) != NULL;
                snprintf(piece, sizeof piece, "%s%s", numeric ? gl->key : "", v);
                append_name(r->name, sizeof r->name, piece);
            }
            if (!r->name[0]) snprintf(r->name, sizeof r->name, "run");
            for (int i = 0; i < p->n_runs; i++)
                if (strcmp(p->runs[i].name, r->name) == 0)
                    return error_set(ps->err, "%s: two runs are named '%s' (add a name column)",
                                     ps->path, r->name);
            p->n_runs++;
        }
    return 0;
}

int plan_parse(Plan *p, const char *text, const char *path, Error *err) {
    memset(p, 0, sizeof *p);
    snprintf(p->metric, sizeof p->metric, "val_loss");
    Parser *ps = calloc(1, sizeof *ps);
    if (!ps) return error_set(err, "out of memory");
    ps->p = p, ps->path = path, ps->err = err;
    Section sec = SEC_PROSE;
    int in_fence = 0, status = 0;
    char *copy = strdup(text), *save;
    for (char *line = strtok_r(copy, "\n", &save); line && status == 0;
         line = strtok_r(NULL, "\n", &save)) {
        // strtok_r skips empty lines: count them from the gap
        ps->line = 1;
        for (const char *c = text; c < text + (line - copy); c++) ps->line += *c == '\n';
        char *t = trim(line);
        if (strncmp(t, "```", 3) == 0) {
            in_fence = !in_fence;
        } else if (!in_fence && strncmp(t, "## ", 3) == 0) {
            sec = section_named(trim(t + 3));
            if (sec == SEC_RUNS && ps->n_columns)
                status = fail(ps, "%s", "a second Runs section (one table per plan)");
        } else if (!in_fence && strncmp(t, "# ", 2) == 0 && !p->title[0]) {
            snprintf(p->title, sizeof p->title, "%s", trim(t + 2));
        } else {
            status = parse_line(ps, sec, in_fence, t);
        }
    }
    if (status == 0 && in_fence) status = error_set(err, "%s: a ``` block is not closed", path);
    if (status == 0 && ps->n_columns && !ps->table_rows)
        status = error_set(err, "%s: the runs table has no rows", path);
    if (status == 0 && p->n_base == 0)
        status = error_set(err, "%s: no base configuration (a '## Base' section of flags)", path);
    if (status == 0 && strcmp(p->metric, "exact") == 0 && !p->exact[0])
        status = error_set(err, "%s: metric exact needs an exact test file in the Report section",
                           path);
    if (status == 0) status = expand_runs(ps);
    free(copy);
    free(ps);
    return status;
}

int plan_load(Plan *p, const char *path, Error *err) {
    char *text;
    size_t n;
    if (file_read_all(path, &text, &n, err)) return -1;
    int rc = plan_parse(p, text, path, err);
    free(text);
    return rc;
}

int plan_varies(const Plan *p, const char *name) {
    for (int i = 0; i < p->n_varied_names; i++)
        if (strcmp(p->varied_names[i], name) == 0) return 1;
    return 0;
}

const char *plan_value(const Plan *p, const PlanRun *r, const char *name) {
    for (int i = 0; i < r->n_varied; i++)
        if (strcmp(r->varied[i].name, name) == 0)
            return strcmp(r->varied[i].value, "-") == 0 ? NULL : r->varied[i].value;
    for (int i = 0; i < p->n_base; i++)
        if (strcmp(p->base[i].name, name) == 0) return p->base[i].value;
    return NULL;
}
