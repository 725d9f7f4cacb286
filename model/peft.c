#include "model/peft.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "model/safetensors.h"

int peft_dir(const char *path) {
    char config[4200];
    if (!file_is_dir(path)) return 0;
    snprintf(config, sizeof config, "%s/adapter_config.json", path);
    return access(config, R_OK) == 0;
}

// The module target t adapts in layer l, as the base's file names it ("model.layers.0.mlp.
// down_proj"): its weight's tensor name without ".weight".
static void module_name(HfArch arch, int t, int l, char *buf, size_t cap) {
    hf_tensor_name(arch, projection_param(t), l, buf, cap);
    size_t n = strlen(buf);
    if (n > 7 && strcmp(buf + n - 7, ".weight") == 0) buf[n - 7] = '\0';
}

// peft's name of the A (which 'A') or B matrix of target t in layer l.
static void tensor_name(HfArch arch, int t, int l, char which, char *buf, size_t cap) {
    char module[200];
    module_name(arch, t, l, module, sizeof module);
    snprintf(buf, cap, "base_model.model.%s.lora_%c.weight", module, which);
}

// target_modules: the modules' last names, which peft matches as name suffixes; in LLaDA's
// layout "ff_out" also names the LM head, so there an exact regex (peft fullmatches a string).
static void write_target_modules(FILE *f, const LoraConfig *lc, HfArch arch) {
    int regex = arch == HF_LLADA && (lc->targets & (1u << LORA_DOWN));
    fputs(regex ? "\".*\\\\.blocks\\\\.\\\\d+\\\\.(" : "[", f);
    int first = 1;
    for (int t = 0; t < N_LORA_TARGETS; t++) {
        if (!(lc->targets & (1u << t))) continue;
        char module[200];
        module_name(arch, t, 0, module, sizeof module);
        const char *last = strrchr(module, '.') + 1;
        fprintf(f, regex ? "%s%s" : "%s\"%s\"", first ? "" : regex ? "|" : ", ", last);
        first = 0;
    }
    fputs(regex ? ")\"" : "]", f);
}

static int write_config(const char *path, const LoraConfig *lc, HfArch arch, Error *err) {
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    fprintf(f.f, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n"
                 "  \"base_model_name_or_path\": ");
    json_write_string(f.f, lc->base);
    fprintf(f.f, ",\n  \"r\": %d,\n  \"lora_alpha\": %.9g,\n  \"target_modules\": ", lc->rank,
            lc->alpha);
    write_target_modules(f.f, lc, arch);
    fprintf(f.f, ",\n  \"lora_dropout\": 0.0,\n  \"bias\": \"none\",\n"
                 "  \"fan_in_fan_out\": false,\n  \"use_rslora\": false,\n"
                 "  \"use_dora\": false,\n  \"modules_to_save\": null,\n"
                 "  \"rank_pattern\": {},\n  \"alpha_pattern\": {},\n"
                 "  \"init_lora_weights\": true,\n  \"inference_mode\": true\n}\n");
    return atomic_commit(&f, err);
}

int peft_write(const char *dir, const ModelConfig *c, const LoraConfig *lc, HfArch arch,
               const float *adapters, Error *err) {
    if (c->n_experts)  // PEFT names a module's adapter; dllm's experts are one stacked tensor
        return error_set(err, "PEFT adapters of a mixture of experts are not built: export the "
                              "merged model instead");
    if (make_dirs(dir, err)) return -1;
    int n = 0, max = 2 * c->n_layer * N_LORA_TARGETS, r = lc->rank;
    SafetensorsOut *out = calloc((size_t)max, sizeof *out);
    char (*names)[256] = calloc((size_t)max, sizeof *names);
    if (!out || !names) {
        free(out), free(names);
        return error_set(err, "out of memory");
    }
    for (int l = 0; l < c->n_layer; l++)
        for (int t = 0; t < N_LORA_TARGETS; t++) {
            if (!(lc->targets & (1u << t))) continue;
            int in, o;
            projection_shape(c, t, &in, &o);
            const float *a = adapters + lora_offset(c, lc, l, t);
            tensor_name(arch, t, l, 'A', names[n], sizeof names[n]);
            out[n] = (SafetensorsOut){names[n], 2, {r, in}, a};
            n++;
            tensor_name(arch, t, l, 'B', names[n], sizeof names[n]);
            out[n] = (SafetensorsOut){names[n], 2, {o, r}, a + (size_t)r * in};
            n++;
        }
    char path[4300];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    int rc = safetensors_write(path, out, n, SAFETENSORS_F32, err);
    free(out), free(names);
    if (rc) return -1;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    return write_config(path, lc, arch, err);
}

// A member that must be absent, null, false, empty or the given string: an option dllm does
// not implement is named.
static int refuse_option(const char *path, const JsonValue *root, const char *key,
                         const char *allowed, Error *err) {
    const JsonValue *v = json_member(root, key);
    if (!v || v->type == JSON_NULL || v->type == JSON_FALSE) return 0;
    if ((v->type == JSON_OBJECT || v->type == JSON_ARRAY) && v->n == 0) return 0;
    if (allowed && v->type == JSON_STRING && strcmp(v->string, allowed) == 0) return 0;
    return error_set(err, "%s: %s is set: dllm's LoRA does not implement it", path, key);
}

