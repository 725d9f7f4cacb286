#define _GNU_SOURCE  // POLLRDHUP: the peer closed its end
// libmicrohttpd was chosen over civetweb: a C library with one request callback, a thread per
// connection (so a handler may wait on the engine), chunked streaming from a callback, and
// connection limits and idle timeouts as options; Debian packages it (libmicrohttpd-dev).
#include "serve/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/progress.h"
#include "serve/page.h"
#include "serve/response.h"

enum { BODY_MAX = 1 << 20 };  // a request body larger than this is refused (413)

// An open connection and whether it is still delivering a request: one whose request takes
// longer than request_timeout (a client sending a byte a second holds a thread and a
// connection otherwise) has its socket shut down by the watchdog.
typedef struct {
    int used, fd;
    int receiving;  // 1 from connecting (or its previous reply) until its request is complete
    double since;
} Slot;

// What /metrics counts (log_lock held).
typedef struct {
    long responses[6];  // by status class: 1xx .. 5xx (index 1..5), and 0 for none
    long prompt_tokens, completion_tokens, passes, deadlines;
} Counters;

struct HttpServer {
    HttpConfig cfg;
    Engine *engine;
    ServeLimits limits;
    struct MHD_Daemon *daemon;
    pthread_mutex_t log_lock;
    Counters counts;
    long started;
    Slot *slots;
    int n_slots;
    pthread_mutex_t slots_lock;
    pthread_t watchdog;
    int stopping;  // slots_lock held
};

// One request's state across libmicrohttpd's calls.
typedef struct {
    HttpServer *s;
    struct MHD_Connection *connection;
    Text body;
    int too_large;
    double t0;
    Job *job;                 // a streaming request's job, owned by the response
    const char *path;         // its endpoint, for the access log
} Request;

// Counts the response for /metrics and writes its access-log line.
static void access_log(HttpServer *s, const char *method, const char *url, int status,
                       const JobSummary *js, double seconds) {
    pthread_mutex_lock(&s->log_lock);
    s->counts.responses[status >= 100 && status < 600 ? status / 100 : 0]++;
    if (js) {
        s->counts.prompt_tokens += js->prompt_tokens;
        s->counts.completion_tokens += js->completion_tokens;
        s->counts.passes += js->passes;
    }
    pthread_mutex_unlock(&s->log_lock);
    if (!s->cfg.access_log) return;
    Text t = {0};
    text_printf(&t, "{\"time\": %ld, \"method\": ", (long)time(NULL));
    text_json_string(&t, method, strlen(method));
    text_printf(&t, ", \"path\": ");
    text_json_string(&t, url, strlen(url));
    text_printf(&t, ", \"status\": %d", status);
    if (js)
        text_printf(&t, ", \"id\": \"%s\", \"prompt_tokens\": %d, \"completion_tokens\": %d, "
                    "\"passes\": %d, \"batched\": %d, \"queued_s\": %.3f, \"run_s\": %.3f",
                    js->id, js->prompt_tokens, js->completion_tokens, js->passes, js->batched,
                    js->queued_s, js->run_s);
    text_printf(&t, ", \"seconds\": %.3f}\n", seconds);
    pthread_mutex_lock(&s->log_lock);
    if (t.s) fputs(t.s, s->cfg.access_log);
    fflush(s->cfg.access_log);
    pthread_mutex_unlock(&s->log_lock);
    text_free(&t);
}

// The headers every response carries: the origin a browser may read it from (--cors).
static void add_cors(const HttpServer *s, struct MHD_Response *r) {
    if (!s->cfg.cors) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cfg.cors);
    MHD_add_response_header(r, "Vary", "Origin");
}

