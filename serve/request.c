#include "serve/request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "serve/response.h"

static int fail(RequestError *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

// An optional number member within [lo, hi] (integral when `integer`): 0 (left as is when
// absent, or null), -1 with the error.
static int get_number(const JsonValue *root, const char *key, double lo, double hi, int integer,
                      double *out, RequestError *e) {
    const JsonValue *v = json_member(root, key);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_NUMBER)
        return fail(e, 400, key, "'%s' must be a number", key);
    if (integer && v->number != floor(v->number))
        return fail(e, 400, key, "'%s' must be an integer", key);
    if (!(v->number >= lo && v->number <= hi))
        return fail(e, 400, key, "'%s' must be in [%g, %g] (got %g)", key, lo, hi, v->number);
    *out = v->number;
    return 0;
}

static int get_int(const JsonValue *root, const char *key, int lo, int hi, int *out,
                   RequestError *e) {
    double d = *out;
    if (get_number(root, key, lo, hi, 1, &d, e)) return -1;
    *out = (int)d;
    return 0;
}

static int get_float(const JsonValue *root, const char *key, double lo, double hi, float *out,
                     RequestError *e) {
    double d = *out;
    if (get_number(root, key, lo, hi, 0, &d, e)) return -1;
    *out = (float)d;
    return 0;
}

static int get_bool(const JsonValue *root, const char *key, int *out, RequestError *e) {
    const JsonValue *v = json_member(root, key);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_TRUE && v->type != JSON_FALSE)
        return fail(e, 400, key, "'%s' must be true or false", key);
    *out = v->type == JSON_TRUE;
    return 0;
}

// One of `names` (n of them) by string, its index into *out.
static int get_choice(const JsonValue *root, const char *key, const char *const *names, int n,
                      int *out, RequestError *e) {
    const JsonValue *v = json_member(root, key);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type == JSON_STRING)
        for (int i = 0; i < n; i++)
            if (strcmp(v->string, names[i]) == 0) return *out = i, 0;
    char all[120] = "";
    for (int i = 0; i < n; i++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "", names[i]);
    return fail(e, 400, key, "'%s' must be one of %s", key, all);
}

// A text field without NULs (the tokenizers take C strings).
static int plain_text(const JsonValue *v, const char *param, RequestError *e) {
    if (v->type != JSON_STRING) return fail(e, 400, param, "'%s' must be a string", param);
    if (strlen(v->string) != v->len)
        return fail(e, 400, param, "'%s' must not contain NUL characters", param);
    return 0;
}

// One prompt: a string, or a list of token ids (integers, checked against the vocabulary
// when the prompt is encoded).
static int parse_one_prompt(const JsonValue *v, Prompt *p, RequestError *e) {
    if (v->type != JSON_ARRAY) {
        if (plain_text(v, "prompt", e)) return -1;
        p->text = strdup(v->string);
        return p->text ? 0 : fail(e, 500, NULL, "out of memory");
    }
    p->ids = malloc((size_t)(v->n ? v->n : 1) * sizeof(int));
    if (!p->ids) return fail(e, 500, NULL, "out of memory");
    for (int i = 0; i < v->n; i++) {
        const JsonValue *x = &v->items[i];
        if (x->type != JSON_NUMBER || x->number != floor(x->number) || x->number < 0 ||
            x->number > 2147483647.0)
            return fail(e, 400, "prompt", "'prompt' must be a string, a list of strings, a list "
                        "of token ids or a list of such lists");
        p->ids[p->n_ids++] = (int)x->number;
    }
    return 0;
}

// OpenAI's prompt: a string, a list of strings, a list of token ids, or a list of such lists.
static int parse_prompt(const JsonValue *root, ServeRequest *r, RequestError *e) {
    const JsonValue *v = json_member(root, "prompt");
    if (!v) return fail(e, 400, "prompt", "'prompt' is required");
    int list = v->type == JSON_ARRAY && v->n > 0 &&
               (v->items[0].type == JSON_STRING || v->items[0].type == JSON_ARRAY);
    int n = list ? v->n : 1;
    if (n > REQUEST_MAX_N)
        return fail(e, 400, "prompt", "at most %d prompts per request", REQUEST_MAX_N);
    r->prompts = calloc((size_t)n, sizeof *r->prompts);
    if (!r->prompts) return fail(e, 500, NULL, "out of memory");
    for (int i = 0; i < n; i++) {
        r->n_prompts = i + 1;
        if (parse_one_prompt(list ? &v->items[i] : v, &r->prompts[i], e)) return -1;
    }
    return 0;
}

