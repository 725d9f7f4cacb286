#define _GNU_SOURCE  // strcasestr
#include "tests/http_client.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/progress.h"

int http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

// Writes all n bytes (no SIGPIPE when the server has already answered and closed); 0 or -1.
static int write_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        s += w, n -= (size_t)w;
    }
    return 0;
}

HttpReply http_request(int port, const char *method, const char *path, const char *extra_headers,
                       const char *body) {
    HttpReply r = {0, NULL, "", 0.0};
    int fd = http_connect(port);
    if (fd < 0) return r;
    char head[4096];
    const char *extra = extra_headers ? extra_headers : "";
    // a body is JSON unless the caller says otherwise
    const char *type =
        body && !strcasestr(extra, "Content-Type:") ? "Content-Type: application/json\r\n" : "";
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n%s%sContent-Length: %zu\r\n\r\n",
                     method, path, port, type, extra, body ? strlen(body) : 0);
    double t0 = now_seconds();
    size_t cap = 1 << 16, len = 0;
    char *all = malloc(cap);
    // the server may answer before the body is all sent (413, 415): read its reply anyway
    if (all && write_all(fd, head, (size_t)n) == 0) {
        if (body) write_all(fd, body, strlen(body));
        ssize_t got;
        while ((got = read(fd, all + len, cap - len - 1)) > 0) {
            if (len == 0) r.first_byte = now_seconds() - t0;
            len += (size_t)got;
            if (len + 1 == cap) {
                char *bigger = realloc(all, cap *= 2);
                if (!bigger) break;
                all = bigger;
            }
        }
    }
    close(fd);
    if (!all) return r;
    all[len] = '\0';
    r.head = all;
    sscanf(all, "HTTP/1.%*d %d", &r.status);
    char *split = strstr(all, "\r\n\r\n");
    if (split) *split = '\0', r.body = split + 4;
    return r;
}