// The base path as written, else relative to the adapter directory; absolute either way.
static int resolve_base(const char *dir, const char *path, const char *given, char *out,
                        size_t cap, Error *err) {
    char joined[PATH_MAX + 4200], resolved[PATH_MAX];
    snprintf(joined, sizeof joined, "%s/%s", dir, given);
    const char *found = realpath(given, resolved) ? resolved
                        : given[0] != '/' && realpath(joined, resolved) ? resolved
                                                                        : NULL;
    if (!found)
        return error_set(err, "%s: base_model_name_or_path '%s' is not a local path: point it at "
                              "the base model's directory or checkpoint (dllm never downloads)",
                         path, given);
    if (strlen(found) >= cap)
        return error_set(err, "%s: the base model's path is longer than %zu bytes", path, cap - 1);
    snprintf(out, cap, "%s", found);
    return 0;
}

int peft_read_config(const char *dir, LoraConfig *lc, Error *err) {
    memset(lc, 0, sizeof *lc);
    char path[4300];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, err)) return -1;
    JsonValue root;
    Error why;
    int rc = json_parse(text, &root, &why);
    free(text);
    if (rc) return error_set(err, "%s: %s", path, why.msg);
    const JsonValue *r = json_member(&root, "r"), *alpha = json_member(&root, "lora_alpha");
    const char *type = json_member_string(&root, "peft_type");
    const char *base = json_member_string(&root, "base_model_name_or_path");
    static const char *const refused[] = {
        "use_dora",          "use_rslora",       "rank_pattern",          "alpha_pattern",
        "modules_to_save",   "fan_in_fan_out",   "layers_to_transform",   "lora_bias",
        "layer_replication", "target_parameters", "trainable_token_indices",
        "alora_invocation_tokens", "use_qalora"};
    rc = -1;
    if (!type || strcmp(type, "LORA") != 0)
        error_set(err, "%s: peft_type '%s': dllm reads LORA adapters", path, type ? type : "");
    else if (!r || r->type != JSON_NUMBER || r->number < 1 || r->number > 65536 ||
             r->number != floor(r->number))
        error_set(err, "%s: r must be a whole number from 1 to 65536", path);
    else if (!alpha || alpha->type != JSON_NUMBER || !(alpha->number > 0))
        error_set(err, "%s: lora_alpha must be a number > 0", path);
    else if (!base || !base[0])
        error_set(err, "%s: no base_model_name_or_path: dllm needs the base model's path", path);
    else if (refuse_option(path, &root, "bias", "none", err) == 0 &&
             resolve_base(dir, path, base, lc->base, sizeof lc->base, err) == 0)
        rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof refused / sizeof refused[0]; i++)
        rc = refuse_option(path, &root, refused[i], NULL, err);
    if (rc == 0) {
        lc->rank = (int32_t)r->number;
        lc->alpha = (float)alpha->number;
    }
    json_free(&root);
    return rc;
}

int peft_read_adapters(const char *dir, const ModelConfig *c, LoraConfig *lc, HfArch arch,
                       float **adapters, Error *err) {
    *adapters = NULL;
    if (c->n_experts)
        return error_set(err, "%s: PEFT adapters on a mixture of experts are not read (not built)",
                         dir);
    char path[4300], name[256];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    Safetensors st;
    if (safetensors_open(&st, path, err)) return -1;
    lc->targets = 0;  // the targets are those layer 0 has
    for (int t = 0; t < N_LORA_TARGETS; t++) {
        tensor_name(arch, t, 0, 'A', name, sizeof name);
        if (safetensors_find(&st, name)) lc->targets |= 1u << t;
    }
    int rc = lora_config_validate(lc, err);
    size_t n = lc->targets ? lora_param_count(c, lc) : 0;
    float *values = rc == 0 ? malloc(n * sizeof(float)) : NULL;
    if (rc == 0 && !values) rc = error_set(err, "%s: out of memory for %zu values", path, n);
    for (int l = 0; rc == 0 && l < c->n_layer; l++)
        for (int t = 0; rc == 0 && t < N_LORA_TARGETS; t++) {
            if (!(lc->targets & (1u << t))) continue;
            int in, out;
            projection_shape(c, t, &in, &out);
            float *a = values + lora_offset(c, lc, l, t);
            int64_t shape_a[2] = {lc->rank, in}, shape_b[2] = {out, lc->rank};
            tensor_name(arch, t, l, 'A', name, sizeof name);
            rc = safetensors_read(&st, name, shape_a, 2, a, err);
            tensor_name(arch, t, l, 'B', name, sizeof name);
            if (rc == 0) rc = safetensors_read(&st, name, shape_b, 2, a + (size_t)lc->rank * in,
                                               err);
        }
    const char *left = rc == 0 ? safetensors_unused(&st) : NULL;
    if (left)
        rc = error_set(err, "%s: tensor %s is not an adapter dllm applies (it adapts q, k, v, o, "
                            "gate, up and down projections, the same ones in every layer)",
                       path, left);
    safetensors_close(&st);
    if (rc) {
        free(values);
        return -1;
    }
    *adapters = values;
    return 0;
}
