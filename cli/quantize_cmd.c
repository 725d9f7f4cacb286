// dllm quantize MODEL.gguf --format q8|q4 --out OUT.gguf: a GGUF file's matrices in Q8_0 or
// Q4_0 (store/gguf_quantize.h), for llama.cpp and dllm alike; dllm's other models quantise at
// load instead (--weights q8|q4 on sample, eval and serve).
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "store/gguf_quantize.h"

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *format = NULL, *out = NULL;
    Flag flags[] = {
        {"model", FLAG_STRING, &model, "the GGUF file (F32, F16 or BF16 matrices); or give it "
         "first, without the flag", FLAG_FREE, 0},
        {"format", FLAG_STRING, &format, "q8 (Q8_0) or q4 (Q4_0)", FLAG_FREE, 0},
        {"out", FLAG_STRING, &out, "the GGUF file to write", FLAG_FREE, 0},
    };
    if (argc > 0 && strncmp(argv[0], "--", 2) != 0) model = argv[0], argc--, argv++;
    int rc = flags_parse_command(flags, 3, argc, argv,
                                 "usage: dllm quantize MODEL.gguf --format q8|q4 --out OUT.gguf");
    if (rc) return rc < 0;
    if (!model || !format || !out)
        return cli_fail("quantize: MODEL, --format and --out are required");
    Error err;
    static const char *const formats[] = {"q8", "q4"};
    int which = flags_choice("format", format, formats, 2, &err);
    if (which < 0) return cli_fail(err.msg);
    if (!gguf_file(model))
        return cli_fail("quantize: MODEL must be a GGUF file (dllm's checkpoints and Hugging Face "
                        "directories quantise at load: --weights q8|q4)");
    QuantizeStats s;
    if (gguf_quantize(model, out, which == 0 ? GGML_Q8_0 : GGML_Q4_0, &s, &err))
        return cli_fail(err.msg);
    printf("%s: %d tensors in %s, %d kept as they were; tensor data %.1f MB -> %.1f MB\n", out,
           s.quantised, which == 0 ? "Q8_0" : "Q4_0", s.kept, s.in_bytes / 1e6, s.out_bytes / 1e6);
    return 0;
}
