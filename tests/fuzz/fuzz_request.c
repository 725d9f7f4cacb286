// A `dllm serve` request body: every field and its checks, for both endpoints and for an AR
// and a diffusion model; what parses is then cut at its stop strings and length-checked.
#include <string.h>

#include "serve/request.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const ServeLimits limits[2] = {{64, 0, 0, "m", 4}, {64, 1, 0, "m", 4}};
    char *body = fuzz_text(data, size);
    for (int chat = 0; chat <= 1; chat++)
        for (int l = 0; l < 2; l++) {
            ServeRequest r;
            RequestError e;
            if (request_parse(body, chat, &limits[l], &r, &e) == 0) {
                request_cut_at_stop(&r, "stop here", 9);
                request_check_length(&r, 10, &limits[l], &e);
                request_free(&r);
            }
        }
    free(body);
    return 0;
}
