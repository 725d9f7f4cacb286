// A minimal HTTP/1.0 client for loopback (the server closes the connection after its reply,
// so no chunked bodies): what tests/test_serve.c and bench/serve_load.c speak to dllm serve.
#ifndef DLLM_HTTP_CLIENT_H
#define DLLM_HTTP_CLIENT_H

typedef struct {
    int status;         // 0: no reply
    char *head;         // malloc'd status line and headers (free this)
    char *body;         // within head's allocation
    double first_byte;  // seconds from sending to the reply's first bytes
} HttpReply;

// A connected socket to 127.0.0.1:port, or -1.
int http_connect(int port);
// Sends one request (extra_headers: "Name: value\r\n" lines, or NULL) and reads the reply.
HttpReply http_request(int port, const char *method, const char *path, const char *extra_headers,
                       const char *body);

#endif
