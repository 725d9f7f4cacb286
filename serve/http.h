// The HTTP side of `dllm serve` (libmicrohttpd, a thread per connection): routes, the API
// key, what a request must be before its body is read (a Host of this server, JSON, under
// 1 MiB), CORS, a deadline per request, JSON and Server-Sent Event responses, /metrics, the
// access log.
#ifndef DLLM_SERVE_HTTP_H
#define DLLM_SERVE_HTTP_H

#include <stdio.h>

#include "common/error.h"
#include "serve/engine.h"

typedef struct {
    const char *host;         // an IPv4 address to listen on ("127.0.0.1": loopback only)
    int port;                 // 0: any free port
    const char *api_key;      // NULL: no key needed
    int max_connections;
    int idle_timeout;         // seconds a connection may sit idle (a slow client) before closing
    double request_timeout;   // seconds a client has to deliver a whole request (headers and
                              // body), from connecting or from its previous reply
    const char *allowed_hosts;  // comma-separated names the Host header may carry besides
                                // localhost, loopback addresses and --host (NULL: none)
    const char *cors;         // an origin (or "*") allowed to call from a browser (NULL: none)
    FILE *access_log;         // JSON lines, one per request
} HttpConfig;

typedef struct HttpServer HttpServer;

// Starts listening; *port receives the bound port.
HttpServer *http_start(const HttpConfig *cfg, Engine *engine, const ServeLimits *limits,
                       int *port, Error *err);
void http_stop(HttpServer *s);

#endif
