// The HTTP side of `dllm serve` (libmicrohttpd, a thread per connection): routes, the API
// key, body limits, JSON and Server-Sent Event responses, the access log.
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
    FILE *access_log;         // JSON lines, one per request
} HttpConfig;

typedef struct HttpServer HttpServer;

// Starts listening; *port receives the bound port.
HttpServer *http_start(const HttpConfig *cfg, Engine *engine, const ServeLimits *limits,
                       int *port, Error *err);
void http_stop(HttpServer *s);

#endif