// A message's content onto t: a string, or OpenAI's list of parts of which only text parts
// ({"type": "text", "text": ...}) are understood.
static int append_content(Text *t, const JsonValue *content, RequestError *e) {
    if (content->type != JSON_ARRAY) {
        if (plain_text(content, "content", e)) return -1;
        text_append(t, content->string, content->len);
        return 0;
    }
    for (int i = 0; i < content->n; i++) {
        const char *type = json_member_string(&content->items[i], "type");
        const JsonValue *text = json_member(&content->items[i], "text");
        if (!type || strcmp(type, "text") != 0 || !text)
            return fail(e, 400, "content", "only text content parts are supported");
        if (plain_text(text, "content", e)) return -1;
        text_append(t, text->string, text->len);
    }
    return 0;
}

// The conversation: system, user and assistant messages, the last one from the user, laid
// out later by the model's chat template (tool messages and calls are not implemented).
static int parse_messages(const JsonValue *root, ServeRequest *r, RequestError *e) {
    const JsonValue *v = json_member(root, "messages");
    if (!v) return fail(e, 400, "messages", "'messages' is required");
    if (v->type != JSON_ARRAY || v->n < 1)
        return fail(e, 400, "messages", "'messages' must be a non-empty array");
    r->messages = calloc((size_t)v->n, sizeof *r->messages);
    if (!r->messages) return fail(e, 500, NULL, "out of memory");
    for (int i = 0; i < v->n; i++) {
        const JsonValue *m = &v->items[i];
        const char *role = json_member_string(m, "role");
        const JsonValue *content = json_member(m, "content");
        if (m->type != JSON_OBJECT || !role || !content)
            return fail(e, 400, "messages", "each message needs a 'role' and a 'content'");
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "developer"))
            return fail(e, 400, "messages", "role '%.40s' is not supported (system, developer, "
                        "user and assistant are; tools are not)", role);
        if (i == v->n - 1 && strcmp(role, "user") != 0)
            return fail(e, 400, "messages", "the last message must be the user's");
        Text text = {0};
        if (append_content(&text, content, e)) {
            text_free(&text);
            return -1;
        }
        // OpenAI's newer name for the system message
        r->messages[i].role = strdup(strcmp(role, "developer") == 0 ? "system" : role);
        r->messages[i].content = text.s ? text.s : strdup("");
        r->n_messages = i + 1;
        if (text.failed || !r->messages[i].role || !r->messages[i].content)
            return fail(e, 500, NULL, "out of memory");
    }
    return 0;
}

// max_tokens, or max_completion_tokens (OpenAI's newer name); both must agree.
static int get_max_tokens(const JsonValue *root, const ServeLimits *limits, ServeRequest *r,
                          RequestError *e) {
    int a = -1, b = -1;  // absent
    if (get_int(root, "max_tokens", 0, limits->context, &a, e) ||
        get_int(root, "max_completion_tokens", 0, limits->context, &b, e))
        return -1;
    if (a >= 0 && b >= 0 && a != b)
        return fail(e, 400, "max_completion_tokens", "'max_tokens' (%d) and "
                    "'max_completion_tokens' (%d) disagree", a, b);
    if (a >= 0 || b >= 0) r->max_tokens = a >= 0 ? a : b;
    return 0;
}

// stream_options: {"include_usage": true} asks for a last chunk with the usage.
static int get_stream_options(const JsonValue *root, ServeRequest *r, RequestError *e) {
    const JsonValue *v = json_member(root, "stream_options");
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_OBJECT)
        return fail(e, 400, "stream_options", "'stream_options' must be an object");
    return get_bool(v, "include_usage", &r->include_usage, e);
}

static int parse_stops(const JsonValue *root, ServeRequest *r, RequestError *e) {
    const JsonValue *v = json_member(root, "stop");
    if (!v || v->type == JSON_NULL) return 0;
    const JsonValue *items = v->type == JSON_ARRAY ? v->items : v;
    int n = v->type == JSON_ARRAY ? v->n : 1;
    if (n > REQUEST_MAX_STOPS)
        return fail(e, 400, "stop", "at most %d stop strings", REQUEST_MAX_STOPS);
    for (int i = 0; i < n; i++) {
        if (plain_text(&items[i], "stop", e)) return -1;
        if (items[i].len == 0) return fail(e, 400, "stop", "stop strings must not be empty");
        r->stops[r->n_stops++] = strdup(items[i].string);
    }
    return 0;
}