static enum MHD_Result send_text(const HttpServer *s, struct MHD_Connection *c, int status,
                                 const char *type, const char *text, size_t len,
                                 int retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    add_cors(s, r);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

// A JSON body built in t (freed here) with its status, logged; a 503 says when to retry.
static enum MHD_Result send_json(Request *q, const char *method, const char *url, int status,
                                 Text *t) {
    enum MHD_Result rc = send_text(q->s, q->connection, status, "application/json",
                                   t->s ? t->s : "", t->len, status == 503);
    access_log(q->s, method, url, status, NULL, now_seconds() - q->t0);
    text_free(t);
    return rc;
}

static enum MHD_Result send_error(Request *q, const char *method, const char *url,
                                  const RequestError *e) {
    Text t = {0};
    response_error(&t, e);
    return send_json(q, method, url, e->status, &t);
}

static enum MHD_Result reply_error(Request *q, const char *method, const char *url, int status,
                                   const char *param, const char *message) {
    RequestError e = {.status = status};
    snprintf(e.message, sizeof e.message, "%s", message);
    snprintf(e.param, sizeof e.param, "%s", param ? param : "");
    return send_error(q, method, url, &e);
}

// 1 when the client has closed its end of the connection.
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info) return 0;
    struct pollfd p = {.fd = info->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return 1;
    char byte;  // readable: more data (a pipelined request) or the end of the stream
    return recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

// The stream of a job, read by libmicrohttpd a piece at a time (never 0 bytes: with a thread
// per connection that would spin).
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Request *q = cls;
    for (;;) {
        long n = engine_read_stream(q->s->engine, q->job, buf, max, 0.2);
        if (n > 0) return n;
        if (n < 0) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(q->connection)) {
            engine_cancel(q->s->engine, q->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void free_stream(void *cls) {
    Request *q = cls;
    JobSummary js;
    engine_cancel(q->s->engine, q->job);  // a no-op when it has finished
    while (!engine_wait(q->s->engine, q->job, 0.2)) {  // it stops at its next step
    }
    engine_summary(q->s->engine, q->job, &js);
    access_log(q->s, "POST", q->path, js.status, &js, now_seconds() - q->t0);
    engine_release(q->s->engine, q->job);
    text_free(&q->body);
    free(q);
}

static enum MHD_Result generate(Request *q, const char *url, int chat) {
    HttpServer *s = q->s;
    ServeRequest req;
    RequestError e = {0};
    if (request_parse(q->body.s ? q->body.s : "", chat, &s->limits, &req, &e))
        return send_error(q, "POST", url, &e);
    int stream = req.stream;
    Job *job = engine_submit(s->engine, &req, &e);
    if (!job) return send_error(q, "POST", url, &e);
    if (stream) {
        Request *owned = malloc(sizeof *owned);
        if (!owned) {
            engine_cancel(s->engine, job);
            engine_release(s->engine, job);
            return MHD_NO;
        }
        *owned = *q;
        owned->job = job;
        owned->path = chat ? "/v1/chat/completions" : "/v1/completions";
        memset(&q->body, 0, sizeof q->body);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, owned,
                                              free_stream);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        add_cors(s, r);
        enum MHD_Result rc = MHD_queue_response(q->connection, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return rc;
    }
    while (!engine_wait(s->engine, job, 0.2))
        if (client_gone(q->connection)) engine_cancel(s->engine, job);
    Text body = {0};
    int status = engine_response(s->engine, job, &body);
    JobSummary js;
    engine_summary(s->engine, job, &js);
    engine_release(s->engine, job);
    enum MHD_Result rc = send_text(s, q->connection, status, "application/json",
                                   body.s ? body.s : "", body.len, 0);
    access_log(s, "POST", url, status, &js, now_seconds() - q->t0);
    text_free(&body);
    return rc;
}

// The API key, when the server has one: "Authorization: Bearer KEY".
static int authorized(HttpServer *s, struct MHD_Connection *c) {
    if (!s->cfg.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return h && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, s->cfg.api_key) == 0;
}

// Is name (a Host header without its port) one in the comma-separated list?
static int in_list(const char *list, const char *name, size_t len) {
    for (const char *p = list; p && *p;) {
        size_t k = strcspn(p, ",");
        if (k == len && strncasecmp(p, name, len) == 0) return 1;
        p += k + (p[k] == ',');
    }
    return 0;
}

// The Host header must name this server: localhost, a loopback address, --host or one of
// --allow-hosts (a page of another site whose name resolves here, DNS rebinding, must not
// reach the API). A server on 0.0.0.0 without --allow-hosts takes any name. No Host header
// (HTTP/1.0) is accepted: browsers always send one.
static int host_allowed(const HttpServer *s, const char *host) {
    if (!host) return 1;
    if (strcmp(s->cfg.host, "0.0.0.0") == 0 && !s->cfg.allowed_hosts) return 1;
    size_t len = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":");
    if (len > strlen(host)) len = strlen(host);
    static const char loopback[] = "localhost,127.0.0.1,[::1]";
    return in_list(loopback, host, len) || in_list(s->cfg.host, host, len) ||
           in_list(s->cfg.allowed_hosts, host, len) ||
           (len > 4 && strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") >= len);
}

// A POST body must be JSON: a page of another origin can send text/plain or a form without
// asking (a "simple" request); application/json makes the browser ask first (CORS).
static int json_body(struct MHD_Connection *c) {
    const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t k = strlen("application/json");
    return type && strncasecmp(type, "application/json", k) == 0 &&
           (type[k] == '\0' || type[k] == ';' || type[k] == ' ');
}

// The browser's question before a cross-origin POST (CORS preflight): answered only with --cors.
static enum MHD_Result preflight(Request *q, const char *url) {
    if (!q->s->cfg.cors)
        return reply_error(q, "OPTIONS", url, 405, NULL, "cross-origin requests are not "
                           "enabled (start the server with --cors ORIGIN)");
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    add_cors(q->s, r);
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    enum MHD_Result rc = MHD_queue_response(q->connection, 204, r);
    MHD_destroy_response(r);
    access_log(q->s, "OPTIONS", url, 204, NULL, now_seconds() - q->t0);
    return rc;
}

// What a request must be before its body is read: for this server, authorised, JSON and
// small enough. 0 to go on, else the refusal was queued (its result in *rc).
static int refuse_early(Request *q, const char *method, const char *url, enum MHD_Result *rc) {
    struct MHD_Connection *c = q->connection;
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    int page = strcmp(url, "/") == 0 || strcmp(url, "/health") == 0;
    char msg[200];
    int status = 0;
    if (!host_allowed(q->s, host)) {
        status = 403;
        snprintf(msg, sizeof msg, "the Host '%.60s' is not this server's (--allow-hosts names "
                 "others)", host);
    } else if (strcmp(method, "OPTIONS") == 0) {
        *rc = preflight(q, url);
        return 1;
    } else if (!page && !authorized(q->s, c)) {
        status = 401;
        snprintf(msg, sizeof msg, "a valid API key is required (Authorization: Bearer KEY)");
    } else if (strcmp(method, "POST") == 0 && !json_body(c)) {
        status = 415;
        snprintf(msg, sizeof msg, "the body must be JSON (Content-Type: application/json)");
    } else if (length && strtoull(length, NULL, 10) > BODY_MAX) {
        status = 413;
        snprintf(msg, sizeof msg, "the request body is over 1 MiB");
    }
    if (!status) return 0;
    *rc = reply_error(q, method, url, status, NULL, msg);
    return 1;
}

// /metrics: Prometheus' text format.
static enum MHD_Result metrics(Request *q, const char *url) {
    HttpServer *s = q->s;
    pthread_mutex_lock(&s->log_lock);
    Counters n = s->counts;
    pthread_mutex_unlock(&s->log_lock);
    Text t = {0};
    text_printf(&t, "# HELP dllm_responses_total HTTP responses sent, by status class.\n"
                    "# TYPE dllm_responses_total counter\n");
    for (int k = 1; k <= 5; k++)
        text_printf(&t, "dllm_responses_total{status=\"%dxx\"} %ld\n", k, n.responses[k]);
    text_printf(&t, "# HELP dllm_prompt_tokens_total Prompt tokens of finished requests.\n"
                    "# TYPE dllm_prompt_tokens_total counter\ndllm_prompt_tokens_total %ld\n"
                    "# HELP dllm_completion_tokens_total Tokens generated.\n"
                    "# TYPE dllm_completion_tokens_total counter\n"
                    "dllm_completion_tokens_total %ld\n"
                    "# HELP dllm_forward_passes_total Forward passes run for requests.\n"
                    "# TYPE dllm_forward_passes_total counter\ndllm_forward_passes_total %ld\n"
                    "# HELP dllm_request_deadlines_total Connections closed for taking too long "
                    "to send a request.\n# TYPE dllm_request_deadlines_total counter\n"
                    "dllm_request_deadlines_total %ld\n"
                    "# HELP dllm_requests_queued Requests waiting for the model.\n"
                    "# TYPE dllm_requests_queued gauge\ndllm_requests_queued %d\n"
                    "# HELP dllm_uptime_seconds Seconds since the server started.\n"
                    "# TYPE dllm_uptime_seconds gauge\ndllm_uptime_seconds %ld\n",
                n.prompt_tokens, n.completion_tokens, n.passes, n.deadlines,
                engine_queued(s->engine), (long)time(NULL) - s->started);
    enum MHD_Result rc = send_text(s, q->connection, 200, "text/plain; version=0.0.4",
                                   t.s ? t.s : "", t.len, 0);
    access_log(s, "GET", url, 200, NULL, now_seconds() - q->t0);
    text_free(&t);
    return rc;
}

// /tokenize {"content": TEXT} -> {"tokens": [...]}; /detokenize {"tokens": [...]} ->
// {"content": TEXT}: the served model's tokenizer, as llama.cpp's server offers it.
static enum MHD_Result tokenize(Request *q, const char *url, int encode) {
    const Tokenizer *tok = engine_tokenizer(q->s->engine);
    JsonValue root;
    Error err;
    if (json_parse(q->body.s ? q->body.s : "", &root, &err)) {
        char msg[300];
        snprintf(msg, sizeof msg, "the body is not valid JSON: %.200s", err.msg);
        return reply_error(q, "POST", url, 400, NULL, msg);
    }
    const JsonValue *v = json_member(&root, encode ? "content" : "tokens");
    if (encode && !v) v = json_member(&root, "prompt");  // vLLM's name (lm-evaluation-harness)
    Text t = {0};
    int status = 400;
    const char *problem = NULL;
    if (encode && (!v || v->type != JSON_STRING || strlen(v->string) != v->len)) {
        problem = "'content' must be a string";
    } else if (encode) {
        int *ids;
        size_t n;
        if (tokenizer_encode_special(tok, v->string, v->len, &ids, &n, &err) == 0) {
            text_printf(&t, "{\"tokens\": [");
            for (size_t i = 0; i < n; i++) text_printf(&t, "%s%d", i ? ", " : "", ids[i]);
            text_printf(&t, "]}");
            free(ids);
            status = 200;
        } else {
            problem = err.msg;
        }
    } else if (!v || v->type != JSON_ARRAY) {
        problem = "'tokens' must be an array of token ids";
    } else {
        int *ids = malloc((size_t)(v->n ? v->n : 1) * sizeof(int));
        for (int i = 0; ids && i < v->n && !problem; i++) {
            const JsonValue *x = &v->items[i];
            if (x->type != JSON_NUMBER || x->number != (int)x->number || x->number < 0 ||
                x->number >= tok->vocab_size)
                problem = "'tokens' must hold ids of the model's tokenizer";
            else
                ids[i] = (int)x->number;
        }
        char *text = NULL;
        if (!ids) problem = "out of memory";
        if (!problem && tokenizer_decode(tok, ids, (size_t)v->n, &text, &err) == 0) {
            text_printf(&t, "{\"content\": ");  // llama.cpp's name, and vLLM's
            text_json_string(&t, text, strlen(text));
            text_printf(&t, ", \"prompt\": ");
            text_json_string(&t, text, strlen(text));
            text_printf(&t, "}");
            status = 200;
        } else if (!problem) {
            problem = err.msg;
        }
        free(text);
        free(ids);
    }
    json_free(&root);
    if (status != 200) {
        text_free(&t);
        return reply_error(q, "POST", url, status, encode ? "content" : "tokens", problem);
    }
    return send_json(q, "POST", url, 200, &t);
}

// /tokenizer_info: the special tokens' texts and the context (what lm-evaluation-harness's
// remote tokenizer reads; the token texts encode back to their ids through /tokenize).
static enum MHD_Result tokenizer_info(Request *q, const char *url) {
    const Tokenizer *tok = engine_tokenizer(q->s->engine);
    const int ids[3] = {tok->eos_id, tok->bos_id, tok->pad_id};
    static const char *const names[3] = {"eos_token", "bos_token", "pad_token"};
    char piece[TOKENIZER_PIECE_MAX];
    Text t = {0};
    text_printf(&t, "{\"tokenizer_class\": \"%s\", \"model_max_length\": %d",
                tokenizer_kind_name(tok), q->s->limits.context);
    for (int i = 0; i < 3; i++) {
        text_printf(&t, ", \"%s\": ", names[i]);
        if (ids[i] < 0) {
            text_printf(&t, "null");
            continue;
        }
        size_t len;
        const char *s = tokenizer_piece_len(tok, ids[i], piece, &len);
        text_json_string(&t, s, len);
    }
    text_printf(&t, "}");
    return send_json(q, "GET", url, 200, &t);
}

static enum MHD_Result route(Request *q, const char *method, const char *url) {
    HttpServer *s = q->s;
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (get && strcmp(url, "/") == 0) {
        access_log(s, method, url, 200, NULL, now_seconds() - q->t0);
        return send_text(s, q->connection, 200, "text/html; charset=utf-8", serve_page,
                         strlen(serve_page), 0);
    }
    if (get && strcmp(url, "/health") == 0) {
        Text t = {0};
        text_printf(&t, "{\"status\": \"ok\", \"model\": ");
        text_json_string(&t, s->limits.model_id, strlen(s->limits.model_id));
        text_printf(&t, ", \"diffusion\": %s, \"block_size\": %d, \"context\": %d}",
                    s->limits.diffusion ? "true" : "false", s->limits.block_size,
                    s->limits.context);
        return send_json(q, method, url, 200, &t);
    }
    if (get && strcmp(url, "/v1/models") == 0) {
        Text t = {0};
        response_models(&t, s->limits.model_id, s->started);
        return send_json(q, method, url, 200, &t);
    }
    if (get && strcmp(url, "/metrics") == 0) return metrics(q, url);
    if (get && strcmp(url, "/tokenizer_info") == 0) return tokenizer_info(q, url);
    int completions = strcmp(url, "/v1/completions") == 0,
        chat = strcmp(url, "/v1/chat/completions") == 0,
        encode = strcmp(url, "/tokenize") == 0, decode = strcmp(url, "/detokenize") == 0;
    if ((completions || chat || encode || decode) && !post)
        return reply_error(q, method, url, 405, NULL, "use POST");
    if (q->too_large)
        return reply_error(q, method, url, 413, NULL, "the request body is over 1 MiB");
    if (completions || chat) return generate(q, url, chat);
    if (encode || decode) return tokenize(q, url, encode);
    return reply_error(q, method, url, 404, NULL, "no such endpoint");
}

// The connection's slot (MHD_OPTION_NOTIFY_CONNECTION put it in the socket context).
static Slot *slot_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

// Marks the connection as delivering a request (1, from now) or done delivering it (0).
static void set_receiving(HttpServer *s, struct MHD_Connection *c, int receiving) {
    Slot *slot = slot_of(c);
    if (!slot) return;
    pthread_mutex_lock(&s->slots_lock);
    slot->receiving = receiving;
    slot->since = now_seconds();
    pthread_mutex_unlock(&s->slots_lock);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state) {
    (void)version;
    HttpServer *s = cls;
    Request *q = *state;
    if (!q) {  // the first call: headers only
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        q->s = s, q->connection = c, q->t0 = now_seconds();
        *state = q;
        enum MHD_Result rc;
        return refuse_early(q, method, url, &rc) ? rc : MHD_YES;
    }
    if (*upload_size) {  // a piece of the body
        if (q->body.len + *upload_size > BODY_MAX) q->too_large = 1;
        else text_append(&q->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    set_receiving(s, c, 0);  // the request is all here: answering may take long
    return route(q, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why) {
    (void)why;
    set_receiving(cls, c, 1);  // a kept-alive connection's next request starts its clock now
    Request *q = *state;
    if (!q) return;
    text_free(&q->body);
    free(q);
    *state = NULL;
}

// A slot for each connection while it is open.
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    HttpServer *s = cls;
    pthread_mutex_lock(&s->slots_lock);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        for (int i = 0; info && i < s->n_slots; i++)
            if (!s->slots[i].used) {
                s->slots[i] = (Slot){1, info->connect_fd, 1, now_seconds()};
                *socket_context = &s->slots[i];
                break;
            }
    } else if (*socket_context) {  // closed: before libmicrohttpd closes the socket
        ((Slot *)*socket_context)->used = 0;
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&s->slots_lock);
}

// Shuts down the sockets of connections that took longer than request_timeout to deliver a
// request (their threads then see the end of the stream and close them).
static void *watch_deadlines(void *arg) {
    HttpServer *s = arg;
    pthread_mutex_lock(&s->slots_lock);
    while (!s->stopping) {
        double now = now_seconds();
        for (int i = 0; i < s->n_slots; i++) {
            Slot *slot = &s->slots[i];
            if (slot->used && slot->receiving && now - slot->since > s->cfg.request_timeout) {
                shutdown(slot->fd, SHUT_RDWR);
                slot->receiving = 0;
                pthread_mutex_lock(&s->log_lock);
                s->counts.deadlines++;
                pthread_mutex_unlock(&s->log_lock);
            }
        }
        pthread_mutex_unlock(&s->slots_lock);
        usleep(100 * 1000);
        pthread_mutex_lock(&s->slots_lock);
    }
    pthread_mutex_unlock(&s->slots_lock);
    return NULL;
}

HttpServer *http_start(const HttpConfig *cfg, Engine *engine, const ServeLimits *limits,
                       int *port, Error *err) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) {
        error_set(err, "--host '%s' is not an IPv4 address", cfg->host);
        return NULL;
    }
    HttpServer *s = calloc(1, sizeof *s);
    if (!s) return error_set(err, "out of memory"), NULL;
    s->cfg = *cfg, s->engine = engine, s->limits = *limits, s->started = (long)time(NULL);
    s->n_slots = cfg->max_connections + 8;  // libmicrohttpd may hold a few over its limit
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    pthread_mutex_init(&s->log_lock, NULL);
    pthread_mutex_init(&s->slots_lock, NULL);
    if (!s->slots || pthread_create(&s->watchdog, NULL, watch_deadlines, s) != 0) {
        free(s->slots);
        free(s);
        return error_set(err, "out of memory"), NULL;
    }
    s->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    if (!s->daemon) {
        error_set(err, "cannot listen on %s:%d (in use, or not an address of this machine)",
                  cfg->host, cfg->port);
        http_stop(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : cfg->port;
    return s;
}

void http_stop(HttpServer *s) {
    pthread_mutex_lock(&s->slots_lock);
    s->stopping = 1;
    pthread_mutex_unlock(&s->slots_lock);
    pthread_join(s->watchdog, NULL);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    pthread_mutex_destroy(&s->log_lock);
    pthread_mutex_destroy(&s->slots_lock);
    free(s->slots);
    free(s);
}
