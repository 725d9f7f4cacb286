// A PEFT adapter_config.json (model/peft.c): peft_type, r, lora_alpha, the base's path and
// the options dllm refuses. Any input: an error or a LoRA config, never a crash.
#include <sys/stat.h>

#include "model/peft.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/dllm_fuzz_%d_peft", (int)getpid());
        mkdir(dir, 0700);
    }
    char path[200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    LoraConfig lc;
    Error err;
    if (peft_read_config(dir, &lc, &err) == 0 && (lc.rank < 1 || !(lc.alpha > 0.0f) || !lc.base[0]))
        abort();  // an accepted config is a usable one
    return 0;
}