// Fields a client may send that change the output in ways dllm does not implement: refused
// unless they hold their neutral value.
static int refuse_unsupported(const JsonValue *root, RequestError *e) {
    static const char *const zero_numbers[] = {"frequency_penalty", "presence_penalty"};
    for (int i = 0; i < 2; i++) {
        const JsonValue *v = json_member(root, zero_numbers[i]);
        if (v && v->type != JSON_NULL && !(v->type == JSON_NUMBER && v->number == 0.0))
            return fail(e, 400, zero_numbers[i], "'%s' is not supported", zero_numbers[i]);
    }
    return 0;
}

// echo and logprobs (/v1/completions): what the model gives each token of the prompt and the
// completion (a diffusion model: decoding left to right, engine.c).
static int parse_logprobs(const JsonValue *root, int chat, ServeRequest *r, RequestError *e) {
    r->logprobs = -1;
    const JsonValue *lp = json_member(root, "logprobs");
    int asked = lp && lp->type != JSON_NULL && lp->type != JSON_FALSE;
    if (chat) {  // logprobs: true, and top_logprobs alternatives
        int on = 0, top = 0;
        if (json_member(root, "echo"))
            return fail(e, 400, "echo", "'echo' is for /v1/completions");
        if (get_bool(root, "logprobs", &on, e) ||
            get_int(root, "top_logprobs", 0, REQUEST_MAX_TOP_LOGPROBS, &top, e))
            return -1;
        if (top && !on) return fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs'");
        r->logprobs = on ? top : -1;
        asked = on;
    } else {
        if (get_bool(root, "echo", &r->echo, e)) return -1;
        if (asked && get_int(root, "logprobs", 0, 5, &r->logprobs, e)) return -1;
    }
    if ((asked || r->echo) && r->stream)
        return fail(e, 400, asked ? "logprobs" : "echo", "'%s' with 'stream' is not implemented",
                    asked ? "logprobs" : "echo");
    if (r->max_tokens == 0 && !r->echo)
        return fail(e, 400, "max_tokens", "'max_tokens' 0 (scoring the prompt) needs 'echo'");
    return 0;
}

// The largest divisor of n that is at most cap: LLaDA's blocks must tile the generation.
static int block_for(int n, int cap) {
    for (int b = cap < n ? cap : n; b > 1; b--)
        if (n % b == 0) return b;
    return 1;
}

static int parse_sampling(const JsonValue *root, const ServeLimits *limits, ServeRequest *r,
                          RequestError *e) {
    SamplerConfig *sc = &r->sc;
    static const char *const diffusion_only[] = {"steps", "block_length", "remasking",
                                                 "threshold", "cache", "cfg", "stream_steps"};
    if (!limits->diffusion)
        for (int i = 0; i < 7; i++) {
            const JsonValue *v = json_member(root, diffusion_only[i]);
            if (v && v->type != JSON_NULL)
                return fail(e, 400, diffusion_only[i],
                            "'%s' applies to diffusion models; this one is autoregressive",
                            diffusion_only[i]);
        }
    static const char *const remasking[] = {"low_confidence", "random"};
    static const char *const caches[] = {"none", "prefix", "dual", "auto"};
    int remask = sc->remasking, cache = sc->cache, seed = -1;
    sc->block_length = 0, sc->steps = 0;
    if (get_float(root, "temperature", 0.0, 2.0, &sc->temperature, e) ||
        get_float(root, "top_p", 1e-6, 1.0, &sc->top_p, e) ||
        get_int(root, "seed", -1, 2147483647, &seed, e) ||
        get_int(root, "steps", 1, 1 << 20, &sc->steps, e) ||
        get_int(root, "block_length", 1, 1 << 20, &sc->block_length, e) ||
        get_choice(root, "remasking", remasking, 2, &remask, e) ||
        get_float(root, "threshold", 0.0, 1.0, &sc->threshold, e) ||
        get_choice(root, "cache", caches, 4, &cache, e) ||
        get_float(root, "cfg", 0.0, 100.0, &sc->cfg_scale, e))
        return -1;
    if (limits->diffusion && sc->top_p < 1.0f)
        return fail(e, 400, "top_p", "'top_p' applies to autoregressive models");
    sc->remasking = (Remasking)remask;
    sc->cache = (CacheMode)cache;
    if (seed >= 0) sc->seed = (uint64_t)seed, r->seeded = 1;
    sc->gen_length = r->max_tokens;
    if (limits->diffusion && !limits->block_size && r->max_tokens > 0) {
        if (!sc->block_length) sc->block_length = block_for(r->max_tokens, 32);
        if (r->max_tokens % sc->block_length)
            return fail(e, 400, "block_length", "'max_tokens' (%d) must be a multiple of "
                        "'block_length' (%d)", r->max_tokens, sc->block_length);
        if (!sc->steps) sc->steps = r->max_tokens;
        if (sc->steps % (r->max_tokens / sc->block_length))
            return fail(e, 400, "steps", "'steps' (%d) must be a multiple of the number of "
                        "blocks (%d)", sc->steps, r->max_tokens / sc->block_length);
    } else if (!sc->steps) {
        sc->steps = r->max_tokens;  // block diffusion: one token per pass unless told
    }
    return 0;
}

