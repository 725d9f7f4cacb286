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
#include <time.h>

#include "common/progress.h"
#include "serve/page.h"
#include "serve/response.h"

enum { BODY_MAX = 1 << 20 };  // a request body larger than this is refused (413)

struct HttpServer {
    HttpConfig cfg;
    Engine *engine;
    ServeLimits limits;
    struct MHD_Daemon *daemon;
    pthread_mutex_t log_lock;
    long started;
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

static void access_log(HttpServer *s, const char *method, const char *url, int status,
                       const JobSummary *js, double seconds) {
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

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type,
                                 const char *text, size_t len, int retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

// A JSON body built in t (freed here) with its status, logged; a 503 says when to retry.
static enum MHD_Result send_json(Request *q, const char *method, const char *url, int status,
                                 Text *t) {
    enum MHD_Result rc = send_text(q->connection, status, "application/json", t->s ? t->s : "",
                                   t->len, status == 503);
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
    enum MHD_Result rc = send_text(q->connection, status, "application/json",
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

static enum MHD_Result route(Request *q, const char *method, const char *url) {
    HttpServer *s = q->s;
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (get && strcmp(url, "/") == 0) {
        access_log(s, method, url, 200, NULL, now_seconds() - q->t0);
        return send_text(q->connection, 200, "text/html; charset=utf-8", serve_page,
                         strlen(serve_page), 0);
    }
    // the page is static and holds nothing; everything else needs the key when there is one
    if (!authorized(s, q->connection))
        return reply_error(q, method, url, 401, NULL, "a valid API key is required "
                           "(Authorization: Bearer KEY)");
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
    int completions = strcmp(url, "/v1/completions") == 0,
        chat = strcmp(url, "/v1/chat/completions") == 0;
    if ((completions || chat) && !post)
        return reply_error(q, method, url, 405, NULL, "use POST");
    if (completions || chat) {
        if (q->too_large)
            return reply_error(q, method, url, 413, NULL, "the request body is over 1 MiB");
        return generate(q, url, chat);
    }
    return reply_error(q, method, url, 404, NULL, "no such endpoint");
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
        return MHD_YES;
    }
    if (*upload_size) {  // a piece of the body
        if (q->body.len + *upload_size > BODY_MAX) q->too_large = 1;
        else text_append(&q->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return route(q, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    Request *q = *state;
    if (!q) return;
    text_free(&q->body);
    free(q);
    *state = NULL;
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
    pthread_mutex_init(&s->log_lock, NULL);
    s->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!s->daemon) {
        error_set(err, "cannot listen on %s:%d (in use, or not an address of this machine)",
                  cfg->host, cfg->port);
        pthread_mutex_destroy(&s->log_lock);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : cfg->port;
    return s;
}

void http_stop(HttpServer *s) {
    MHD_stop_daemon(s->daemon);
    pthread_mutex_destroy(&s->log_lock);
    free(s);
}
