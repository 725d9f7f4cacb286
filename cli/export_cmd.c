// dllm export RUN_OR_CKPT --out DIR: a dllm model as a Hugging Face model directory
// (config.json, model.safetensors and the tokenizer's files), in the LLaDA layout for a
// masked-diffusion model and the LLaMA (or Qwen2) layout for an AR one, so the rest of the
// ecosystem reads it. A LoRA run exports its adapters alone as a PEFT directory
// (adapter_config.json, adapter_model.safetensors), or with --merge 1 the base with the
// adapters folded in, as a model directory. Everything is written into DIR.tmp, which becomes
// DIR at the end: a failed export leaves nothing. --format ternary writes a model trained with
// --weights ternary as one packed file instead (store/packed_file.h), for CPU inference.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/file.h"
#include "model/hf_model.h"
#include "model/lora.h"
#include "model/packed.h"
#include "model/params.h"
#include "model/peft.h"
#include "tokenizer/hf_tokenizer.h"
#include "store/packed_file.h"
#include "store/model_source.h"

// 1 when dir exists and holds anything
static int non_empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)))
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return found;
}

// The tokenizer as the directory's files: a Hugging Face tokenizer's own files, or a
// SentencePiece model as tokenizer.model; the byte tokenizer has no file form.
static int write_tokenizer(const Tokenizer *t, const char *dir, Error *err) {
    if (t->kind == TOKENIZER_BPE) return hf_tokenizer_write_files(t, dir, err);
    if (t->kind == TOKENIZER_BYTES) {
        printf("note: the byte tokenizer has no Hugging Face file; ids 0-255 are bytes\n");
        return 0;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    fwrite(t->blob, 1, t->blob_bytes, f.f);
    return atomic_commit(&f, err);
}

// What DIR.tmp receives: a model directory (weights: the checkpoint's, or a LoRA run's base
// with its adapters merged), or a LoRA run's adapters as a PEFT directory.
static int write_export(const char *tmp, ModelSource *ck, int merge, SafetensorsDtype dtype,
                        Error *err) {
    const ModelConfig *c = &ck->header.model;
    const LoraConfig *lc = &ck->header.lora;
    if (!lc->rank)
        return hf_export(tmp, c, ck->params, ck->tokenizer.bos_id, ck->tokenizer.eos_id, dtype,
                         err);
    ModelSource base;
    if (model_source_base(ck, merge ? HF_WEIGHTS_ON_HOST : HF_CONFIG_ONLY, &base, err))
        return -1;
    int rc;
    if (merge) {
        lora_merge(base.params, ck->params, c, lc);
        rc = hf_export(tmp, c, base.params, ck->tokenizer.bos_id, ck->tokenizer.eos_id, dtype,
                       err);
    } else {
        rc = peft_write(tmp, c, lc, model_source_layout(&base), ck->params, err);
    }
    model_source_free(&base);
    return rc;
}

// --format ternary: the model's projections packed to 2 bits a weight, one file.
static int export_packed(const char *model, const char *out, Error *err) {
    ModelSource ck;
    char chosen[4200];
    int skipped;
    if (model_source_open(model, HF_WEIGHTS_ON_HOST, &ck, chosen, sizeof chosen, &skipped,
                          err))
        return -1;
    const char *problem = ck.kind == SOURCE_PACKED ? "is packed already"
                          : ck.header.lora.rank ? "holds LoRA adapters"
                          : !ck.header.model.ternary
                              ? "was not trained with --weights ternary (packing fp32 weights "
                                "would change the model)"
                              : NULL;
    int rc = problem ? error_set(err, "export: %s %s", chosen, problem)
                     : packed_file_save(out, &ck.header.model, ck.header.step, ck.params, &ck.tokenizer, err);
    if (rc == 0) {
        const ModelConfig *c = &ck.header.model;
        printf("exported %s (%s, %zu parameters, packed ternary: %.2f MB, fp32 %.2f MB) to %s\n",
               chosen, c->causal ? "AR" : "MDM", param_count(c),
               ((param_count_packed(c) + (size_t)packed_scale_count(c)) * 4.0 + packed_bytes(c)) /
                   1e6,
               param_count(c) * 4.0 / 1e6, out);
    }
    model_source_free(&ck);
    return rc;
}

static int export_model(const char *model, const char *out, int merge, SafetensorsDtype dtype,
                        Error *err) {
    if (non_empty_dir(out))
        return error_set(err, "export: %s exists and is not empty; choose a new directory", out);
    ModelSource ck;
    char chosen[4200], tmp[4300];
    int skipped;
    // writing needs an imported model's weights on the host
    if (model_source_open(model, HF_WEIGHTS_ON_HOST, &ck, chosen, sizeof chosen, &skipped,
                          err))
        return -1;
    if (merge && !ck.header.lora.rank) {
        model_source_free(&ck);
        return error_set(err, "export: --merge 1 folds LoRA adapters into their base; %s has "
                              "none", chosen);
    }
    int adapters = ck.header.lora.rank && !merge;
    if (adapters && dtype != SAFETENSORS_F32) {
        model_source_free(&ck);
        return error_set(err, "export: LoRA adapters are written as f32 (--dtype is for "
                              "models: add --merge 1)");
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    char cmd[8700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    int rc = system(cmd) == 0 ? 0 : error_set(err, "export: cannot clear %s", tmp);
    if (rc == 0) rc = write_export(tmp, &ck, merge, dtype, err);
    if (rc == 0 && !adapters) rc = write_tokenizer(&ck.tokenizer, tmp, err);
    if (rc == 0) {
        rmdir(out);  // an empty one may exist
        if (rename(tmp, out) != 0)
            rc = error_set(err, "export: cannot rename %s to %s: %s", tmp, out, strerror(errno));
    }
    if (rc) {
        if (system(cmd) != 0) fprintf(stderr, "dllm: could not remove %s\n", tmp);
    } else {
        const char *what = adapters ? "LoRA adapters, PEFT layout"
                           : ck.header.lora.rank ? "LoRA merged into its base"
                           : "";
        printf("exported %s (%s, %zu %s, %s%s%s) to %s\n", chosen,
               ck.header.model.causal ? "AR" : "MDM",
               adapters ? (size_t)ck.header.n_params : param_count(&ck.header.model),
               adapters ? "adapter values" : "parameters", safetensors_dtype_name(dtype),
               what[0] ? ", " : "", what, out);
    }
    model_source_free(&ck);
    return rc;
}

int cmd_export(int argc, char **argv) {
    const char *out = NULL, *dtype_name = "f32", *format = "hf";
    int merge = 0;
    Flag flags[] = {
        {"out", FLAG_STRING, &out, "directory to create (config.json, model.safetensors, tokenizer)",
         FLAG_FREE, 0},
        {"dtype", FLAG_STRING, &dtype_name, "weights as f32 or bf16", FLAG_FREE, 0},
        {"merge", FLAG_INT, &merge,
         "a LoRA run: 1 writes its base with the adapters merged in (a model directory), 0 the "
         "adapters alone (a PEFT directory)", FLAG_FREE, 0},
        {"format", FLAG_STRING, &format,
         "hf: a Hugging Face directory; ternary: a --weights ternary model packed to 2 bits a "
         "weight, one file --out FILE, for CPU inference", FLAG_FREE, 0},
    };
    const char *usage = "usage: dllm export RUN_OR_CKPT --out DIR [--dtype f32|bf16] [--merge 1] "
                        "| --out FILE --format ternary";
    if (argc < 1 || strncmp(argv[0], "--", 2) == 0) {
        int rc = flags_parse_command(flags, 4, argc, argv, usage);
        return rc ? rc < 0 : cli_fail("export: give a run directory or checkpoint first");
    }
    int rc = flags_parse_command(flags, 4, argc - 1, argv + 1, usage);
    if (rc) return rc < 0;
    if (!out) return cli_fail("export: --out DIR is required");
    static const char *const formats[] = {"hf", "ternary"};
    Error err;
    int f = flags_choice("format", format, formats, 2, &err);
    if (f < 0) return cli_fail(err.msg);
    if (f == 1) {
        if (merge || strcmp(dtype_name, "f32") != 0)
            return cli_fail("export: --merge and --dtype are for --format hf");
        return export_packed(argv[0], out, &err) ? cli_fail(err.msg) : 0;
    }
    if (merge != 0 && merge != 1) return cli_fail("export: --merge must be 0 or 1");
    static const char *const dtypes[] = {"f32", "bf16"};
    int d = flags_choice("dtype", dtype_name, dtypes, 2, &err);
    if (d < 0) return cli_fail(err.msg);
    if (export_model(argv[0], out, merge, d ? SAFETENSORS_BF16 : SAFETENSORS_F32, &err))
        return cli_fail(err.msg);
    return 0;
}
