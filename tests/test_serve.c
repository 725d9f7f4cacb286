// dllm serve over loopback: request parsing (fields, types, limits), then ./dllm serve as a
// child process spoken to over sockets: health and models, completions and chat (the greedy
// text equal to `dllm sample`'s), streams (OpenAI chunks; a diffusion model's dllm.step
// events), OpenAI-style errors, the API key, the page, a client that hangs up, a silent client,
// and concurrent streaming clients against a small queue (every one served or refused with 503).
#define _GNU_SOURCE  // strcasestr
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json.h"
#include "common/progress.h"
#include "eval/eval.h"
#include "kernels/backend.h"
#include "serve/request.h"
#include "store/model_source.h"
#include "tokenizer/chat.h"
#include "serve/response.h"
#include "tests/http_client.h"
#include "tests/testutil.h"

static char dir[128];

// ---- request parsing ----

static const ServeLimits ar_limits = {64, 0, 0, "m", 4};
static const ServeLimits mdm_limits = {64, 1, 0, "m", 4};

static void parse_fails(const char *body, int chat, const ServeLimits *l, int status,
                        const char *param, const char *words) {
    ServeRequest r;
    RequestError e;
    ck_assert_msg(request_parse(body, chat, l, &r, &e) == -1, "accepted: %s", body);
    ck_assert_msg(e.status == status, "%s: status %d", body, e.status);
    ck_assert_msg(strcmp(e.param, param) == 0, "%s: param '%s'", body, e.param);
    ck_assert_msg(strstr(e.message, words), "%s: '%s'", body, e.message);
}

START_TEST(test_request_fields) {
    ServeRequest r;
    RequestError e;
    ck_assert_int_eq(request_parse("{\"model\": \"m\", \"prompt\": \"hi\", \"max_tokens\": 12, "
                                   "\"temperature\": 0.5, \"n\": 2, \"stop\": [\"a\", \"bc\"], "
                                   "\"seed\": 7, \"stream\": true, \"steps\": 6, "
                                   "\"remasking\": \"random\", \"user\": \"ignored\"}",
                                   0, &mdm_limits, &r, &e), 0);
    ck_assert(r.n_prompts == 1 && request_rows(&r) == 2);
    ck_assert_str_eq(r.prompts[0].text, "hi");
    ck_assert(r.max_tokens == 12 && r.n == 2 && r.stream && r.n_stops == 2);
    ck_assert(r.sc.temperature == 0.5f && r.sc.seed == 7 && r.sc.steps == 6);
    ck_assert(r.sc.remasking == REMASK_RANDOM && r.sc.block_length == 12);
    ck_assert_uint_eq(request_cut_at_stop(&r, "xxbcya", 6), 2);
    request_free(&r);
    // prompts as a list of strings, token ids, a list of id lists
    ck_assert_int_eq(request_parse("{\"prompt\": [\"a\", \"b\"], \"n\": 2}", 0, &ar_limits, &r,
                                   &e), 0);
    ck_assert(r.n_prompts == 2 && request_rows(&r) == 4);
    ck_assert_str_eq(r.prompts[1].text, "b");
    request_free(&r);
    ck_assert_int_eq(request_parse("{\"prompt\": [5, 6, 7]}", 0, &ar_limits, &r, &e), 0);
    ck_assert(r.n_prompts == 1 && !r.prompts[0].text && r.prompts[0].n_ids == 3 &&
              r.prompts[0].ids[2] == 7);
    request_free(&r);
    ck_assert_int_eq(request_parse("{\"prompt\": [[5, 6], [7]]}", 0, &ar_limits, &r, &e), 0);
    ck_assert(r.n_prompts == 2 && r.prompts[1].n_ids == 1 && r.prompts[1].ids[0] == 7);
    request_free(&r);
    // chat: the conversation's messages (developer is OpenAI's newer name for system);
    // max_completion_tokens; stream_options
    ck_assert_int_eq(request_parse("{\"messages\": [{\"role\": \"developer\", \"content\": "
                                   "\"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, "
                                   "{\"role\": \"assistant\", \"content\": \"Hello.\"}, "
                                   "{\"role\": \"user\", \"content\": \"Bye\"}], "
                                   "\"max_completion_tokens\": 8, \"stream\": true, "
                                   "\"stream_options\": {\"include_usage\": true}}", 1, &ar_limits,
                                   &r, &e), 0);
    ck_assert(r.n_messages == 4 && r.max_tokens == 8 && r.include_usage && !r.seeded);
    ck_assert_str_eq(r.messages[0].role, "system");
    ck_assert_str_eq(r.messages[2].content, "Hello.");
    request_free(&r);
    // content as OpenAI's list of text parts
    ck_assert_int_eq(request_parse("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
                                   "\"text\", \"text\": \"Hello \"}, {\"type\": \"text\", \"text\": "
                                   "\"there\"}]}], \"max_tokens\": 40}", 1, &mdm_limits, &r, &e), 0);
    ck_assert_str_eq(r.messages[0].content, "Hello there");
    ck_assert_int_eq(r.sc.block_length, 20);  // 40 tokens: a block of 20 (a divisor <= 32)
    ck_assert_int_eq(request_check_length(&r, 30, &mdm_limits, &e), -1);  // 30 + 40 > 64
    ck_assert_str_eq(e.param, "messages");
    request_free(&r);
}
END_TEST

