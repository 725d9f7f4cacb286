// dllm export RUN_OR_CKPT --out DIR: a dllm model as a Hugging Face model directory
// (config.json, model.safetensors and the tokenizer's files), in the LLaDA layout for a
// masked-diffusion model and the LLaMA (or Qwen2) layout for an AR one, so the rest of the
// ecosystem reads it. Everything is written into DIR.tmp, which becomes DIR at the end: a
// failed export leaves nothing.
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
#include "tokenizer/hf_tokenizer.h"
#include "train/checkpoint.h"
#include "train/run_dir.h"

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

static int export_model(const char *model, const char *out, SafetensorsDtype dtype, Error *err) {
    if (non_empty_dir(out))
        return error_set(err, "export: %s exists and is not empty; choose a new directory", out);
    Checkpoint ck;
    char chosen[4200], tmp[4300];
    int skipped;
    // writing needs an imported model's weights on the host
    if (checkpoint_load_latest(model, HF_WEIGHTS_ON_HOST, &ck, chosen, sizeof chosen, &skipped,
                               err))
        return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    char cmd[8700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    int rc = system(cmd) == 0 ? 0 : error_set(err, "export: cannot clear %s", tmp);
    if (rc == 0)
        rc = hf_export(tmp, &ck.header.model, ck.params, ck.tokenizer.bos_id, ck.tokenizer.eos_id,
                       dtype, err);
    if (rc == 0) rc = write_tokenizer(&ck.tokenizer, tmp, err);
    if (rc == 0) {
        rmdir(out);  // an empty one may exist
        if (rename(tmp, out) != 0)
            rc = error_set(err, "export: cannot rename %s to %s: %s", tmp, out, strerror(errno));
    }
    if (rc) {
        if (system(cmd) != 0) fprintf(stderr, "dllm: could not remove %s\n", tmp);
    } else {
        printf("exported %s (%s, %zu parameters, %s) to %s\n", chosen,
               ck.header.model.causal ? "AR" : "MDM", (size_t)ck.header.n_params,
               safetensors_dtype_name(dtype), out);
    }
    checkpoint_free(&ck);
    return rc;
}

int cmd_export(int argc, char **argv) {
    const char *out = NULL, *dtype_name = "f32";
    Flag flags[] = {
        {"out", FLAG_STRING, &out, "directory to create (config.json, model.safetensors, tokenizer)", 0},
        {"dtype", FLAG_STRING, &dtype_name, "weights as f32 or bf16", 0},
    };
    const char *usage = "usage: dllm export RUN_OR_CKPT --out DIR [--dtype f32|bf16]";
    if (argc < 1 || strncmp(argv[0], "--", 2) == 0) {
        int rc = flags_parse_command(flags, 2, argc, argv, usage);
        return rc ? rc < 0 : cli_fail("export: give a run directory or checkpoint first");
    }
    int rc = flags_parse_command(flags, 2, argc - 1, argv + 1, usage);
    if (rc) return rc < 0;
    if (!out) return cli_fail("export: --out DIR is required");
    static const char *const dtypes[] = {"f32", "bf16"};
    Error err;
    int d = flags_choice("dtype", dtype_name, dtypes, 2, &err);
    if (d < 0) return cli_fail(err.msg);
    if (export_model(argv[0], out, d ? SAFETENSORS_BF16 : SAFETENSORS_F32, &err))
        return cli_fail(err.msg);
    return 0;
}
