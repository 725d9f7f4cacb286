// Hugging Face tokenizers (tokenizer.json byte-level BPE, tokenizer_config.json, chat templates)
// against the reference library: tests/fixtures/hf holds tokenizers trained with `tokenizers`
// in the LLaMA-3, Qwen2 and GPT-2 layouts and the library's answers
// (scripts/make_hf_tokenizer_fixtures.py). Every id must be equal.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "tests/testutil.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat.h"
#include "tokenizer/prepare.h"
#include "tokenizer/shard.h"
#include "tokenizer/tokenizer.h"

#define HF "tests/fixtures/hf"
static const char *const FAMILIES[] = {"llama3", "qwen2", "gpt2", "split_bytelevel"};

static void load_family(Tokenizer *t, const char *family) {
    char dir[256];
    snprintf(dir, sizeof dir, HF "/%s", family);
    Error err;
    ck_assert_msg(tokenizer_load(t, dir, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(t->kind, TOKENIZER_BPE);
}

// Reads a JSONL fixture into an array of parsed rows.
static JsonValue *read_rows(const char *path, int *n) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s missing (run scripts/make_hf_tokenizer_fixtures.py)", path);
    JsonValue *rows = NULL;
    char *line = NULL;
    size_t cap = 0;
    *n = 0;
    while (getline(&line, &cap, f) > 0) {
        rows = realloc(rows, (size_t)(*n + 1) * sizeof *rows);
        Error err;
        ck_assert_msg(json_parse(line, &rows[*n], &err) == 0, "%s: %s", path, err.msg);
        (*n)++;
    }
    free(line);
    fclose(f);
    return rows;
}

static void free_rows(JsonValue *rows, int n) {
    for (int i = 0; i < n; i++) json_free(&rows[i]);
    free(rows);
}

// 1 when ids equal the fixture's array (printing the first difference otherwise).
static int same_ids(const int *ids, size_t n, const JsonValue *want, const char *what) {
    int same = (int)n == want->n;
    for (int i = 0; same && i < want->n; i++) same = ids[i] == (int)want->items[i].number;
    if (!same) {
        fprintf(stderr, "%s: %zu ids, reference %d:", what, n, want->n);
        for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  reference:");
        for (int i = 0; i < want->n && i < 40; i++) fprintf(stderr, " %d", (int)want->items[i].number);
        fprintf(stderr, "\n");
    }
    return same;
}

START_TEST(test_ids_equal_the_reference_library) {
    const char *family = FAMILIES[_i];
    Tokenizer t;
    load_family(&t, family);
    char path[256];
    snprintf(path, sizeof path, HF "/%s/cases.jsonl", family);
    int n_rows, plain_ok = 0, special_ok = 0, decoded_ok = 0;
    size_t tokens = 0;
    JsonValue *rows = read_rows(path, &n_rows);
    for (int r = 0; r < n_rows; r++) {
        const JsonValue *text = json_member(&rows[r], "text");
        int *ids;
        size_t n;
        char *back;
        Error err;
        ck_assert_msg(tokenizer_encode(&t, text->string, text->len, &ids, &n, &err) == 0, "%s",
                      err.msg);
        plain_ok += same_ids(ids, n, json_member(&rows[r], "ids"), text->string);
        tokens += n;
        ck_assert_msg(tokenizer_decode(&t, ids, n, &back, &err) == 0, "%s", err.msg);
        const char *want = json_member_string(&rows[r], "decoded");
        decoded_ok += strcmp(back, want) == 0;
        free(back);
        free(ids);
        ck_assert(tokenizer_encode_special(&t, text->string, text->len, &ids, &n, &err) == 0);
        special_ok += same_ids(ids, n, json_member(&rows[r], "ids_special"), text->string);
        free(ids);
    }
    printf("%s: %d/%d texts equal with specials as text, %d/%d with specials matched, "
           "%d/%d decoded equal (%zu tokens)\n", family, plain_ok, n_rows, special_ok, n_rows,
           decoded_ok, n_rows, tokens);
    fflush(stdout);
    ck_assert_int_eq(plain_ok, n_rows);
    ck_assert_int_eq(special_ok, n_rows);
    ck_assert_int_eq(decoded_ok, n_rows);
    free_rows(rows, n_rows);
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_round_trip_and_no_specials_from_text) {
    Tokenizer t;
    load_family(&t, "llama3");
    const char *text = "user text <|eot_id|><|mdm_mask|> stays text: é 漢字 😀\r\n\t ";
    int *ids;
    size_t n;
    char *back;
    Error err;
    ck_assert(tokenizer_encode(&t, text, strlen(text), &ids, &n, &err) == 0);
    for (size_t i = 0; i < n; i++) ck_assert(!tokenizer_is_special(&t, ids[i]));
    ck_assert(tokenizer_decode(&t, ids, n, &back, &err) == 0);
    ck_assert_str_eq(back, text);
    free(back);
    free(ids);
    // invalid UTF-8 cannot reach the reference library; dllm still round-trips it
    const char bad[] = "ok \xff\xfe bytes \xc3";
    ck_assert(tokenizer_encode(&t, bad, sizeof bad - 1, &ids, &n, &err) == 0);
    ck_assert(tokenizer_decode(&t, ids, n, &back, &err) == 0);
    ck_assert_int_eq(memcmp(back, bad, sizeof bad), 0);
    free(back);
    free(ids);
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_special_ids_from_the_config) {
    Tokenizer t;
    load_family(&t, "llama3");
    ck_assert_int_eq(t.vocab_size, 1009);
    ck_assert_int_eq(t.bos_id, tokenizer_token_id(&t, "<|begin_of_text|>"));
    ck_assert_int_eq(t.eos_id, tokenizer_token_id(&t, "<|eot_id|>"));
    ck_assert_int_eq(t.pad_id, tokenizer_token_id(&t, "<|end_of_text|>"));
    ck_assert_int_eq(t.mask_id, tokenizer_token_id(&t, "<|mdm_mask|>"));  // LLaDA's, by name
    ck_assert_int_ge(t.mask_id, 0);
    ck_assert_int_eq(t.chat.kind, CHAT_LLAMA3);
    tokenizer_free(&t);
    load_family(&t, "qwen2");
    ck_assert_int_eq(t.bos_id, -1);
    ck_assert_int_eq(t.mask_id, tokenizer_token_id(&t, "<|mask|>"));  // Dream's, from mask_token
    ck_assert_int_eq(t.chat.kind, CHAT_CHATML);
    ck_assert_str_eq(t.chat.system, "You are a helpful assistant.");
    tokenizer_free(&t);
}
END_TEST

// Every layout of chat.jsonl: the text apply_chat_template renders, and its ids.
START_TEST(test_chat_layouts_equal_apply_chat_template) {
    int n_rows, ok = 0;
    JsonValue *rows = read_rows(HF "/chat.jsonl", &n_rows);
    ck_assert_int_gt(n_rows, 0);
    for (int r = 0; r < n_rows; r++) {
        const JsonValue *row = &rows[r], *msgs = json_member(row, "messages");
        Tokenizer t;
        load_family(&t, json_member_string(row, "tokenizer"));
        char bos[64] = "";
        size_t len;
        const char *b = t.bos_id >= 0 ? bpe_token_bytes(t.bpe, t.bos_id, &len) : NULL;
        if (b) snprintf(bos, sizeof bos, "%.*s", (int)len, b);
        ChatTemplate c;
        chat_template_recognize(&c, json_member_string(row, "template"), b ? bos : NULL);
        ck_assert_msg(c.kind != CHAT_NONE, "%s: %s", json_member_string(row, "template_name"),
                      c.why);
        ChatMessage m[8];
        for (int i = 0; i < msgs->n; i++)
            m[i] = (ChatMessage){json_member_string(&msgs->items[i], "role"),
                                 json_member_string(&msgs->items[i], "content")};
        char *text;
        Error err;
        int gen = json_member(row, "add_generation_prompt")->type == JSON_TRUE;
        ck_assert_msg(chat_template_render(&c, m, msgs->n, gen, &text, &err) == 0, "%s", err.msg);
        int *ids;
        size_t n;
        ck_assert(tokenizer_encode_special(&t, text, strlen(text), &ids, &n, &err) == 0);
        int same = strcmp(text, json_member_string(row, "text")) == 0;
        if (!same) fprintf(stderr, "row %d: got %s\nwant %s\n", r, text, json_member_string(row, "text"));
        ok += same && same_ids(ids, n, json_member(row, "ids"), text);
        free(ids);
        free(text);
        tokenizer_free(&t);
    }
    printf("chat: %d/%d layouts equal apply_chat_template (text and ids)\n", ok, n_rows);
    fflush(stdout);
    ck_assert_int_eq(ok, n_rows);
    free_rows(rows, n_rows);
}
END_TEST

// chat_encode_prompt uses the template from tokenizer_config.json; SFT's response part ends
// with the template's end-of-turn token.
START_TEST(test_chat_prompt_and_sft_response) {
    Tokenizer t;
    load_family(&t, "llama3");
    int *ids, *want;
    size_t n, n_want;
    Error err;
    ck_assert(chat_encode_prompt(&t, "What is 2+2?", 12, &ids, &n, &err) == 0);
    const char *rendered = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                           "What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    ck_assert(tokenizer_encode_special(&t, rendered, strlen(rendered), &want, &n_want, &err) == 0);
    ck_assert_int_eq(n, n_want);
    ck_assert_int_eq(memcmp(ids, want, n * sizeof(int)), 0);
    ck_assert_int_eq(ids[0], t.bos_id);
    free(ids);
    free(want);
    ck_assert(chat_encode_response(&t, " 4\n", 3, &ids, &n, &err) == 0);  // trimmed, + <|eot_id|>
    ck_assert_int_eq(ids[n - 1], tokenizer_token_id(&t, "<|eot_id|>"));
    char *back;
    ck_assert(tokenizer_decode(&t, ids, n - 1, &back, &err) == 0);
    ck_assert_str_eq(back, "4");
    free(back);
    free(ids);
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_unknown_template_is_a_clear_error) {
    ChatTemplate c;
    const char *mistral = "{{ bos_token }}{% for message in messages %}{% if message['role'] == "
                          "'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
                          "{% endfor %}";
    chat_template_recognize(&c, mistral, "<s>");
    ck_assert_int_eq(c.kind, CHAT_NONE);
    ChatMessage m = {"user", "hi"};
    char *text;
    Error err;
    ck_assert_int_eq(chat_template_render(&c, &m, 1, 1, &text, &err), -1);
    ck_assert_msg(strstr(err.msg, "unknown chat template") && strstr(err.msg, "--chat 0"), "%s",
                  err.msg);
    // a tokenizer with no template at all (gpt2 fixture): chat prompts fail the same way
    Tokenizer t;
    load_family(&t, "gpt2");
    int *ids;
    size_t n;
    ck_assert_int_eq(chat_encode_prompt(&t, "hi", 2, &ids, &n, &err), -1);
    ck_assert_msg(strstr(err.msg, "no chat_template") && strstr(err.msg, "--chat 0"), "%s",
                  err.msg);
    tokenizer_free(&t);
}
END_TEST

// The fixture's tokenizer.json with one substitution, written to a temporary directory.
static const char *altered_dir(const char *family, const char *from, const char *to) {
    static char dir[256];
    snprintf(dir, sizeof dir, "/tmp/dllm_test_%d_hf_%s", (int)getpid(), family);
    char path[512], cmd[1024], *text;
    size_t n;
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp " HF "/%s/* %s/", dir, dir, family,
             dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    Error err;
    ck_assert(file_read_all(path, &text, &n, &err) == 0);
    char *at = strstr(text, from);
    ck_assert_msg(at != NULL, "%s not in the fixture", from);
    FILE *f = fopen(path, "w");
    fwrite(text, 1, (size_t)(at - text), f);
    fputs(to, f);
    fputs(at + strlen(from), f);
    fclose(f);
    free(text);
    return dir;
}

static void assert_load_fails(const char *path, const char *what1, const char *what2) {
    Tokenizer t;
    Error err;
    ck_assert_int_eq(tokenizer_load(&t, path, &err), -1);
    ck_assert_msg(strstr(err.msg, what1) && strstr(err.msg, what2), "message: %s", err.msg);
}

START_TEST(test_bad_files_are_clear_errors) {
    const char *dir = altered_dir("llama3", "\"model\": {", "\"model\": {,");
    assert_load_fails(dir, "tokenizer.json: not JSON: line", "expected");
    dir = altered_dir("llama3", "\"type\": \"BPE\"", "\"type\": \"WordPiece\"");
    assert_load_fails(dir, "tokenizer.json", "model type WordPiece is not supported");
    dir = altered_dir("llama3", "\"merges\": [\n", "\"merges\": [\n[\"zz\", \"qq\"],\n");
    assert_load_fails(dir, "tokenizer.json", "model.merges[0] refers to 'zz', which is not in the "
                                             "vocabulary");
    dir = altered_dir("qwen2", "\"type\": \"NFC\"", "\"type\": \"NFKD\"");
    assert_load_fails(dir, "tokenizer.json", "normalizer NFKD is not supported");
    dir = altered_dir("llama3", "\"behavior\": \"Isolated\"", "\"behavior\": \"Removed\"");
    assert_load_fails(dir, "tokenizer.json", "Split behavior Removed is not supported");
    // a truncated file
    char path[512], *text;
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ck_assert(file_read_all(HF "/llama3/tokenizer.json", &text, &n, &err) == 0);
    const char *cut = write_temp_file("tokenizer.json", text, n / 2);
    free(text);
    assert_load_fails(cut, "tokenizer.json: not JSON: line", "expected");
    // a config naming a token the vocabulary lacks
    dir = altered_dir("llama3", "", "");
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"eos_token\": \"<|no_such|>\"}", f);
    fclose(f);
    assert_load_fails(dir, "tokenizer_config.json", "eos_token \"<|no_such|>\" is not a token");
    assert_load_fails("/nonexistent/tokenizer.json", "/nonexistent/tokenizer.json", "No such");
}
END_TEST

// The blob (what checkpoints carry) gives back the same tokenizer.
START_TEST(test_blob_round_trip) {
    Tokenizer t, u;
    load_family(&t, "qwen2");
    Error err;
    ck_assert_msg(tokenizer_from_blob(&u, t.blob, t.blob_bytes, "blob", &err) == 0, "%s", err.msg);
    ck_assert(u.hash == t.hash);
    ck_assert_int_eq(u.kind, TOKENIZER_BPE);
    ck_assert_int_eq(u.vocab_size, t.vocab_size);
    ck_assert_int_eq(u.mask_id, t.mask_id);
    ck_assert_int_eq(u.chat.kind, CHAT_CHATML);
    int *a, *b;
    size_t na, nb;
    const char *text = "Ångström café 12345 <|im_end|>";
    ck_assert(tokenizer_encode_special(&t, text, strlen(text), &a, &na, &err) == 0);
    ck_assert(tokenizer_encode_special(&u, text, strlen(text), &b, &nb, &err) == 0);
    ck_assert_int_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, na * sizeof(int)), 0);
    free(a);
    free(b);
    tokenizer_free(&u);
    ck_assert_int_eq(tokenizer_from_blob(&u, t.blob, t.blob_bytes / 2, "cut.ckpt", &err), -1);
    ck_assert_msg(strstr(err.msg, "cut.ckpt: tokenizer bundle truncated"), "%s", err.msg);
    tokenizer_free(&t);
}
END_TEST

// prepare writes shards with the tokenizer (uint32 ids past 65535) and copies its files.
START_TEST(test_prepare_with_a_large_vocabulary) {
    const char *dir = altered_dir("llama3", "\"added_tokens\": [",
                                  "\"added_tokens\": [{\"id\": 70000, \"content\": \"<|far|>\", "
                                  "\"special\": false, \"normalized\": false},");
    Tokenizer t;
    Error err;
    ck_assert_msg(tokenizer_load(&t, dir, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(t.vocab_size, 70001);
    const char *text = "In the beginning <|far|> was the word.\n";
    const char *input = write_temp_file("far.txt", text, strlen(text));
    char out[300];
    snprintf(out, sizeof out, "%s/shards", dir);
    const char *inputs[] = {input};
    PrepareOptions o = {.inputs = inputs, .n_inputs = 1, .field = "text", .val_fraction = 0,
                        .shard_tokens = 1 << 20, .out_dir = out};
    PrepareReport r;
    ck_assert_msg(prepare_shards(&t, &o, &r, &err) == 0, "%s", err.msg);
    char path[400];
    snprintf(path, sizeof path, "%s/train_000000.bin", out);
    Shard s;
    ck_assert_msg(shard_open(&s, path, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(s.width, 4);
    int *ids;
    size_t n;
    ck_assert(tokenizer_encode(&t, text, strlen(text), &ids, &n, &err) == 0);
    ck_assert_int_eq(s.n, n + 1);  // + EOS
    int far = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(shard_token(&s, i), ids[i]);
        far += ids[i] == 70000;
    }
    ck_assert_int_eq(far, 1);
    ck_assert_int_eq(shard_token(&s, n), t.eos_id);
    shard_close(&s);
    free(ids);
    // the shard directory carries the tokenizer: loading it gives the same one
    Tokenizer u;
    ck_assert_msg(tokenizer_load(&u, out, &err) == 0, "%s", err.msg);
    ck_assert(u.hash == t.hash);
    tokenizer_free(&u);
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_json_parser) {
    JsonValue v;
    Error err;
    ck_assert(json_parse("{\"a\": [1, -2.5e1, \"x\\u00e9\\ud83d\\ude00\", true, null], \"b\": {}}",
                         &v, &err) == 0);
    const JsonValue *a = json_member(&v, "a");
    ck_assert_int_eq(a->n, 5);
    ck_assert(a->items[1].number == -25);
    ck_assert_str_eq(a->items[2].string, "x\xc3\xa9\xf0\x9f\x98\x80");
    ck_assert_int_eq(a->items[3].type, JSON_TRUE);
    ck_assert_int_eq(a->items[4].type, JSON_NULL);
    ck_assert_int_eq(json_member(&v, "b")->type, JSON_OBJECT);
    ck_assert_ptr_null(json_member(&v, "c"));
    json_free(&v);
    ck_assert_int_eq(json_parse("{\"a\": 1,\n \"b\" 2}", &v, &err), -1);
    ck_assert_str_eq(err.msg, "line 2: expected ':'");
    ck_assert_int_eq(json_parse("[1] 2", &v, &err), -1);
    ck_assert_str_eq(err.msg, "line 1: text after the end of the document");
}
END_TEST

// What json_write_string writes is valid UTF-8 JSON however broken its input: well-formed
// sequences as they are, every other byte (a lone continuation byte of a byte-level token, an
// overlong form, a UTF-16 surrogate, a code point past U+10FFFF) as \udcXX, which json_parse
// decodes back to the byte. Non-finite numbers are written as null.
START_TEST(test_json_writer_round_trips_bytes) {
    const char *raw[] = {"\x9d", "a\xe2\x96", "\xc3\xa9\xff\"\n", "\xc0\xaf", "\xed\xa0\x80",
                         "\xf4\x90\x80\x80", "\xf0\x9f\x98\x80\x7f"};
    const char *want[] = {"\"\\udc9d\"", "\"a\\udce2\\udc96\"", "\"\xc3\xa9\\udcff\\\"\\u000a\"",
                          "\"\\udcc0\\udcaf\"", "\"\\udced\\udca0\\udc80\"",
                          "\"\\udcf4\\udc90\\udc80\\udc80\"", "\"\xf0\x9f\x98\x80\\u007f\""};
    for (int i = 0; i < 7; i++) {
        char buf[256] = {0};
        FILE *f = fmemopen(buf, sizeof buf - 1, "w");
        json_write_string(f, raw[i]);
        fclose(f);
        ck_assert_str_eq(buf, want[i]);
        for (size_t k = 0, n = strlen(buf); k < n;) {  // the file is well-formed UTF-8
            size_t len = utf8_sequence_length((const unsigned char *)buf + k, n - k);
            ck_assert_msg(len > 0, "%s: byte %zu", buf, k);
            k += len;
        }
        JsonValue v;
        Error err;
        ck_assert_msg(json_parse(buf, &v, &err) == 0, "%s: %s", buf, err.msg);
        ck_assert_uint_eq(v.len, strlen(raw[i]));
        ck_assert(memcmp(v.string, raw[i], v.len) == 0);
        json_free(&v);
    }
    char buf[64] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    json_write_number(f, "%.4f", NAN), fputc(' ', f);
    json_write_number(f, "%.4f", -INFINITY), fputc(' ', f);
    json_write_number(f, "%.4f", 0.5);
    fclose(f);
    ck_assert_str_eq(buf, "null null 0.5000");
}
END_TEST

int main(void) {
    Suite *s = suite_create("hf_tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_ids_equal_the_reference_library, 0, 4);
    tcase_add_test(tc, test_round_trip_and_no_specials_from_text);
    tcase_add_test(tc, test_special_ids_from_the_config);
    tcase_add_test(tc, test_chat_layouts_equal_apply_chat_template);
    tcase_add_test(tc, test_chat_prompt_and_sft_response);
    tcase_add_test(tc, test_unknown_template_is_a_clear_error);
    tcase_add_test(tc, test_bad_files_are_clear_errors);
    tcase_add_test(tc, test_blob_round_trip);
    tcase_add_test(tc, test_prepare_with_a_large_vocabulary);
    tcase_add_test(tc, test_json_parser);
    tcase_add_test(tc, test_json_writer_round_trips_bytes);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