// A conversation as the model's chat layout: dllm's markers (prompt parts, each answer ended by
// EOS) and Qwen2's ChatML as transformers renders it.
START_TEST(test_conversation_layouts) {
    ChatMessage m[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"},
                       {"user", "Bye"}};
    Tokenizer t;
    Error err;
    tokenizer_init_bytes(&t);
    int *ids, *part;
    size_t n, k;
    ck_assert_msg(chat_encode_conversation(&t, m, 4, &ids, &n, &err) == 0, "%s", err.msg);
    const char *texts[] = {"Be brief.\n\nHi", "Hello!", "Bye"};
    int expect[64], e = 0;
    expect[e++] = t.bos_id;
    for (int i = 0; i < 3; i++) {
        expect[e++] = i == 1 ? t.response_id : t.prompt_id;
        ck_assert(tokenizer_encode(&t, texts[i], strlen(texts[i]), &part, &k, &err) == 0);
        memcpy(expect + e, part, k * sizeof(int));
        e += (int)k;
        free(part);
        if (i == 1) expect[e++] = t.eos_id;
    }
    expect[e++] = t.response_id;
    ck_assert_uint_eq(n, (size_t)e);
    ck_assert(memcmp(ids, expect, n * sizeof(int)) == 0);
    free(ids);
    tokenizer_free(&t);
    ck_assert_msg(tokenizer_load(&t, "tests/fixtures/hf_models/qwen2", &err) == 0, "%s", err.msg);
    const char *chatml = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
                         "<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user"
                         "\nBye<|im_end|>\n<|im_start|>assistant\n";
    ck_assert(tokenizer_encode_special(&t, chatml, strlen(chatml), &part, &k, &err) == 0);
    ck_assert_msg(chat_encode_conversation(&t, m, 4, &ids, &n, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(n, k);
    ck_assert(memcmp(ids, part, n * sizeof(int)) == 0);
    printf("  conversation of 4 messages: dllm layout %d ids, ChatML %zu ids as rendered by "
           "hand\n", e, n);
    free(ids), free(part);
    tokenizer_free(&t);
}
END_TEST

START_TEST(test_request_refusals) {
    parse_fails("[1]", 0, &ar_limits, 400, "", "JSON object");
    parse_fails("{\"prompt\": ", 0, &ar_limits, 400, "", "not valid JSON");
    parse_fails("{}", 0, &ar_limits, 400, "prompt", "required");
    parse_fails("{\"prompt\": 3}", 0, &ar_limits, 400, "prompt", "string");
    parse_fails("{\"prompt\": [1.5]}", 0, &ar_limits, 400, "prompt", "list of token ids");
    parse_fails("{\"prompt\": [\"a\", \"b\", \"c\"], \"n\": 2}", 0, &ar_limits, 400, "n",
                "at most 4 per request");
    parse_fails("{\"prompt\": \"a\\u0000b\"}", 0, &ar_limits, 400, "prompt", "NUL");
    parse_fails("{\"prompt\": \"a\", \"model\": \"gpt\"}", 0, &ar_limits, 404, "model", "gpt");
    parse_fails("{\"prompt\": \"a\", \"max_tokens\": 65}", 0, &ar_limits, 400, "max_tokens",
                "[0, 64]");
    parse_fails("{\"prompt\": \"a\", \"max_tokens\": 2.5}", 0, &ar_limits, 400, "max_tokens",
                "integer");
    parse_fails("{\"prompt\": \"a\", \"n\": 5}", 0, &ar_limits, 400, "n", "[1, 4]");
    parse_fails("{\"prompt\": \"a\", \"temperature\": \"hot\"}", 0, &ar_limits, 400,
                "temperature", "number");
    parse_fails("{\"prompt\": \"a\", \"stream\": 1}", 0, &ar_limits, 400, "stream", "true or");
    parse_fails("{\"prompt\": \"a\", \"stop\": [\"\"]}", 0, &ar_limits, 400, "stop", "empty");
    parse_fails("{\"prompt\": \"a\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 0, &ar_limits,
                400, "stop", "at most 4");
    parse_fails("{\"prompt\": \"a\", \"steps\": 4}", 0, &ar_limits, 400, "steps",
                "diffusion models");
    parse_fails("{\"prompt\": \"a\", \"logprobs\": 6}", 0, &ar_limits, 400, "logprobs",
                "[0, 5]");
    parse_fails("{\"prompt\": \"a\", \"echo\": true, \"stream\": true}", 0, &ar_limits, 400,
                "echo", "not implemented");
    parse_fails("{\"prompt\": \"a\", \"max_tokens\": 0}", 0, &ar_limits, 400, "max_tokens",
                "needs 'echo'");
    parse_fails("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], "
                "\"top_logprobs\": 2}", 1, &ar_limits, 400, "top_logprobs", "needs 'logprobs'");
    parse_fails("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"echo\": "
                "true}", 1, &ar_limits, 400, "echo", "for /v1/completions");
    parse_fails("{\"prompt\": \"a\", \"top_p\": 0.9}", 0, &mdm_limits, 400, "top_p",
                "autoregressive");
    parse_fails("{\"prompt\": \"a\", \"max_tokens\": 10, \"block_length\": 4}", 0, &mdm_limits,
                400, "block_length", "multiple");
    parse_fails("{\"prompt\": \"a\", \"remasking\": \"sometimes\"}", 0, &mdm_limits, 400,
                "remasking", "low_confidence, random");
    parse_fails("{\"messages\": []}", 1, &ar_limits, 400, "messages", "non-empty");
    parse_fails("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}",
                1, &ar_limits, 400, "content", "only text");
    parse_fails("{\"messages\": [{\"role\": \"user\"}]}", 1, &ar_limits, 400, "messages",
                "'content'");
    parse_fails("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": "
                "\"assistant\", \"content\": \"b\"}]}", 1, &ar_limits, 400, "messages",
                "last message must be the user's");
    parse_fails("{\"messages\": [{\"role\": \"tool\", \"content\": \"a\"}]}", 1, &ar_limits,
                400, "messages", "tools are not");
    parse_fails("{\"prompt\": \"a\", \"max_tokens\": 4, \"max_completion_tokens\": 5}", 0,
                &ar_limits, 400, "max_completion_tokens", "disagree");
    parse_fails("{\"prompt\": \"a\", \"stream_options\": {\"include_usage\": 1}}", 0,
                &ar_limits, 400, "include_usage", "true or false");
}
END_TEST

START_TEST(test_json_strings_are_escaped) {
    Text t = {0};
    const char *raw = "a\"b\\c\nd\x01\xff\xe2\x96\x91";
    text_json_string(&t, raw, strlen(raw));
    ck_assert_str_eq(t.s, "\"a\\\"b\\\\c\\nd\\u0001\\ufffd\xe2\x96\x91\"");
    JsonValue v;
    Error err;
    ck_assert_int_eq(json_parse(t.s, &v, &err), 0);  // what we write parses back
    json_free(&v);
    text_free(&t);
}
END_TEST

// ---- the server over loopback ----

typedef struct {
    pid_t pid;
    int port;
} Server;

// Starts ./dllm serve with `flags` (port 0) and reads the bound port from its first line.
static Server serve(const char *flags) {
    int fds[2];
    ck_assert(pipe(fds) == 0);
    Server s = {fork(), 0};
    if (s.pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        char cmd[1024], log[300];
        snprintf(log, sizeof log, "%s/access.log", dir);
        snprintf(cmd, sizeof cmd, "exec ./dllm serve --port 0 --log %s %s 2>>%s/serve.err", log,
                 flags, dir);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[512] = "";
    ck_assert_msg(fgets(line, sizeof line, f) != NULL, "dllm serve printed nothing");
    fclose(f);
    const char *at = strstr(line, "127.0.0.1:");
    ck_assert_msg(at, "%s", line);
    s.port = atoi(at + 10);
    return s;
}

// Stops it as a user would (SIGINT) and expects a clean exit.
static void stop(Server s) {
    kill(s.pid, SIGINT);
    int st;
    ck_assert(waitpid(s.pid, &st, 0) == s.pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "dllm serve exit %d", st);
}

static int connect_to(int port) {
    int fd = http_connect(port);
    ck_assert(fd >= 0);
    return fd;
}

typedef HttpReply Reply;

static Reply http(int port, const char *method, const char *path, const char *extra_headers,
                  const char *body) {
    return http_request(port, method, path, extra_headers, body);
}

// The output of a shell command (at most size - 1 bytes) and its exit status.
static int run(const char *cmd, char *out, size_t size) {
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, size - 1, p) : 0;
    out[n] = '\0';
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The server's access log so far (the tests' servers all append to one file).
static void read_access_log(char *text, size_t size) {
    char path[300];
    snprintf(path, sizeof path, "%s/access.log", dir);
    FILE *f = fopen(path, "r");
    ck_assert(f);
    size_t len = fread(text, 1, size - 1, f);
    fclose(f);
    text[len] = '\0';
}

// The first choice's text of a completion body (JSON-decoded), malloc'd.
static char *first_text(const char *body, int chat) {
    JsonValue v;
    Error err;
    ck_assert_msg(json_parse(body, &v, &err) == 0, "%s: %s", err.msg, body);
    const JsonValue *c = json_member(&v, "choices");
    ck_assert(c && c->type == JSON_ARRAY && c->n >= 1);
    const JsonValue *holder = chat ? json_member(&c->items[0], "message") : &c->items[0];
    const char *text = json_member_string(holder, chat ? "content" : "text");
    ck_assert(text);
    char *copy = strdup(text);
    json_free(&v);
    return copy;
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/dllm_serve_%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && head -c 20000 "
             "tests/fixtures/genesis.txt > %s/text.txt", dir, dir, dir);
    ck_assert(system(cmd) == 0);
    const char *tiny = "--n-layer 1 --n-head 2 --d-model 32 --d-ff 64 --seq-len 64 --steps 30 "
                       "--batch-size 4 --eval-every 0 --log-every 100";
    for (int mdm = 0; mdm <= 1; mdm++) {
        snprintf(cmd, sizeof cmd, "./dllm train %s --objective %s --data %s/text.txt --run %s/%s "
                 ">/dev/null 2>&1", tiny, mdm ? "mdm" : "ar", dir, dir, mdm ? "mdm" : "ar");
        ck_assert_msg(system(cmd) == 0, "%s", cmd);
    }
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

// The test's model `name` on the CPU, as dllm eval would load it, and the ids of "In the
// beginning" (16 bytes), to score what the server answered against.
static int *open_test_model(const char *name, ModelSource *src, Model *m) {
    char model_dir[300], chosen[4200];
    snprintf(model_dir, sizeof model_dir, "%s/%s", dir, name);
    int skipped, *tokens;
    size_t n;
    Error err;
    ck_assert_msg(model_source_open(model_dir, HF_WEIGHTS_LATER, src, chosen, sizeof chosen,
                                    &skipped, &err) == 0, "%s", err.msg);
    ck_assert_msg(model_source_build(src, &backend_cpu, 1, m, &err) == 0, "%s", err.msg);
    ck_assert(tokenizer_encode(&src->tokenizer, "In the beginning", 16, &tokens, &n, &err) == 0);
    ck_assert_uint_eq(n, 16);
    return tokens;
}

START_TEST(test_endpoints) {
    char flags[300];
    snprintf(flags, sizeof flags, "--model %s/ar", dir);
    Server s = serve(flags);
    Reply r = http(s.port, "GET", "/health", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.body, "\"model\": \"ar\"") && strstr(r.body, "\"diffusion\": false"),
                  "%s", r.body);
    free(r.head);
    r = http(s.port, "GET", "/v1/models", NULL, NULL);
    ck_assert(r.status == 200 && strstr(r.body, "\"id\": \"ar\""));
    free(r.head);
    r = http(s.port, "GET", "/", NULL, NULL);
    ck_assert(r.status == 200 && strstr(r.body, "<title>dllm</title>"));
    free(r.head);

    // greedy: the served text is what `dllm sample` generates
    r = http(s.port, "POST", "/v1/completions", NULL,
             "{\"model\": \"ar\", \"prompt\": \"In the\", \"max_tokens\": 12, \"temperature\": 0}");
    ck_assert_msg(r.status == 200 && strstr(r.body, "\"object\": \"text_completion\"") &&
                  strstr(r.body, "\"prompt_tokens\": 6"), "%s", r.body);
    char *served = first_text(r.body, 0);
    free(r.head);
    char cmd[512], sampled[4096] = "";
    snprintf(cmd, sizeof cmd, "./dllm sample --model %s/ar --prompt 'In the' --gen-length 12 "
             "--temperature 0 2>/dev/null", dir);
    ck_assert_int_eq(run(cmd, sampled, sizeof sampled), 0);
    size_t n = strlen(sampled);
    if (n && sampled[n - 1] == '\n') sampled[n - 1] = '\0';
    ck_assert_msg(strncmp(sampled, "In the", 6) == 0 && strcmp(sampled + 6, served) == 0,
                  "sample '%s' vs served '%s'", sampled, served);
    printf("  served greedy text equals dllm sample's: 'In the%s'\n", served);
    // the same prompt as token ids, in a list beside itself as text: two choices, that text
    r = http(s.port, "POST", "/tokenize", NULL, "{\"content\": \"In the\"}");
    char ids[200], body[400];
    snprintf(ids, sizeof ids, "%s", strstr(r.body, "["));
    *strchr(ids, ']') = '\0';
    free(r.head);
    snprintf(body, sizeof body, "{\"prompt\": [%s], \"In the\"], \"max_tokens\": 12, "
             "\"temperature\": 0}", ids);
    r = http(s.port, "POST", "/v1/completions", NULL, body);
    ck_assert_msg(r.status == 200 && strstr(r.body, "\"index\": 1") &&
                  strstr(r.body, "\"prompt_tokens\": 12"), "%s", r.body);
    JsonValue v;
    Error err;
    ck_assert(json_parse(r.body, &v, &err) == 0);
    const JsonValue *choices = json_member(&v, "choices");
    ck_assert(choices && choices->n == 2);
    for (int i = 0; i < 2; i++)
        ck_assert_str_eq(json_member_string(&choices->items[i], "text"), served);
    json_free(&v);
    free(r.head);
    free(served);
    // echo + logprobs (lm-evaluation-harness's loglikelihood request): the prompt's tokens'
    // log-probabilities sum to the exact AR log-likelihood dllm eval computes
    r = http(s.port, "POST", "/v1/completions", NULL, "{\"prompt\": \"In the beginning\", "
             "\"max_tokens\": 0, \"echo\": true, \"logprobs\": 1}");
    ck_assert_msg(r.status == 200, "%s", r.body);
    ck_assert(json_parse(r.body, &v, &err) == 0);
    const JsonValue *lp = json_member(&json_member(&v, "choices")->items[0], "logprobs");
    const JsonValue *tl = json_member(lp, "token_logprobs"), *tops = json_member(lp, "top_logprobs");
    ck_assert(tl && tl->n == 16 && tl->items[0].type == JSON_NULL && tops->n == 16);
    double served_nll = 0.0;
    for (int i = 1; i < tl->n; i++) served_nll -= tl->items[i].number;
    ck_assert_str_eq(json_member_string(&json_member(&v, "choices")->items[0], "text"),
                     "In the beginning");
    json_free(&v);
    free(r.head);
    ModelSource src;
    Model m;
    int *tokens = open_test_model("ar", &src, &m);
    double nll;
    ck_assert(score_continuation(&m, tokens, 16, 1, 1, 0.0f, 1, &nll, &err) == 0);
    ck_assert_msg(fabs(nll - served_nll) < 1e-4, "served %.6f, dllm eval's %.6f", served_nll, nll);
    printf("  echo + logprobs: -log p(prompt) %.6f served, %.6f by score_continuation\n",
           served_nll, nll);
    free(tokens);
    model_free(&m);
    model_source_free(&src);

    r = http(s.port, "POST", "/v1/chat/completions", NULL,
             "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 5, "
             "\"n\": 2}");
    ck_assert_msg(r.status == 200 && strstr(r.body, "\"chat.completion\"") &&
                  strstr(r.body, "\"role\": \"assistant\"") && strstr(r.body, "\"index\": 1"),
                  "%s", r.body);
    free(r.head);

    // a stream: OpenAI chunks, the last with its finish_reason, then [DONE]
    r = http(s.port, "POST", "/v1/completions", NULL,
             "{\"prompt\": \"In the\", \"max_tokens\": 6, \"stream\": true, "
             "\"temperature\": 0}");
    ck_assert_msg(r.status == 200 && strstr(r.head, "text/event-stream"), "%s", r.head);
    int chunks = 0;
    for (const char *c = r.body; (c = strstr(c, "data: {")) != NULL; c++) chunks++;
    ck_assert_msg(chunks >= 2 && strstr(r.body, "\"finish_reason\": \"length\"") &&
                  strstr(r.body, "data: [DONE]\n\n"), "%s", r.body);
    free(r.head);

    // errors: OpenAI's error object with the right status
    r = http(s.port, "POST", "/v1/completions", NULL, "{\"prompt\": ");
    ck_assert(r.status == 400 && strstr(r.body, "\"invalid_request_error\""));
    free(r.head);
    r = http(s.port, "POST", "/v1/completions", NULL, "{\"prompt\": \"x\", \"model\": \"gpt\"}");
    ck_assert_int_eq(r.status, 404);
    free(r.head);
    char long_prompt[400];
    memset(long_prompt, 0, sizeof long_prompt);
    strcpy(long_prompt, "{\"prompt\": \"");
    memset(long_prompt + strlen(long_prompt), 'a', 80);
    strcat(long_prompt, "\", \"max_tokens\": 10}");
    r = http(s.port, "POST", "/v1/completions", NULL, long_prompt);
    ck_assert_msg(r.status == 400 && strstr(r.body, "exceed the model's context"), "%s", r.body);
    free(r.head);
    r = http(s.port, "GET", "/v1/completions", NULL, NULL);
    ck_assert_int_eq(r.status, 405);
    free(r.head);
    r = http(s.port, "GET", "/v1/nothing", NULL, NULL);
    ck_assert_int_eq(r.status, 404);
    free(r.head);
    char *big = malloc((1 << 20) + 100);
    memset(big, 'a', (1 << 20) + 99);
    big[(1 << 20) + 99] = '\0';
    r = http(s.port, "POST", "/v1/completions", NULL, big);
    ck_assert_int_eq(r.status, 413);
    free(r.head), free(big);
    stop(s);
    char text[65536];
    read_access_log(text, sizeof text);
    ck_assert_msg(strstr(text, "\"path\": \"/v1/completions\", \"status\": 200, \"id\": \"cmpl-") &&
                  strstr(text, "\"completion_tokens\": 12") && strstr(text, "\"status\": 413"),
                  "%s", text);
}
END_TEST

START_TEST(test_diffusion_stream_and_api_key) {
    char flags[300];
    snprintf(flags, sizeof flags, "--model %s/mdm --api-key sesame", dir);
    Server s = serve(flags);
    const char *body = "{\"prompt\": \"In the\", \"max_tokens\": 8, \"steps\": 4, "
                       "\"stream\": true, \"stream_steps\": true}";
    Reply r = http(s.port, "POST", "/v1/completions", NULL, body);
    ck_assert_msg(r.status == 401 && strstr(r.body, "authentication_error"), "%s", r.body);
    free(r.head);
    r = http(s.port, "POST", "/v1/completions", "Authorization: Bearer wrong\r\n", body);
    ck_assert_int_eq(r.status, 401);
    free(r.head);
    r = http(s.port, "GET", "/health", NULL, NULL);  // public, as a load balancer asks it
    ck_assert_int_eq(r.status, 200);
    free(r.head);
    r = http(s.port, "GET", "/metrics", NULL, NULL);
    ck_assert_int_eq(r.status, 401);
    free(r.head);
    r = http(s.port, "GET", "/", NULL, NULL);  // the page itself: static, no data
    ck_assert_int_eq(r.status, 200);
    free(r.head);
    r = http(s.port, "POST", "/v1/completions", "Authorization: Bearer sesame\r\n", body);
    ck_assert_int_eq(r.status, 200);
    int steps = 0;
    for (const char *c = r.body; (c = strstr(c, "event: dllm.step\n")) != NULL; c++) steps++;
    ck_assert_msg(steps == 4 && strstr(r.body, "\"committed\": [") &&
                  strstr(r.body, "\xe2\x96\x91") && strstr(r.body, "data: [DONE]"), "%s",
                  r.body);
    printf("  diffusion stream: %d dllm.step events, then the text and [DONE]\n", steps);
    free(r.head);
    // without step events: the text streams as it becomes final, block by block, and adds up
    // to the whole answer
    const char *greedy = "{\"prompt\": \"In the\", \"max_tokens\": 16, \"block_length\": 4, "
                         "\"steps\": 16, \"temperature\": 0%s}";
    char req_body[300];
    snprintf(req_body, sizeof req_body, greedy, "");
    r = http(s.port, "POST", "/v1/completions", "Authorization: Bearer sesame\r\n", req_body);
    char *whole = first_text(r.body, 0);
    free(r.head);
    snprintf(req_body, sizeof req_body, greedy, ", \"stream\": true");
    r = http(s.port, "POST", "/v1/completions", "Authorization: Bearer sesame\r\n", req_body);
    Text joined = {0};
    int pieces = 0;
    for (const char *c = r.body; (c = strstr(c, "data: {")) != NULL; c++) {
        const char *end = strstr(c, "\n\n");
        char *one = strndup(c + 6, (size_t)(end - c - 6));
        JsonValue v;
        Error err;
        ck_assert(json_parse(one, &v, &err) == 0);
        const JsonValue *ch = json_member(&v, "choices");
        if (ch->n) {
            const char *text = json_member_string(&ch->items[0], "text");
            pieces += text[0] != '\0';
            text_append(&joined, text, strlen(text));
        }
        json_free(&v);
        free(one);
    }
    ck_assert_msg(pieces >= 2 && joined.s && strcmp(joined.s, whole) == 0, "%d pieces '%s' vs '%s'",
                  pieces, joined.s ? joined.s : "", whole);
    printf("  diffusion stream: the answer in %d pieces as its blocks became final\n", pieces);
    text_free(&joined);
    free(whole);
    free(r.head);
    // echo + logprobs of a diffusion model: each token predicted with itself and what follows
    // masked; the last token's is the one-token continuation's likelihood dllm eval computes
    r = http(s.port, "POST", "/v1/completions", "Authorization: Bearer sesame\r\n",
             "{\"prompt\": \"In the beginning\", \"max_tokens\": 0, \"echo\": true, "
             "\"logprobs\": 1}");
    ck_assert_msg(r.status == 200, "%s", r.body);
    JsonValue v;
    Error err;
    ck_assert(json_parse(r.body, &v, &err) == 0);
    const JsonValue *tl = json_member(json_member(&json_member(&v, "choices")->items[0],
                                                  "logprobs"), "token_logprobs");
    ck_assert(tl && tl->n == 16);
    double last = tl->items[15].number, served_tail = 0.0;
    for (int i = 6; i < 16; i++) served_tail -= tl->items[i].number;
    json_free(&v);
    free(r.head);
    ModelSource src;
    Model m;
    int *tokens = open_test_model("mdm", &src, &m);
    double nll;
    ck_assert(score_continuation(&m, tokens, 16, 15, 1, 0.0f, 1, &nll, &err) == 0);
    ck_assert_msg(fabs(nll + last) < 1e-4, "served %.6f, dllm eval's %.6f", -last, nll);
    double tail;  // "beginning" after "In the ", decoded left to right
    ck_assert(score_left_to_right(&m, tokens, 16, 6, &tail, &err) == 0);
    ck_assert_msg(fabs(tail - served_tail) < 1e-4, "served %.6f, score_left_to_right %.6f",
                  served_tail, tail);
    printf("  diffusion logprobs: the last token %.6f served, %.6f by score_continuation; the "
           "last 10 %.6f served, %.6f by score_left_to_right\n", -last, nll, served_tail, tail);
    free(tokens);
    model_free(&m);
    model_source_free(&src);
    stop(s);
}
END_TEST

// A client that hangs up on its stream, and one that connects and says nothing: the server goes
// on serving others (the silent one is dropped after --idle seconds), and the request of the
// one that left stops at its first step (it hung up while --batch-wait held it: status 499,
// one pass of its 50 in the access log).
START_TEST(test_gone_and_silent_clients) {
    char flags[300];
    snprintf(flags, sizeof flags, "--model %s/ar --idle 1 --batch-wait 1", dir);
    Server s = serve(flags);
    int fd = connect_to(s.port);
    const char *body = "{\"prompt\": \"In the\", \"max_tokens\": 50, \"stream\": true}";
    char req[256];
    int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.0\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    ck_assert(write(fd, req, (size_t)n) == n);
    char buf[64];
    ck_assert(read(fd, buf, sizeof buf) > 0);
    close(fd);
    int silent = connect_to(s.port);
    Reply r = http(s.port, "POST", "/v1/completions", NULL,
                   "{\"prompt\": \"In the\", \"max_tokens\": 4}");
    ck_assert_int_eq(r.status, 200);
    free(r.head);
    double t0 = now_seconds();
    ck_assert_int_eq(read(silent, buf, sizeof buf), 0);  // closed by the server
    ck_assert(now_seconds() - t0 < 5.0);
    close(silent);
    stop(s);
    char text[65536];
    read_access_log(text, sizeof text);
    ck_assert_msg(strstr(text, "\"status\": 499, \"id\": \"cmpl-1\", \"prompt_tokens\": 6, "
                           "\"completion_tokens\": 0, \"passes\": 1"), "%s", text);
}
END_TEST

// Imported Hugging Face models are served as they come (Qwen2's chat template, LLaDA's
// diffusion), and a request past --timeout gets 504 while the server goes on.
START_TEST(test_imported_models_and_time_limit) {
    Server s = serve("--model tests/fixtures/hf_models/qwen2");
    Reply r = http(s.port, "POST", "/v1/chat/completions", NULL,
                   "{\"model\": \"qwen2\", \"messages\": [{\"role\": \"user\", \"content\": "
                   "\"Hello\"}], \"max_tokens\": 5, \"seed\": 1234}");  // a seeded sample: no EOS in 5
    ck_assert_msg(r.status == 200 && strstr(r.body, "\"completion_tokens\": 5"), "%s", r.body);
    ck_assert_msg(strstr(r.body, "\"prompt_tokens\": 39"), "chat template: %s", r.body);
    free(r.head);
    stop(s);
    s = serve("--model tests/fixtures/hf_models/llada --timeout 0.0001");
    r = http(s.port, "POST", "/v1/completions", NULL, "{\"prompt\": \"Hello\", \"max_tokens\": 8}");
    ck_assert_msg(r.status == 504 && strstr(r.body, "time limit"), "%s", r.body);
    free(r.head);
    r = http(s.port, "GET", "/health", NULL, NULL);
    ck_assert(r.status == 200 && strstr(r.body, "\"diffusion\": true"));
    free(r.head);
    stop(s);
}
END_TEST

// Requests that arrive together share a batch (--batch-wait) and each gets the text it gets
// alone: four greedy prompts of different lengths, one of them streamed.
typedef struct {
    int port, stream;
    const char *prompt;
    char *text;
} Ask;

static void *ask(void *arg) {
    Ask *a = arg;
    char body[300];
    snprintf(body, sizeof body, "{\"prompt\": \"%s\", \"max_tokens\": 10, \"temperature\": 0, "
             "\"stream\": %s}", a->prompt, a->stream ? "true" : "false");
    Reply r = http(a->port, "POST", "/v1/completions", NULL, body);
    ck_assert_msg(r.status == 200, "%s", r.body);
    if (!a->stream) {
        a->text = first_text(r.body, 0);
    } else {  // the stream's pieces, joined
        Text t = {0};
        for (const char *c = r.body; (c = strstr(c, "data: {")) != NULL; c++) {
            char *line = strndup(c + 6, strcspn(c + 6, "\n"));
            char *piece = first_text(line, 0);
            text_append(&t, piece, strlen(piece));
            free(piece), free(line);
        }
        a->text = t.s ? t.s : strdup("");
    }
    free(r.head);
    return NULL;
}

START_TEST(test_requests_share_a_batch) {
    char flags[300];
    snprintf(flags, sizeof flags, "--model %s/ar --batch-wait 0.3", dir);
    Server s = serve(flags);
    static const char *const prompts[] = {"In the", "And God", "The earth was", "Light"};
    Ask alone[4], together[4];
    for (int i = 0; i < 4; i++) {
        alone[i] = (Ask){s.port, 0, prompts[i], NULL};
        ask(&alone[i]);
    }
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        together[i] = (Ask){s.port, i == 2, prompts[i], NULL};
        pthread_create(&threads[i], NULL, ask, &together[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(strcmp(alone[i].text, together[i].text) == 0, "'%s': '%s' alone, '%s' "
                      "batched", prompts[i], alone[i].text, together[i].text);
        free(alone[i].text), free(together[i].text);
    }
    stop(s);
    char text[65536];
    read_access_log(text, sizeof text);
    int batched = 0;
    for (const char *c = text; (c = strstr(c, "\"batched\": 4")) != NULL; c++) batched++;
    printf("  4 requests at once: %d ran in one batch of 4, each with its text alone\n", batched);
    ck_assert_int_eq(batched, 4);
}
END_TEST

// Concurrent streaming clients against a queue of 1: every request is served (200, ending in
// [DONE]) or refused cleanly (503 with Retry-After and an error object).
typedef struct {
    int port, ok, busy, other;
} Load;

static void *load_client(void *arg) {
    Load *l = arg;
    for (int i = 0; i < 4; i++) {
        Reply r = http(l->port, "POST", "/v1/completions", NULL,
                       "{\"prompt\": \"In the\", \"max_tokens\": 24, \"stream\": true, "
                       "\"temperature\": 0.8}");
        if (r.status == 200 && strstr(r.body, "data: [DONE]")) l->ok++;
        else if (r.status == 503 && strstr(r.head, "Retry-After: 1") &&
                 strstr(r.body, "\"server_busy\"")) l->busy++;
        else l->other++;
        free(r.head);
    }
    return NULL;
}

START_TEST(test_concurrent_clients) {
    enum { CLIENTS = 8 };
    char flags[300];
    snprintf(flags, sizeof flags, "--model %s/ar --queue 1", dir);
    Server s = serve(flags);
    pthread_t threads[CLIENTS];
    Load loads[CLIENTS];
    double t0 = now_seconds();
    for (int i = 0; i < CLIENTS; i++) {
        loads[i] = (Load){s.port, 0, 0, 0};
        pthread_create(&threads[i], NULL, load_client, &loads[i]);
    }
    int ok = 0, busy = 0, other = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(threads[i], NULL);
        ok += loads[i].ok, busy += loads[i].busy, other += loads[i].other;
    }
    double seconds = now_seconds() - t0;
    printf("  %d clients x 4 streams, queue 1: %d served, %d refused with 503 in %.2f s\n",
           CLIENTS, ok, busy, seconds);
    ck_assert_int_eq(other, 0);
    ck_assert_int_eq(ok + busy, CLIENTS * 4);
    ck_assert(ok >= 1);
    Reply r = http(s.port, "GET", "/health", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    free(r.head);
    stop(s);
}
END_TEST

// Whether the real clients are here: a Python with the openai package (DLLM_TEST_PYTHON,
// default python3), chromium and curl. CI sets DLLM_REQUIRE_CLIENTS=1: missing is a failure.
static int clients_present(const char **python) {
    *python = getenv("DLLM_TEST_PYTHON") ? getenv("DLLM_TEST_PYTHON") : "python3";
    char cmd[600], out[256];
    snprintf(cmd, sizeof cmd, "%s -c 'import openai, lm_eval, tenacity' 2>&1 && "
             "command -v chromium curl >/dev/null 2>&1", *python);
    int ok = run(cmd, out, sizeof out) == 0;
    const char *require = getenv("DLLM_REQUIRE_CLIENTS");
    ck_assert_msg(ok || !require || strcmp(require, "1") != 0,
                  "DLLM_REQUIRE_CLIENTS=1 but the openai or lm_eval[api] package, chromium or "
                  "curl is missing");
    if (!ok) printf("  real clients: skipped (no openai or lm_eval[api] package for %s, "
                    "chromium or curl)\n", *python);
    return ok;
}

// The openai package, curl and a browser against one server (with an API key).
START_TEST(test_real_clients) {
    const char *python;
    if (!clients_present(&python)) return;
    char flags[300], cmd[1024], out[8192];
    snprintf(flags, sizeof flags, "--model %s/mdm --api-key sesame", dir);
    Server s = serve(flags);
    snprintf(cmd, sizeof cmd, "%s tests/openai_check.py http://127.0.0.1:%d/v1 mdm sesame 2>&1",
             python, s.port);
    ck_assert_msg(run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"errors\": [400, 404, 401]") &&
                  strstr(out, "\"conversation_prompt_tokens\": [") &&
                  strstr(out, "\"seeds\": \"fresh differ, fixed equal\"") &&
                  strstr(out, "\"chat_logprobs\": "), "%s", out);
    printf("  openai package: %s", out);
    snprintf(cmd, sizeof cmd, "curl -s -w ' %%{http_code}' -H 'Authorization: Bearer sesame' "
             "-H 'Content-Type: application/json' "
             "http://127.0.0.1:%d/v1/completions -d '{\"prompt\": \"In the\", "
             "\"max_tokens\": 4}'", s.port);
    ck_assert_int_eq(run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "\"text_completion\"") && strstr(out, " 200"), "%s", out);
    // the page in chromium: it denoises in front of the user, then shows the answer
    snprintf(cmd, sizeof cmd, "%s tests/page_check.py 'http://127.0.0.1:%d/?prompt=In%%20the"
             "&max_tokens=32&steps=16&block_length=32&key=sesame' %s/page.png 2>&1", python,
             s.port, dir);
    ck_assert_msg(run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"status\": \"done in 16 steps\"") && !strstr(out, "\"text\": \"\""),
                  "%s", out);
    printf("  chromium: %s", out);
    stop(s);
    // a request past the time limit: the page shows the error, not "done" with an empty box
    snprintf(flags, sizeof flags, "--model %s/mdm --timeout 0.0001", dir);
    s = serve(flags);
    snprintf(cmd, sizeof cmd, "%s tests/page_check.py 'http://127.0.0.1:%d/?prompt=In%%20the"
             "&max_tokens=48&steps=48&block_length=48' %s/page_timeout.png 2>&1", python, s.port,
             dir);
    ck_assert_msg(run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"status\": \"error: the request ran past the server's time "
                              "limit\""), "%s", out);
    printf("  chromium, past the time limit: %s", out);
    stop(s);
    // lm-evaluation-harness, unmodified, against the AR model: its scores equal dllm's own
    snprintf(flags, sizeof flags, "--model %s/ar", dir);
    s = serve(flags);
    snprintf(cmd, sizeof cmd, "%s tests/lm_eval_check.py http://127.0.0.1:%d ar %s/ar "
             "%s/lm_eval 2>&1", python, s.port, dir, dir);
    ck_assert_msg(run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"generations_equal\": \"8/8\""), "%s", out);
    printf("  lm-evaluation-harness: %s", out);
    stop(s);
    snprintf(flags, sizeof flags, "--model %s/mdm", dir);
    s = serve(flags);
    snprintf(cmd, sizeof cmd, "%s tests/lm_eval_check.py http://127.0.0.1:%d mdm %s/mdm "
             "%s/lm_eval_mdm --diffusion 2>&1", python, s.port, dir, dir);
    ck_assert_msg(run(cmd, out, sizeof out) == 0, "%s", out);
    printf("  lm-evaluation-harness, diffusion: %s", out);
    stop(s);
}
END_TEST