int request_parse(const char *body, int chat, const ServeLimits *limits, ServeRequest *r,
                  RequestError *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = 64;
    r->n = 1;
    r->sc = sampler_config_default();
    r->sc.temperature = 1.0f;  // OpenAI's default
    JsonValue root;
    Error err;
    if (json_parse(body, &root, &err))
        return fail(e, 400, NULL, "the body is not valid JSON: %s", err.msg);
    int rc = -1;
    const char *model = json_member_string(&root, "model");
    const JsonValue *mv = json_member(&root, "model");
    if (root.type != JSON_OBJECT) fail(e, 400, NULL, "the body must be a JSON object");
    else if (mv && mv->type != JSON_NULL && !model) fail(e, 400, "model", "'model' must be a string");
    else if (model && strcmp(model, limits->model_id) != 0)
        fail(e, 404, "model", "the model '%.60s' does not exist (this server has '%.60s')", model,
             limits->model_id);
    else if (chat ? parse_messages(&root, r, e) : parse_prompt(&root, r, e)) {
    } else if (get_max_tokens(&root, limits, r, e) || get_stream_options(&root, r, e) ||
               get_int(&root, "n", 1, limits->max_n, &r->n, e) ||
               get_bool(&root, "stream", &r->stream, e) ||
               get_bool(&root, "stream_steps", &r->stream_steps, e) || parse_stops(&root, r, e) ||
               refuse_unsupported(&root, e) || parse_logprobs(&root, chat, r, e) ||
               parse_sampling(&root, limits, r, e)) {
    } else if (request_rows(r) > limits->max_n) {
        fail(e, 400, "n", "%d prompts x n = %d completions: at most %d per request",
             r->n_prompts, request_rows(r), limits->max_n);
    } else {
        rc = 0;
    }
    json_free(&root);
    if (rc) request_free(r);
    return rc;
}

int request_rows(const ServeRequest *r) {
    return (r->chat ? 1 : r->n_prompts) * r->n;
}

void request_free(ServeRequest *r) {
    for (int i = 0; i < r->n_prompts; i++) free(r->prompts[i].text), free(r->prompts[i].ids);
    free(r->prompts);
    for (int i = 0; i < r->n_messages; i++) {
        free((char *)r->messages[i].role);
        free((char *)r->messages[i].content);
    }
    free(r->messages);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}

int request_check_length(const ServeRequest *r, int prompt_len, const ServeLimits *limits,
                         RequestError *e) {
    if (prompt_len + r->max_tokens > limits->context)
        return fail(e, 400, r->chat ? "messages" : "prompt",
                    "the prompt (%d tokens) + max_tokens (%d) exceed the model's context of %d "
                    "tokens", prompt_len, r->max_tokens, limits->context);
    return 0;
}

size_t request_cut_at_stop(const ServeRequest *r, const char *text, size_t len) {
    size_t cut = len;
    for (int i = 0; i < r->n_stops; i++) {
        const char *at = strstr(text, r->stops[i]);
        if (at && (size_t)(at - text) < cut) cut = (size_t)(at - text);
    }
    return cut;
}
