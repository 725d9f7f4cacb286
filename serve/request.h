// An OpenAI-style generation request, from its JSON body: what to generate and how, checked
// against the served model, and the OpenAI-style error a bad one gets.
#ifndef DLLM_SERVE_REQUEST_H
#define DLLM_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "sampler/sampler.h"
#include "tokenizer/chat_template.h"

enum { REQUEST_MAX_STOPS = 4, REQUEST_MAX_N = 16, REQUEST_MAX_TOP_LOGPROBS = 20 };

// One prompt of /v1/completions: text, or token ids (malloc'd).
typedef struct {
    char *text;               // NULL: the prompt is ids
    int *ids;
    int n_ids;
} Prompt;

typedef struct {
    int chat;                 // /v1/chat/completions: messages laid out as the model's chat
    Prompt *prompts;          // /v1/completions: OpenAI's prompt (a string, a list of them,
    int n_prompts;            // token ids, or a list of those), n completions each
    ChatMessage *messages;    // chat: the conversation (system, user, assistant), the last
    int n_messages;           // message the user's; roles and contents malloc'd
    int max_tokens;           // tokens to generate (max_tokens or max_completion_tokens)
    int n;                    // completions for the prompt
    int stream;               // Server-Sent Events
    int stream_steps;         // also dllm.step events (a diffusion model; OpenAI's client
                              // libraries would read them as malformed chunks: opt-in)
    char *stops[REQUEST_MAX_STOPS];  // the text ends before the first of these
    int n_stops;
    SamplerConfig sc;         // temperature, top_p, seed and the diffusion extensions
    int seeded;               // the client gave the seed (its sample must not depend on
                              // which requests share its batch); else the engine draws one
    int include_usage;        // stream_options.include_usage: a last chunk with the usage
    int echo;                 // /v1/completions: the prompt comes back before the completion
    int logprobs;             // each token's log-probability and this many most likely
                              // alternatives (-1: none): /v1/completions' logprobs (0-5; with
                              // echo the prompt's tokens too, and max_tokens may be 0: scoring
                              // only), or a chat's logprobs true with top_logprobs (0-20)
} ServeRequest;

// Why a request is refused: the HTTP status and OpenAI's error object fields.
typedef struct {
    int status;               // 400, 401, 404, 413, 503, ...
    char message[300];
    char param[40];           // the offending field, or ""
} RequestError;

// What the served model allows: its context and whether it samples by diffusion.
typedef struct {
    int context;              // prompt + max_tokens must fit
    int diffusion;            // MDM / block diffusion (the extensions apply)
    int block_size;           // a block diffusion model's own blocks (0: none)
    const char *model_id;     // the one name "model" may carry
    int max_n;                // completions per request at most (the model's batch room)
} ServeLimits;

// Parses body (NUL-terminated) for /v1/completions (chat 0) or /v1/chat/completions (chat 1).
// 0, or -1 with *e filled (status 400 unless said otherwise). Free with request_free.
int request_parse(const char *body, int chat, const ServeLimits *limits, ServeRequest *r,
                  RequestError *e);
void request_free(ServeRequest *r);

// The prompt's token count is known only after encoding: checks prompt_len + max_tokens.
int request_check_length(const ServeRequest *r, int prompt_len, const ServeLimits *limits,
                         RequestError *e);

// Completions the request asks for: n for each prompt (a chat has one).
int request_rows(const ServeRequest *r);

// Length of text up to (not including) the first stop string, or len when none occurs.
size_t request_cut_at_stop(const ServeRequest *r, const char *text, size_t len);

#endif
