// Load on a running `dllm serve` (not a test): C concurrent clients, each sending streaming
// completions back to back for a fixed time; prints requests/s, tokens/s, latency (p50, p99)
// and time to the first streamed bytes of the served requests, and how many were refused
// (503: the queue was full). Usage:
//     serve_load --port P [--clients C] [--seconds S] [--max-tokens N] [--extra JSON]
// (--extra: more fields for every request body, e.g. '"steps": 16').
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "common/progress.h"
#include "tests/http_client.h"

typedef struct {
    int port, max_tokens;
    const char *extra;
    double until;
    int served, refused, failed;
    double latencies[4096], firsts[4096];
} Client;

static void *client_main(void *arg) {
    Client *c = arg;
    char body[1024];
    snprintf(body, sizeof body, "{\"prompt\": \"And God said,\", \"max_tokens\": %d, "
             "\"stream\": true%s%s}", c->max_tokens, c->extra[0] ? ", " : "", c->extra);
    while (now_seconds() < c->until) {
        double t0 = now_seconds();
        HttpReply r = http_request(c->port, "POST", "/v1/completions", NULL, body);
        double t = now_seconds() - t0;
        if (r.status == 200 && strstr(r.body, "data: [DONE]") && c->served < 4096) {
            c->latencies[c->served] = t;
            c->firsts[c->served++] = r.first_byte;
        } else if (r.status == 503) {
            c->refused++;
        } else {
            c->failed++;
        }
        free(r.head);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, int n, double p) {
    if (n == 0) return 0.0;
    qsort(v, (size_t)n, sizeof *v, by_value);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv) {
    int port = 0, clients = 8, max_tokens = 32;
    float seconds = 10.0f;
    const char *extra = "";
    Flag flags[] = {
        {"port", FLAG_INT, &port, "the server's port (required)", FLAG_FREE, 0},
        {"clients", FLAG_INT, &clients, "concurrent clients", FLAG_FREE, 0},
        {"seconds", FLAG_FLOAT, &seconds, "how long they send", FLAG_FREE, 0},
        {"max-tokens", FLAG_INT, &max_tokens, "tokens per request", FLAG_FREE, 0},
        {"extra", FLAG_STRING, &extra, "more JSON fields for every request", FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, sizeof flags / sizeof flags[0], argc - 1, argv + 1,
                                 "usage: serve_load --port P [flags]");
    if (rc) return rc < 0;
    if (port <= 0 || clients < 1 || clients > 256 || !(seconds > 0.0f))
        return cli_fail("serve_load: --port, --clients in [1, 256] and --seconds > 0");
    Client *cs = calloc((size_t)clients, sizeof *cs);
    pthread_t *threads = malloc((size_t)clients * sizeof *threads);
    double t0 = now_seconds();
    for (int i = 0; i < clients; i++) {
        cs[i] = (Client){.port = port, .max_tokens = max_tokens, .extra = extra,
                         .until = t0 + seconds};
        pthread_create(&threads[i], NULL, client_main, &cs[i]);
    }
    int served = 0, refused = 0, failed = 0;
    for (int i = 0; i < clients; i++) pthread_join(threads[i], NULL);
    double wall = now_seconds() - t0;
    double *lat = malloc(4096 * (size_t)clients * sizeof(double));
    double *first = malloc(4096 * (size_t)clients * sizeof(double));
    for (int i = 0; i < clients; i++) {
        memcpy(lat + served, cs[i].latencies, (size_t)cs[i].served * sizeof(double));
        memcpy(first + served, cs[i].firsts, (size_t)cs[i].served * sizeof(double));
        served += cs[i].served, refused += cs[i].refused, failed += cs[i].failed;
    }
    printf("| clients | served | refused (503) | failed | requests/s | tokens/s | latency p50 (s) "
           "| latency p99 (s) | first bytes p50 (s) |\n|---|---|---|---|---|---|---|---|---|\n");
    printf("| %d | %d | %d | %d | %.2f | %.0f | %.3f | %.3f | %.3f |\n", clients, served, refused,
           failed, served / wall, (double)served * max_tokens / wall,
           percentile(lat, served, 0.5), percentile(lat, served, 0.99),
           percentile(first, served, 0.5));
    free(cs), free(threads), free(lat), free(first);
    return failed != 0;
}
