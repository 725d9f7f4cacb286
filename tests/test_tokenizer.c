// Tokenizers: the SentencePiece shim (training, exact round trips, agreement with the
// spm_encode tool, reserved specials, errors as messages) and the byte tokenizer.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "tests/testutil.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_train.h"

#define FIXTURE "tests/fixtures/genesis.txt"  // KJV Genesis 1-6, 19 KB

static char model_path[256];

// Trains (once per process) an 800-piece BPE on the fixture.
static void train_fixture_model(void) {
    if (model_path[0] && access(model_path, F_OK) == 0) return;
    snprintf(model_path, sizeof model_path, "/tmp/dllm_test_%d_tok.model", (int)getpid());
    const char *inputs[] = {FIXTURE};
    TokenizerTrainOptions o = {inputs, 1, 800, "bpe", 4192, 100000, 1};
    TokenizerTrainReport report;
    Error err;
    ck_assert_msg(tokenizer_train(&o, model_path, &report, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(report.split_lines, 0);
    ck_assert_int_gt(report.lines, 100);
}

static void load_fixture_model(Tokenizer *t) {
    train_fixture_model();
    Error err;
    ck_assert_msg(tokenizer_load(t, model_path, &err) == 0, "%s", err.msg);
}

static void assert_round_trip(const Tokenizer *t, const char *text) {
    int *ids;
    size_t n;
    char *back;
    Error err;
    ck_assert_msg(tokenizer_encode(t, text, strlen(text), &ids, &n, &err) == 0, "%s", err.msg);
    ck_assert_msg(tokenizer_decode(t, ids, n, &back, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(back, text);
    free(ids);
    free(back);
}

START_TEST(test_spm_round_trip_is_exact) {
    Tokenizer t;
    load_fixture_model(&t);
    ck_assert_int_eq(t.vocab_size, 800);
    char *text;
    size_t n;
    Error err;
    ck_assert(file_read_all(FIXTURE, &text, &n, &err) == 0);
    assert_round_trip(&t, text);  // the whole file, newlines and blank lines included
    // spaces at the ends and doubled, tabs, digits, and characters the model never saw
    assert_round_trip(&t, "  two  spaces\tand a tab, 12345 , trailing  ");
    assert_round_trip(&t, "h\xc3\xa9llo \xe2\x80\x94 \xe2\x9c\x93 \xf0\x9f\x99\x82 \xe6\x97\xa5\xe6\x9c\xac");
    assert_round_trip(&t, "");
    int *ids;
    size_t n_ids;
    ck_assert(tokenizer_encode(&t, text, n, &ids, &n_ids, &err) == 0);
    printf("  fixture: %zu bytes -> %zu tokens (%.2f bytes/token)\n", n, n_ids,
           (double)n / n_ids);
    ck_assert_int_lt(n_ids, n / 3);  // BPE merges: far fewer tokens than bytes
    free(ids);
    free(text);
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_spm_matches_spm_encode_tool) {
    Tokenizer t;
    load_fixture_model(&t);
    const char *lines[] = {"And God said, Let there be light: and there was light.",
                           "Noah walked with God, 950 years.",
                           "unseen words: quixotic zephyr, caf\xc3\xa9"};
    char text[512] = "";
    for (int i = 0; i < 3; i++) strcat(strcat(text, lines[i]), "\n");
    const char *in = write_temp_file("spm_in.txt", text, strlen(text));
    char out[300], cmd[1024];
    snprintf(out, sizeof out, "%s.ids", in);
    snprintf(cmd, sizeof cmd, "spm_encode --model=%s --output_format=id < %s > %s", model_path,
             in, out);
    ck_assert_msg(system(cmd) == 0, "spm_encode failed (is the sentencepiece package installed?)");
    FILE *f = fopen(out, "r");
    ck_assert(f != NULL);
    for (int i = 0; i < 3; i++) {
        int *ids;
        size_t n;
        Error err;
        ck_assert(tokenizer_encode(&t, lines[i], strlen(lines[i]), &ids, &n, &err) == 0);
        for (size_t k = 0; k < n; k++) {
            int tool;
            ck_assert_int_eq(fscanf(f, "%d", &tool), 1);
            ck_assert_msg(tool == ids[k], "line %d token %zu: spm_encode %d, dllm %d", i, k, tool,
                          ids[k]);
        }
        free(ids);
    }
    int extra;
    ck_assert_int_eq(fscanf(f, "%d", &extra), EOF);  // and no more ids than dllm's
    fclose(f);
    remove(in);
    remove(out);
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_spm_special_tokens) {
    Tokenizer t;
    load_fixture_model(&t);
    int ids[] = {t.mask_id, t.bos_id, t.eos_id, t.pad_id, t.prompt_id, t.response_id};
    for (int i = 0; i < 6; i++) {
        ck_assert(ids[i] >= 0 && ids[i] < t.vocab_size);
        ck_assert(tokenizer_is_special(&t, ids[i]));
        for (int j = 0; j < i; j++) ck_assert_int_ne(ids[i], ids[j]);
    }
    // the SFT markers written in text are one token each
    int *enc;
    size_t n;
    Error err;
    // (SentencePiece may put its word-start piece "▁" before it: the dummy prefix)
    ck_assert(tokenizer_encode(&t, "<|prompt|>", 10, &enc, &n, &err) == 0);
    ck_assert_int_eq(enc[n - 1], t.prompt_id);
    ck_assert(n == 1 || (n == 2 && strcmp(spm_id_to_piece(t.spm, enc[0]), "\xe2\x96\x81") == 0));
    free(enc);
    ck_assert(tokenizer_encode(&t, "x<|response|>y", 14, &enc, &n, &err) == 0);
    int found = 0;
    for (size_t i = 0; i < n; i++) found += enc[i] == t.response_id;
    ck_assert_int_eq(found, 1);
    free(enc);
    // text never produces [MASK]: the diffusion model alone puts it in
    ck_assert(tokenizer_encode(&t, "[MASK] [MASK]", 13, &enc, &n, &err) == 0);
    for (size_t i = 0; i < n; i++) ck_assert_int_ne(enc[i], t.mask_id);
    free(enc);
    char piece[TOKENIZER_PIECE_MAX];
    ck_assert_str_eq(tokenizer_piece(&t, t.mask_id, piece), "[MASK]");
    ck_assert_str_eq(tokenizer_piece(&t, t.eos_id, piece), "[EOS]");
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_spm_errors_are_messages) {
    Tokenizer t;
    Error err;
    ck_assert_int_eq(tokenizer_load(&t, "/nonexistent/tok.model", &err), -1);
    ck_assert_msg(strstr(err.msg, "/nonexistent/tok.model: No such file") != NULL, "%s", err.msg);

    const char *junk = write_temp_file("junk.model", "not a model", 11);
    ck_assert_int_eq(tokenizer_load(&t, junk, &err), -1);
    ck_assert_msg(strstr(err.msg, junk) && strstr(err.msg, "sentencepiece"), "%s", err.msg);
    remove(junk);

    const char *inputs[] = {FIXTURE};
    TokenizerTrainOptions o = {inputs, 1, 50000, "bpe", 4192, 100000, 1};
    TokenizerTrainReport report;
    const char *out = "/tmp/dllm_test_too_big.model";
    ck_assert_int_eq(tokenizer_train(&o, out, &report, &err), -1);
    ck_assert_msg(strstr(err.msg, "Vocabulary size too high") != NULL, "%s", err.msg);
    ck_assert(access(out, F_OK) != 0);  // nothing written
    o.vocab_size = 800;
    o.type = "wordpiece";
    ck_assert_int_eq(tokenizer_train(&o, out, &report, &err), -1);
    ck_assert_msg(strstr(err.msg, "bpe or unigram") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(test_long_lines_are_split_not_dropped) {
    // SentencePiece would skip a line over max_sentence_length; tokenizer_train splits it.
    // the fixture as one 19 KB line
    char *text;
    size_t n;
    Error err;
    ck_assert(file_read_all(FIXTURE, &text, &n, &err) == 0);
    for (size_t i = 0; i < n; i++)
        if (text[i] == '\n') text[i] = ' ';
    text[n - 1] = '\n';
    const char *in = write_temp_file("long.txt", text, n);
    char in_copy[512];
    snprintf(in_copy, sizeof in_copy, "%s", in);
    const char *inputs[] = {in_copy};
    TokenizerTrainOptions o = {inputs, 1, 400, "unigram", 4192, 100000, 1};
    TokenizerTrainReport report;
    const char *out = "/tmp/dllm_test_long.model";
    ck_assert_msg(tokenizer_train(&o, out, &report, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(report.lines, 1);
    ck_assert_int_eq(report.split_lines, 1);
    Tokenizer t;
    ck_assert(tokenizer_load(&t, out, &err) == 0);
    text[n - 1] = '\0';
    assert_round_trip(&t, text);
    tokenizer_free(&t);
    free(text);
    remove(in_copy);
    remove(out);
}
END_TEST

START_TEST(test_byte_tokenizer) {
    Tokenizer t;
    tokenizer_init_bytes(&t);
    ck_assert_int_eq(t.vocab_size, 262);
    assert_round_trip(&t, "bytes \xc3\xa9\n\t!");
    int ids[] = {'h', 'i', t.mask_id, t.eos_id, t.prompt_id};
    char *text;
    Error err;
    ck_assert(tokenizer_decode(&t, ids, 5, &text, &err) == 0);
    ck_assert_str_eq(text, "hi<|prompt|>");  // [MASK] and EOS decode to nothing
    free(text);
    char piece[TOKENIZER_PIECE_MAX];
    ck_assert_str_eq(tokenizer_piece(&t, 'a', piece), "a");
    ck_assert_str_eq(tokenizer_piece(&t, t.mask_id, piece), "[MASK]");
}
END_TEST

int main(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("sentencepiece and bytes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_spm_round_trip_is_exact);
    tcase_add_test(tc, test_spm_matches_spm_encode_tool);
    tcase_add_test(tc, test_spm_special_tokens);
    tcase_add_test(tc, test_spm_errors_are_messages);
    tcase_add_test(tc, test_long_lines_are_split_not_dropped);
    tcase_add_test(tc, test_byte_tokenizer);
    suite_add_tcase(s, tc);
    int rc = run_suite(s);
    if (model_path[0]) remove(model_path);
    return rc;
}