// Sends raw bytes on a fresh connection and reads the reply's status within `seconds` (0: none).
static int raw_status(int port, const char *request, double seconds) {
    int fd = connect_to(port);
    ck_assert(send(fd, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request));
    struct timeval tv = {(int)seconds, (int)((seconds - (int)seconds) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256] = "";
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    close(fd);
    int status = 0;
    if (n > 0) sscanf(buf, "HTTP/1.%*d %d", &status);
    return status;
}

// What a request must be before the server reads its body or runs anything: a Host of this
// server (DNS rebinding), JSON (a page of another site may POST text/plain without asking),
// under 1 MiB by its Content-Length (refused before one byte of a 50 MB body is sent); CORS
// only with --cors; the API key from a file or the environment; /metrics, /tokenize and
// /detokenize.
START_TEST(test_request_gates) {
    char flags[800], key_path[300], req[600];
    snprintf(key_path, sizeof key_path, "%s/key.txt", dir);
    FILE *f = fopen(key_path, "w");
    fputs("sesame\n", f);
    fclose(f);
    snprintf(flags, sizeof flags, "--model %s/ar --api-key-file %s", dir, key_path);
    Server s = serve(flags);
    const char *auth = "Authorization: Bearer sesame\r\n";
    // seeded: an unseeded request draws a fresh seed, and a draw that samples EOS first would
    // serve fewer than the 4 tokens the metrics below count
    const char *body = "{\"prompt\": \"In the\", \"max_tokens\": 4, \"seed\": 1}";
    Reply r = http(s.port, "POST", "/v1/completions", NULL, body);
    ck_assert_int_eq(r.status, 401);
    free(r.head);
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.0\r\nHost: 127.0.0.1\r\n%s"
             "Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n", auth);
    double t0 = now_seconds();
    ck_assert_int_eq(raw_status(s.port, req, 5.0), 413);
    ck_assert(now_seconds() - t0 < 2.0);
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.0\r\nHost: evil.example:%d\r\n%s"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", s.port, auth,
             strlen(body), body);
    ck_assert_int_eq(raw_status(s.port, req, 5.0), 403);
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.0\r\nHost: localhost:%d\r\n%s"
             "Origin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: %zu"
             "\r\n\r\n%s", s.port, auth, strlen(body), body);
    ck_assert_int_eq(raw_status(s.port, req, 5.0), 415);
    r = http(s.port, "OPTIONS", "/v1/completions", "Origin: http://evil.example\r\n", NULL);
    ck_assert_int_eq(r.status, 405);
    ck_assert(!strcasestr(r.head, "Access-Control-Allow-Origin"));
    free(r.head);
    r = http(s.port, "POST", "/v1/completions", auth, body);
    ck_assert_int_eq(r.status, 200);
    free(r.head);
    r = http(s.port, "POST", "/tokenize", auth, "{\"content\": \"In the\"}");
    ck_assert_msg(r.status == 200 && strstr(r.body, "\"tokens\": ["), "%s", r.body);
    char detok[300];
    snprintf(detok, sizeof detok, "{\"tokens\": %s", strstr(r.body, "["));
    *strrchr(detok, '}') = '}';
    free(r.head);
    r = http(s.port, "POST", "/detokenize", auth, detok);
    ck_assert_msg(r.status == 200 && strstr(r.body, "\"content\": \"In the\""), "%s", r.body);
    free(r.head);
    r = http(s.port, "GET", "/metrics", auth, NULL);
    ck_assert_msg(r.status == 200 && strstr(r.body, "dllm_responses_total{status=\"4xx\"} 5") &&
                  strstr(r.body, "dllm_completion_tokens_total 4"), "%s", r.body);
    free(r.head);
    stop(s);  // the refused requests ran nothing: 4 completion tokens in all, the one served
    // --cors: the browser's preflight is answered, every response names the origin; the key
    // from the environment
    setenv("DLLM_API_KEY", "open", 1);
    snprintf(flags, sizeof flags, "--model %s/ar --cors http://app.example", dir);
    s = serve(flags);
    unsetenv("DLLM_API_KEY");
    r = http(s.port, "OPTIONS", "/v1/completions", "Origin: http://app.example\r\n", NULL);
    ck_assert_msg(r.status == 204 && strstr(r.head, "Access-Control-Allow-Origin: "
                                                    "http://app.example"), "%s", r.head);
    free(r.head);
    r = http(s.port, "POST", "/v1/completions", NULL, body);
    ck_assert_int_eq(r.status, 401);
    free(r.head);
    r = http(s.port, "POST", "/v1/completions", "Authorization: Bearer open\r\n", body);
    ck_assert_msg(r.status == 200 && strstr(r.head, "Access-Control-Allow-Origin"), "%s", r.head);
    free(r.head);
    stop(s);
    printf("  gates: 413 before the body, 403 for another Host, 415 for text/plain, CORS only "
           "with --cors, keys from a file and the environment\n");
}
END_TEST

