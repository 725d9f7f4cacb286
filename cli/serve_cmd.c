// dllm serve: a model behind a local OpenAI-compatible HTTP API (serve/: request parsing, the
// generation engine, the HTTP side and the page), until SIGINT or SIGTERM.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "kernels/backend.h"
#include "serve/engine.h"
#include "serve/http.h"
#include "store/model_source.h"

// The model's name for clients: the last part of its path.
static const char *model_name(const char *path, char *buf, size_t size) {
    snprintf(buf, size, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    const char *slash = strrchr(buf, '/');
    return slash && slash[1] ? slash + 1 : buf;
}

// The API key: the first line of path, without its line end; an empty key is refused.
static int read_key(const char *path, char *key, size_t size, Error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    int got = fgets(key, (int)size, f) != NULL;
    fclose(f);
    if (got) key[strcspn(key, "\r\n")] = '\0';
    if (!got || !key[0]) return error_set(err, "%s: no API key on its first line", path);
    return 0;
}

// Waits for SIGINT or SIGTERM (blocked in every thread, so they arrive here).
static void wait_for_signal(const sigset_t *signals) {
    int sig;
    sigwait(signals, &sig);
    fprintf(stderr, "dllm serve: signal %d, shutting down\n", sig);
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *api_key = NULL, *key_file = NULL,
               *device = "auto", *name = NULL, *log_path = NULL, *allow_hosts = NULL,
               *cors = NULL, *weights = "auto";
    int port = 8080, queue = 16, max_n = 4, batch = 8, chat = -1, max_connections = 64, idle = 30;
    float time_limit = 300.0f, batch_wait = 0.0f, request_timeout = 10.0f;
    Flag flags[] = {
        {"model", FLAG_STRING, &model_path,
         "a run directory, a .ckpt file or a Hugging Face model directory (required)",
         FLAG_FREE, 0},
        {"host", FLAG_STRING, &host, "IPv4 address to listen on (127.0.0.1: this machine only)",
         FLAG_FREE, 0},
        {"port", FLAG_INT, &port, "TCP port (0: any free one; the bound port is printed)",
         FLAG_FREE, 0},
        {"api-key", FLAG_STRING, &api_key,
         "require 'Authorization: Bearer KEY' on every endpoint but the page and /health "
         "(visible to other users in ps: prefer --api-key-file or DLLM_API_KEY)", FLAG_FREE, 0},
        {"api-key-file", FLAG_STRING, &key_file,
         "the API key from this file's first line (default: the DLLM_API_KEY environment "
         "variable, if set)", FLAG_FREE, 0},
        {"name", FLAG_STRING, &name, "the model's id for clients (default: the path's last part)",
         FLAG_FREE, 0},
        {"device", FLAG_STRING, &device, "auto, cpu, cuda or cuda-fp32", FLAG_FREE, 0},
        {"weights", FLAG_STRING, &weights, WEIGHTS_FLAG_HELP, FLAG_FREE, 0},
        {"queue", FLAG_INT, &queue, "requests waiting beyond the running one (then 503)",
         FLAG_FREE, 0},
        {"max-n", FLAG_INT, &max_n, "most completions per request", FLAG_FREE, 0},
        {"batch", FLAG_INT, &batch,
         "rows per forward pass: compatible queued requests share one (the model's batch room)",
         FLAG_FREE, 0},
        {"timeout", FLAG_FLOAT, &time_limit, "seconds of generation per request (then 504)",
         FLAG_FREE, 0},
        {"batch-wait", FLAG_FLOAT, &batch_wait,
         "seconds to wait for more requests before starting a batch (0: start at once)",
         FLAG_FREE, 0},
        {"connections", FLAG_INT, &max_connections, "open connections at most", FLAG_FREE, 0},
        {"idle", FLAG_INT, &idle, "seconds a connection may stay silent (a slow client)",
         FLAG_FREE, 0},
        {"request-timeout", FLAG_FLOAT, &request_timeout,
         "seconds a client has to send a whole request, from connecting or from its previous "
         "reply (then the connection is closed)", FLAG_FREE, 0},
        {"allow-hosts", FLAG_STRING, &allow_hosts,
         "comma-separated host names the Host header may carry besides localhost, loopback "
         "addresses and --host (others get 403: DNS rebinding)", FLAG_FREE, 0},
        {"cors", FLAG_STRING, &cors,
         "an origin (e.g. http://localhost:3000, or *) whose pages may call the API from a "
         "browser (default: none)", FLAG_FREE, 0},
        {"chat", FLAG_INT, &chat,
         "1: /v1/completions prompts in the chat layout too (default: 1 for fine-tuned models)",
         FLAG_FREE, 0},
        {"log", FLAG_STRING, &log_path, "access log, JSON lines (default: standard error)",
         FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, sizeof flags / sizeof flags[0], argc, argv,
                                 "usage: dllm serve --model RUN [--port P] [flags]");
    if (rc) return rc < 0;
    if (!model_path) return cli_fail("serve: --model is required (see --help)");
    if (port < 0 || port > 65535) return cli_fail("serve: --port must be in [0, 65535]");
    if (queue < 0 || max_n < 1 || max_n > REQUEST_MAX_N || batch < max_n ||
        !(time_limit > 0.0f) || !(batch_wait >= 0.0f) || max_connections < 1 || idle < 1 ||
        !(request_timeout > 0.0f))
        return cli_fail("serve: --queue >= 0, --max-n in [1, 16], --batch >= --max-n, "
                        "--timeout > 0, --connections >= 1, --idle >= 1 and "
                        "--request-timeout > 0");
    Error err;
    char key[256];
    if (api_key && key_file) return cli_fail("serve: give --api-key or --api-key-file, not both");
    if (key_file && read_key(key_file, key, sizeof key, &err)) return cli_fail(err.msg);
    if (key_file) api_key = key;
    else if (!api_key && getenv("DLLM_API_KEY") && *getenv("DLLM_API_KEY"))
        api_key = getenv("DLLM_API_KEY");
    const Backend *be = backend_by_name(device, &err);
    if (!be) return cli_fail(err.msg);
    FILE *log = stderr;
    if (log_path && !(log = fopen(log_path, "a"))) {
        error_set(&err, "%s: %s", log_path, strerror(errno));
        return cli_fail(err.msg);
    }

    ModelSource ck;
    char chosen[4200];
    int skipped;
    if (model_source_open(model_path, HF_WEIGHTS_LATER, &ck, chosen, sizeof chosen,
                          &skipped, &err))
        return cli_fail(err.msg);
    Model m;
    if (model_source_choose_weights(&ck, weights, be, &err) ||
        model_source_build(&ck, be, batch, &m, &err)) {
        model_source_free(&ck);
        return cli_fail(err.msg);
    }
    char name_buf[4200];
    ServeLimits limits = {m.cfg.seq_len, !m.cfg.causal, m.cfg.block_size,
                          name ? name : model_name(model_path, name_buf, sizeof name_buf),
                          max_n};
    EngineConfig ec = {&m, &ck.tokenizer, chat < 0 ? (int)ck.header.train.sft : chat, limits,
                       queue, time_limit, batch_wait};
    // SIGINT and SIGTERM wait for sigwait here, in no other thread
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    Engine *engine = engine_start(&ec, &err);
    HttpConfig hc = {host, port, api_key, max_connections, idle, request_timeout, allow_hosts,
                     cors, log};
    int bound = 0;
    HttpServer *server = engine ? http_start(&hc, engine, &limits, &bound, &err) : NULL;
    if (server) {
        printf("dllm serve: http://%s:%d/ (model %s: %s, context %d tokens)\n", host, bound,
               limits.model_id, m.cfg.causal ? "AR" : m.cfg.block_size ? "block diffusion"
                                                                       : "masked diffusion",
               m.cfg.seq_len);
        fflush(stdout);
        wait_for_signal(&signals);
        http_stop(server);
    }
    if (engine) engine_stop(engine);
    model_free(&m);
    model_source_free(&ck);
    if (log != stderr) fclose(log);
    return server ? 0 : cli_fail(err.msg);
}
