// The server's generation engine: one worker thread owns the model and runs queued requests
// one at a time (a request's n completions share each forward pass); the HTTP threads submit
// requests and wait for, or stream, what the worker produces. The queue is bounded (a full one
// refuses with 503); a request whose client went away is stopped at the next step, one that
// runs past the time limit likewise (504).
#ifndef DLLM_SERVE_ENGINE_H
#define DLLM_SERVE_ENGINE_H

#include "model/model.h"
#include "serve/request.h"
#include "serve/response.h"
#include "tokenizer/tokenizer.h"

typedef struct Engine Engine;
typedef struct Job Job;

typedef struct {
    Model *model;            // the worker's alone from engine_start to engine_stop
    const Tokenizer *tokenizer;
    int chat_layout;         // prompts of /v1/completions laid out as chat (an SFT model)
    ServeLimits limits;
    int queue_max;           // requests waiting (not counting the running one)
    double time_limit;       // seconds of generation per request
    double batch_wait;       // seconds the worker waits for more requests to share a batch
} EngineConfig;

Engine *engine_start(const EngineConfig *cfg, Error *err);
// Finishes the running request, fails the queued ones (503), joins the worker.
void engine_stop(Engine *e);

// Encodes the request's prompt and queues it (the job takes over *r). NULL with *re filled
// (400 for a prompt too long, 503 when the queue is full).
Job *engine_submit(Engine *e, ServeRequest *r, RequestError *re);
// Marks the job's client gone: the worker stops it at its next step.
void engine_cancel(Engine *e, Job *j);
// Waits up to `seconds` for the job to finish: 1 finished, 0 not yet.
int engine_wait(Engine *e, Job *j, double seconds);
// Moves up to max bytes of the job's pending stream (Server-Sent Events) into buf, waiting up
// to `seconds` for some: the byte count, 0 when none came, -1 when the stream is over.
long engine_read_stream(Engine *e, Job *j, char *buf, size_t max, double seconds);
// A finished job's whole response: the HTTP status and body (OpenAI's completion or error).
int engine_response(Engine *e, Job *j, Text *body);
// One access-log line's fields.
typedef struct {
    char id[48];              // a copy: the summary outlives the job
    int prompt_tokens, completion_tokens, passes, status;
    int batched;              // requests that shared its forward passes (itself included)
    double queued_s, run_s;
} JobSummary;
void engine_summary(Engine *e, Job *j, JobSummary *s);
// The HTTP side is done with the job.
void engine_release(Engine *e, Job *j);
// Requests waiting in the queue (not counting the running ones).
int engine_queued(Engine *e);
// The served model's tokenizer (read-only: any thread may encode and decode with it).
const Tokenizer *engine_tokenizer(const Engine *e);

#endif
