#include "tokenizer/prepare.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/progress.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/shard.h"

// A paragraph longer than this is cut into several documents, so memory stays bounded.
#define MAX_DOC_BYTES (1 << 20)

typedef struct {
    const Tokenizer *t;
    const PrepareOptions *o;
    PrepareReport *r;
    ShardWriter out[2];  // the open train / validation shard, if any
    int open[2];
    int64_t total_bytes;
    int drawn;           // progress bar: last percentage drawn
} Preparer;

static void draw_progress(Preparer *p) {
    if (!p->o->progress || p->total_bytes <= 0) return;
    int pct = (int)(100 * p->r->bytes / p->total_bytes);
    if (pct == p->drawn) return;
    p->drawn = pct;
    char bar[43];
    progress_bar(bar, 40, pct / 100.0);
    fprintf(stderr, "\rprepare %s %3d%% %lld MB, %lld tokens", bar, pct,
            (long long)(p->r->bytes >> 20), (long long)(p->r->tokens[0] + p->r->tokens[1]));
    if (pct == 100) fputc('\n', stderr);
}

static int open_shard(Preparer *p, int split, Error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s_%06d.bin", p->o->out_dir, split ? "val" : "train",
             p->r->shards[split]);
    if (shard_writer_open(&p->out[split], path, p->t->vocab_size, p->t->eos_id, p->t->hash, err))
        return -1;
    p->open[split] = 1;
    p->r->shards[split]++;
    return 0;
}

static int close_shard(Preparer *p, int split, Error *err) {
    p->open[split] = 0;
    return shard_writer_close(&p->out[split], err);
}

// Encodes one document, appends EOS, and writes it to the shard of its split.
static int emit_document(Preparer *p, const char *text, size_t len, Error *err) {
    if (len == 0) return 0;
    uint64_t h = fnv1a(FNV1A_INIT, text, len);
    int split = (double)(h % 1000000) < p->o->val_fraction * 1e6;
    int *ids;
    size_t n;
    if (tokenizer_encode(p->t, text, len, &ids, &n, err)) return -1;
    ids[n++] = p->t->eos_id;  // tokenizer_encode leaves room for one more id
    int rc = 0;
    if (!p->open[split]) rc = open_shard(p, split, err);
    if (rc == 0) rc = shard_writer_append(&p->out[split], ids, n, err);
    free(ids);
    if (rc) return -1;
    p->r->docs[split]++;
    p->r->tokens[split] += (int64_t)n;
    if ((int64_t)p->out[split].n >= p->o->shard_tokens) return close_shard(p, split, err);
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

// One file, line by line: JSONL objects, or paragraphs of plain text.
static int prepare_file(Preparer *p, const char *path, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    int jsonl = ends_with(path, ".jsonl");
    char *line = NULL, *doc = NULL;
    size_t line_cap = 0, doc_len = 0, doc_cap = 0;
    long line_no = 0;
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        p->r->bytes += got;
        size_t len = (size_t)got;
        if (jsonl) {
            char *text;
            size_t text_len;
            Error why;
            int found = json_get_string(line, p->o->field, &text, &text_len, &why);
            if (found < 0)
                rc = error_set(err, "%s:%ld: %s", path, line_no, why.msg);
            else if (found == 1)
                rc = error_set(err, "%s:%ld: no \"%s\" field", path, line_no, p->o->field);
            else
                rc = emit_document(p, text, text_len, err);
            if (found == 0) free(text);
        } else if (len == 0 || line[0] == '\n' || (line[0] == '\r' && line[1] == '\n')) {
            rc = emit_document(p, doc, doc_len, err);  // a blank line ends the paragraph
            doc_len = 0;
        } else {
            if (doc_len + len > doc_cap) {
                doc_cap = 2 * (doc_len + len);
                char *grown = realloc(doc, doc_cap);
                if (!grown) {
                    rc = error_set(err, "%s: out of memory", path);
                    break;
                }
                doc = grown;
            }
            memcpy(doc + doc_len, line, len);
            doc_len += len;
            if (doc_len > MAX_DOC_BYTES) {
                rc = emit_document(p, doc, doc_len, err);
                doc_len = 0;
            }
        }
        draw_progress(p);
    }
    if (rc == 0 && ferror(f)) rc = error_set(err, "%s: read error", path);
    if (rc == 0) rc = emit_document(p, doc, doc_len, err);
    fclose(f);
    free(line);
    free(doc);
    return rc;
}

static int copy_tokenizer(const Tokenizer *t, const char *dir, Error *err) {
    if (t->kind == TOKENIZER_BPE) return hf_tokenizer_write_files(t, dir, err);
    if (t->kind != TOKENIZER_SPM) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    fwrite(t->blob, 1, t->blob_bytes, f.f);
    return atomic_commit(&f, err);
}

int prepare_shards(const Tokenizer *t, const PrepareOptions *o, PrepareReport *r, Error *err) {
    memset(r, 0, sizeof *r);
    if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST)
        return error_set(err, "%s: %s", o->out_dir, strerror(errno));
    Preparer p = {.t = t, .o = o, .r = r, .drawn = -1};
    for (int i = 0; i < o->n_inputs; i++) {
        long long size = file_size(o->inputs[i]);
        if (size < 0) return error_set(err, "%s: %s", o->inputs[i], strerror(errno));
        p.total_bytes += size;
    }
    int rc = 0;
    for (int i = 0; i < o->n_inputs && rc == 0; i++) rc = prepare_file(&p, o->inputs[i], err);
    for (int s = 0; s < 2; s++) {
        if (!p.open[s]) continue;
        if (rc) {
            shard_writer_abort(&p.out[s]);
        } else {
            rc = close_shard(&p, s, err);
        }
    }
    if (rc == 0 && r->tokens[0] == 0)
        rc = error_set(err, "%s: no training text in the inputs", o->inputs[0]);
    if (rc == 0) rc = copy_tokenizer(t, o->out_dir, err);
    return rc;
}
