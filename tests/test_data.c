// Data: token shards (dllm's and llm.c's layouts, bad files), dllm prepare (documents, EOS,
// deterministic split, JSONL), and the training loader (seeded, covering, resumable).
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "tests/testutil.h"
#include "tokenizer/prepare.h"
#include "tokenizer/shard.h"
#include "dataset/data.h"

static char dir[128];

static const char *in_dir(const char *name) {
    static char path[2][300];
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof path[which], "%s/%s", dir, name);
    return path[which];
}

static void write_shard(const char *path, const int *ids, size_t n, int vocab) {
    ShardWriter w;
    Error err;
    ck_assert_msg(shard_writer_open(&w, path, vocab, 2, 0xabcdef0123ULL, &err) == 0, "%s", err.msg);
    ck_assert(shard_writer_append(&w, ids, n, &err) == 0);
    ck_assert_msg(shard_writer_close(&w, &err) == 0, "%s", err.msg);
}

// An llm.c shard: 256 int32 header (magic, version, count), then the tokens.
static void write_llmc_shard(const char *path, int magic, int version, const int *ids,
                             size_t n) {
    int32_t h[256] = {magic, version, (int32_t)n};
    FILE *f = fopen(path, "wb");
    fwrite(h, sizeof h, 1, f);
    for (size_t i = 0; i < n; i++) {
        if (magic == LLMC_MAGIC_U16) {
            uint16_t v = (uint16_t)ids[i];
            fwrite(&v, 2, 1, f);
        } else {
            uint32_t v = (uint32_t)ids[i];
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
}

// 1 if the k ids of needle occur in order somewhere in the split.
static int contains(const TokenData *d, const int *needle, size_t k) {
    int *all = malloc(d->n * sizeof(int));
    data_copy(d, 0, d->n, all);
    int found = 0;
    for (size_t i = 0; i + k <= d->n && !found; i++) found = memcmp(all + i, needle, k * sizeof(int)) == 0;
    free(all);
    return found;
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/dllm_data_%d", (int)getpid());
    mkdir(dir, 0777);
}

static void teardown(void) {
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}

START_TEST(test_shard_round_trip) {
    int ids[1000];
    for (int i = 0; i < 1000; i++) ids[i] = (i * 7919) % 4096;
    int vocabs[2] = {4096, 70000};  // uint16 and uint32 tokens
    for (int v = 0; v < 2; v++) {
        if (v == 1) ids[5] = 69999;
        const char *path = in_dir(v ? "wide.bin" : "narrow.bin");
        write_shard(path, ids, 1000, vocabs[v]);
        Shard s;
        Error err;
        ck_assert_msg(shard_open(&s, path, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(s.width, v ? 4 : 2);
        ck_assert_int_eq(s.n, 1000);
        ck_assert_int_eq(s.vocab_size, vocabs[v]);
        ck_assert(s.tokenizer_hash == 0xabcdef0123ULL);
        for (int i = 0; i < 1000; i++) ck_assert_int_eq(shard_token(&s, i), ids[i]);
        ck_assert_int_eq(file_size(path), 1024 + 1000 * s.width);
        shard_close(&s);
    }
}
END_TEST

START_TEST(test_llmc_shards_read_as_is) {
    int ids[300];
    for (int i = 0; i < 300; i++) ids[i] = (i * 131) % 50257;
    write_llmc_shard(in_dir("fineweb_train_000001.bin"), LLMC_MAGIC_U16, 1, ids, 300);
    write_llmc_shard(in_dir("fineweb_val_000000.bin"), LLMC_MAGIC_U32, 7, ids, 100);
    Dataset ds;
    Error err;
    ck_assert_msg(dataset_open(&ds, dir, 0.1, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.train.n, 300);
    ck_assert_int_eq(ds.val.n, 100);  // the val shard, not a held-out tail
    ck_assert_int_eq(ds.shards[0].width, 2);  // the train shard: uint16
    ck_assert_int_eq(ds.shards[1].width, 4);  // the val shard: uint32
    int out[300];
    data_copy(&ds.train, 0, 300, out);
    ck_assert_mem_eq(out, ids, sizeof out);
    data_copy(&ds.val, 0, 100, out);
    ck_assert_mem_eq(out, ids, 100 * sizeof(int));
    ck_assert_msg(dataset_check(&ds, NULL, 50304, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(dataset_check(&ds, NULL, 4096, &err), -1);  // ids beyond a small vocab
    ck_assert_msg(strstr(err.msg, "fineweb_train_000001.bin: token 4192 at position 32 is outside "
                                  "the vocabulary of 4096"),
                  "%s", err.msg);
    dataset_close(&ds);
}
END_TEST

static void expect_shard_error(const char *name, const void *bytes, size_t n, const char *what) {
    const char *path = in_dir(name);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    Shard s;
    Error err;
    ck_assert_int_eq(shard_open(&s, path, &err), -1);
    printf("  %-10s -> %s\n", name, err.msg);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, what), "%s", err.msg);
}

START_TEST(test_bad_shards) {
    int ids[100] = {0};
    const char *good = in_dir("good.bin");
    write_shard(good, ids, 100, 4096);
    char *bytes;
    size_t n;
    Error err;
    ck_assert(file_read_all(good, &bytes, &n, &err) == 0);
    expect_shard_error("truncated", bytes, n - 10, "truncated");
    expect_shard_error("short", bytes, 100, "truncated");
    int32_t *h = (int32_t *)bytes;
    h[0] = 12345;
    expect_shard_error("magic", bytes, n, "not a token shard");
    h[0] = SHARD_MAGIC, h[1] = 9;
    expect_shard_error("version", bytes, n, "unsupported shard version 9");
    h[1] = SHARD_VERSION;
    free(bytes);
    Shard s;
    ck_assert_int_eq(shard_open(&s, in_dir("missing.bin"), &err), -1);
    ck_assert_msg(strstr(err.msg, "missing.bin: No such file"), "%s", err.msg);
    // an id the shard's own vocabulary cannot hold is refused when writing
    ShardWriter w;
    ck_assert(shard_writer_open(&w, in_dir("w.bin"), 100, 2, 0, &err) == 0);
    int bad = 100;
    ck_assert_int_eq(shard_writer_append(&w, &bad, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "outside the vocabulary of 100"), "%s", err.msg);
    shard_writer_abort(&w);
    ck_assert(access(in_dir("w.bin"), F_OK) != 0 && access(in_dir("w.bin.tmp"), F_OK) != 0);
}
END_TEST

// Runs prepare with the byte tokenizer on the given inputs into dir/out.
static PrepareReport run_prepare(const char *const *inputs, int n, const char *out, double vf) {
    Tokenizer t;
    tokenizer_init_bytes(&t);
    PrepareOptions o = {inputs, n, "text", vf, 1000000, out, 0};
    PrepareReport r;
    Error err;
    ck_assert_msg(prepare_shards(&t, &o, &r, &err) == 0, "%s", err.msg);
    return r;
}

START_TEST(test_prepare_documents_and_split) {
    // 200 paragraphs of text and 50 JSONL documents
    char text[200 * 64] = "", line[128];
    for (int i = 0; i < 200; i++) {
        snprintf(line, sizeof line, "paragraph %d, first line\nand its second line\n\n", i);
        strcat(text, line);
    }
    char jsonl[50 * 96] = "";
    for (int i = 0; i < 50; i++) {
        snprintf(line, sizeof line, "{\"id\": %d, \"meta\": {\"a\": [1, 2]}, \"text\": \"doc %d \\\"q\\\"\\u00e9\"}\n", i, i);
        strcat(jsonl, line);
    }
    char in_text[300], in_jsonl[300];
    snprintf(in_text, sizeof in_text, "%s", in_dir("a.txt"));
    snprintf(in_jsonl, sizeof in_jsonl, "%s", in_dir("b.jsonl"));
    FILE *f = fopen(in_text, "w");
    fputs(text, f);
    fclose(f);
    f = fopen(in_jsonl, "w");
    fputs(jsonl, f);
    fclose(f);
    const char *inputs[] = {in_text, in_jsonl};
    char out1[300], out2[300];
    snprintf(out1, sizeof out1, "%s", in_dir("out1"));
    snprintf(out2, sizeof out2, "%s", in_dir("out2"));
    PrepareReport r = run_prepare(inputs, 2, out1, 0.2);
    printf("  prepare: %lld train docs, %lld val docs, %lld + %lld tokens\n",
           (long long)r.docs[0], (long long)r.docs[1], (long long)r.tokens[0],
           (long long)r.tokens[1]);
    ck_assert_int_eq(r.docs[0] + r.docs[1], 250);
    ck_assert(r.docs[1] > 25 && r.docs[1] < 75);  // about 20% held out
    // every document ends with EOS; the EOS count is the document count
    Dataset ds;
    Error err;
    ck_assert_msg(dataset_open(&ds, out1, 0.0, &err) == 0, "%s", err.msg);
    int *all = malloc(ds.train.n * sizeof(int));
    data_copy(&ds.train, 0, ds.train.n, all);
    long eos = 0;
    for (size_t i = 0; i < ds.train.n; i++) eos += all[i] == 258;
    ck_assert_int_eq(eos, r.docs[0]);
    ck_assert_int_eq(all[ds.train.n - 1], 258);
    // paragraphs keep their inner newline; JSON escapes are decoded
    ck_assert(contains(&ds.train, (int[]){'e', '\n', 'a', 'n', 'd'}, 5));
    int doc[] = {'d', 'o', 'c', ' ', '1', ' ', '"', 'q', '"', 0xc3, 0xa9, 258};
    ck_assert_msg(contains(&ds.train, doc, 12) || contains(&ds.val, doc, 12),
                  "JSONL document 1 not found decoded");
    free(all);
    dataset_close(&ds);
    // the same inputs give byte-identical shards
    run_prepare(inputs, 2, out2, 0.2);
    const char *names[] = {"train_000000.bin", "val_000000.bin"};
    for (int i = 0; i < 2; i++) {
        char a[400], b[400], *x, *y;
        size_t nx, ny;
        snprintf(a, sizeof a, "%s/%s", out1, names[i]);
        snprintf(b, sizeof b, "%s/%s", out2, names[i]);
        ck_assert(file_read_all(a, &x, &nx, &err) == 0 && file_read_all(b, &y, &ny, &err) == 0);
        ck_assert(nx == ny && memcmp(x, y, nx) == 0);
        free(x);
        free(y);
    }
}
END_TEST

START_TEST(test_prepare_bad_jsonl_names_the_line) {
    const char *path = write_temp_file("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n", 27);
    char in[300];
    snprintf(in, sizeof in, "%s", path);
    Tokenizer t;
    tokenizer_init_bytes(&t);
    const char *inputs[] = {in};
    PrepareOptions o = {inputs, 1, "text", 0.0, 1000, in_dir("bad_out"), 0};
    PrepareReport r;
    Error err;
    ck_assert_int_eq(prepare_shards(&t, &o, &r, &err), -1);
    ck_assert_msg(strstr(err.msg, "bad.jsonl:2:") && strstr(err.msg, "not a string"), "%s",
                  err.msg);
    ck_assert(access(in_dir("bad_out/train_000000.bin"), F_OK) != 0);  // no partial shard
    remove(in);
}
END_TEST

START_TEST(test_loader_windows) {
    // two shards read as one sequence; windows cross the boundary
    int ids[500];
    for (int i = 0; i < 500; i++) ids[i] = i % 250;
    char sub[300];
    snprintf(sub, sizeof sub, "%s", in_dir("two"));
    mkdir(sub, 0777);
    char path[400];
    snprintf(path, sizeof path, "%s/train_000000.bin", sub);
    write_shard(path, ids, 300, 256);
    snprintf(path, sizeof path, "%s/train_000001.bin", sub);
    write_shard(path, ids + 300, 200, 256);
    Dataset ds;
    Error err;
    ck_assert_msg(dataset_open(&ds, sub, 0.1, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.train.n, 450);  // no val shards: the last 10% held out
    ck_assert_int_eq(ds.val.n, 50);
    int w[100];
    data_copy(&ds.train, 250, 100, w);
    ck_assert_mem_eq(w, ids + 250, sizeof w);
    data_copy(&ds.val, 0, 50, w);
    ck_assert_mem_eq(w, ids + 450, 50 * sizeof(int));

    // random windows: the same seed gives the same windows
    int a[4 * 32], b[4 * 32];
    Rng r1, r2;
    rng_seed(&r1, 7), rng_seed(&r2, 7);
    data_random_windows(&ds.train, &r1, 4, 32, a);
    data_random_windows(&ds.train, &r2, 4, 32, b);
    ck_assert_mem_eq(a, b, sizeof a);

    // sequential windows cover the data in order, then wrap
    uint64_t pos = 0;
    int seq[14 * 32];
    data_sequential_windows(&ds.train, &pos, 14, 32, seq);  // 448 of 450 tokens
    ck_assert_mem_eq(seq, ids, sizeof seq);
    ck_assert_int_eq(pos, 448);
    data_sequential_windows(&ds.train, &pos, 1, 32, seq);  // would pass the end: wraps
    ck_assert_mem_eq(seq, ids, 32 * sizeof(int));
    ck_assert_int_eq(pos, 32);

    // resuming at a stored position continues exactly where the run was
    uint64_t straight = 0, resumed;
    int x[3 * 32], y[3 * 32];
    data_sequential_windows(&ds.train, &straight, 5, 32, seq);
    resumed = straight;  // what a checkpoint stores
    data_sequential_windows(&ds.train, &straight, 3, 32, x);
    data_sequential_windows(&ds.train, &resumed, 3, 32, y);
    ck_assert_mem_eq(x, y, sizeof x);
    dataset_close(&ds);
}
END_TEST

START_TEST(test_dataset_errors) {
    Dataset ds;
    Error err;
    ck_assert_int_eq(dataset_open(&ds, in_dir("nothing"), 0.1, &err), -1);
    ck_assert_msg(strstr(err.msg, "nothing: No such file"), "%s", err.msg);
    char empty[300];
    snprintf(empty, sizeof empty, "%s", in_dir("empty"));
    mkdir(empty, 0777);
    ck_assert_int_eq(dataset_open(&ds, empty, 0.1, &err), -1);
    ck_assert_msg(strstr(err.msg, "no training shards"), "%s", err.msg);
    // a shard made with another tokenizer
    int ids[64] = {0};
    char path[400];
    snprintf(path, sizeof path, "%s/train_000000.bin", empty);
    write_shard(path, ids, 64, 262);
    ck_assert(dataset_open(&ds, empty, 0.1, &err) == 0);
    Tokenizer t;
    tokenizer_init_bytes(&t);
    ck_assert_int_eq(dataset_check(&ds, &t, 262, &err), -1);
    ck_assert_msg(strstr(err.msg, "different tokenizer"), "%s", err.msg);
    dataset_close(&ds);
}
END_TEST

int main(void) {
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("shards, prepare, loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_shard_round_trip);
    tcase_add_test(tc, test_llmc_shards_read_as_is);
    tcase_add_test(tc, test_bad_shards);
    tcase_add_test(tc, test_prepare_documents_and_split);
    tcase_add_test(tc, test_prepare_bad_jsonl_names_the_line);
    tcase_add_test(tc, test_loader_windows);
    tcase_add_test(tc, test_dataset_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