// Clients that send a byte now and then hold every connection the server allows: each has
// --request-timeout to deliver its request, then its connection is closed and others get in.
START_TEST(test_slow_clients_lose_their_slot) {
    char flags[300];
    snprintf(flags, sizeof flags, "--model %s/ar --connections 4 --request-timeout 1", dir);
    Server s = serve(flags);
    enum { SLOW = 4 };
    int slow[SLOW];
    for (int i = 0; i < SLOW; i++) {
        slow[i] = connect_to(s.port);
        ck_assert(send(slow[i], "POST /v1/completions HTTP/1.0\r\n", 31, MSG_NOSIGNAL) == 31);
    }
    double t0 = now_seconds(), served = 0.0;
    while (now_seconds() - t0 < 8.0 && !served) {
        for (int i = 0; i < SLOW; i++) send(slow[i], "X", 1, MSG_NOSIGNAL);  // never idle
        Reply r = http(s.port, "GET", "/health", NULL, NULL);
        if (r.status == 200) served = now_seconds() - t0;
        free(r.head);
        usleep(200 * 1000);
    }
    // (without the deadline they hold on until --idle, 30 s, after they stop sending)
    ck_assert_msg(served > 0.0 && served < 3.0, "a client got in after %.1f s", served);
    int closed = 0;
    char buf[16];
    for (int i = 0; i < SLOW; i++) {
        struct timeval tv = {2, 0};
        setsockopt(slow[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(slow[i], buf, sizeof buf, 0);  // 0 or a reset: closed; a time-out: not
        closed += n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
        close(slow[i]);
    }
    ck_assert_int_eq(closed, SLOW);
    Reply r = http(s.port, "GET", "/metrics", NULL, NULL);
    ck_assert_msg(strstr(r.body, "dllm_request_deadlines_total 4"), "%s", r.body);
    free(r.head);
    stop(s);
    printf("  slow clients: %d dribbling connections closed after 1 s; another client got in "
           "after %.1f s\n", SLOW, served);
}
END_TEST

int main(void) {
    Suite *s = suite_create("serve");
    TCase *parse = tcase_create("parsing");
    tcase_add_test(parse, test_request_fields);
    tcase_add_test(parse, test_request_refusals);
    tcase_add_test(parse, test_conversation_layouts);
    tcase_add_test(parse, test_json_strings_are_escaped);
    suite_add_tcase(s, parse);
    TCase *tc = tcase_create("loopback");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_endpoints);
    tcase_add_test(tc, test_diffusion_stream_and_api_key);
    tcase_add_test(tc, test_gone_and_silent_clients);
    tcase_add_test(tc, test_concurrent_clients);
    tcase_add_test(tc, test_requests_share_a_batch);
    tcase_add_test(tc, test_imported_models_and_time_limit);
    tcase_add_test(tc, test_request_gates);
    tcase_add_test(tc, test_slow_clients_lose_their_slot);
    tcase_add_test(tc, test_real_clients);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
