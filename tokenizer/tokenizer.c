#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/gguf.h"
#include "common/hash.h"
#include "tokenizer/bpe.h"
#include "tokenizer/bytes.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/hf_tokenizer.h"

void tokenizer_init_bytes(Tokenizer *t) {
    static const char id[] = "dllm-bytes-v1";
    *t = (Tokenizer){
        .kind = TOKENIZER_BYTES,
        .vocab_size = BYTE_VOCAB_SIZE,
        .mask_id = BYTE_MASK,
        .bos_id = BYTE_BOS,
        .eos_id = BYTE_EOS,
        .pad_id = BYTE_PAD,
        .prompt_id = BYTE_PROMPT,
        .response_id = BYTE_RESPONSE,
        .hash = fnv1a(FNV1A_INIT, id, sizeof id - 1),
        .chat = {.kind = CHAT_DLLM},
    };
}

int tokenizer_load(Tokenizer *t, const char *path, Error *err) {
    if (strcmp(path, "bytes") == 0) {
        tokenizer_init_bytes(t);
        return 0;
    }
    if (hf_tokenizer_path(path)) return hf_tokenizer_load(t, path, err);
    if (gguf_file(path)) {  // a GGUF model's vocabulary
        Gguf g;
        if (gguf_open(&g, path, err)) return -1;
        int rc = gguf_tokenizer_load(t, &g, err);
        gguf_close(&g);
        return rc;
    }
    // a model directory without tokenizer.json: the SentencePiece file `dllm export` writes
    char spm[4200];
    if (file_is_dir(path)) {
        snprintf(spm, sizeof spm, "%s/tokenizer.model", path);
        if (file_size(spm) < 0)
            return error_set(err, "%s: no tokenizer.json or tokenizer.model in the directory",
                             path);
        path = spm;
    }
    char *blob;
    size_t n;
    if (file_read_all(path, &blob, &n, err)) return -1;
    int rc = tokenizer_from_blob(t, blob, n, path, err);
    free(blob);
    return rc;
}

// The id of a reserved piece, which every dllm SentencePiece model has.
static int special_id(const Tokenizer *t, const char *piece, const char *what, int *id,
                      Error *err) {
    *id = spm_piece_to_id(t->spm, piece);
    if (*id < 0)
        return error_set(err, "%s: the tokenizer has no %s piece (train it with dllm tokenizer "
                              "train)", what, piece);
    return 0;
}

int tokenizer_from_blob(Tokenizer *t, const char *blob, size_t n, const char *what,
                        Error *err) {
    if (n >= 8 && memcmp(blob, HF_BUNDLE_MAGIC, 8) == 0)
        return hf_tokenizer_from_bundle(t, blob, n, what, err);
    const char *proto = blob;
    memset(t, 0, sizeof *t);
    t->chat.kind = CHAT_DLLM;
    Error why;
    t->spm = spm_load(proto, n, &why);
    if (!t->spm) return error_set(err, "%s: %s", what, why.msg);
    t->kind = TOKENIZER_SPM;
    t->vocab_size = spm_vocab_size(t->spm);
    t->blob = malloc(n);
    if (!t->blob) {
        tokenizer_free(t);
        return error_set(err, "%s: out of memory", what);
    }
    memcpy(t->blob, proto, n);
    t->blob_bytes = n;
    t->hash = fnv1a(FNV1A_INIT, proto, n);
    if (special_id(t, "[MASK]", what, &t->mask_id, err) ||
        special_id(t, "<s>", what, &t->bos_id, err) ||
        special_id(t, "</s>", what, &t->eos_id, err) ||
        special_id(t, "<pad>", what, &t->pad_id, err) ||
        special_id(t, "<|prompt|>", what, &t->prompt_id, err) ||
        special_id(t, "<|response|>", what, &t->response_id, err)) {
        tokenizer_free(t);
        return -1;
    }
    return 0;
}

void tokenizer_free(Tokenizer *t) {
    if (t->spm) spm_free(t->spm);
    bpe_free(t->bpe);
    free(t->blob);
    memset(t, 0, sizeof *t);
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                     Error *err) {
    if (t->kind == TOKENIZER_SPM) return spm_encode(t->spm, text, len, ids, n, err);
    if (t->kind == TOKENIZER_BPE) return bpe_encode(t->bpe, text, len, 0, ids, n, err);
    *ids = malloc((len + 1) * sizeof(int));
    if (!*ids) return error_set(err, "out of memory for %zu tokens", len);
    bytes_encode((const unsigned char *)text, len, *ids);
    *n = len;
    return 0;
}

int tokenizer_encode_special(const Tokenizer *t, const char *text, size_t len, int **ids,
                             size_t *n, Error *err) {
    if (t->kind == TOKENIZER_BPE) return bpe_encode(t->bpe, text, len, 1, ids, n, err);
    return tokenizer_encode(t, text, len, ids, n, err);
}

// The bracketed name of a special token, or NULL for an ordinary one.
static const char *special_name(const Tokenizer *t, int id) {
    if (id == t->mask_id) return "[MASK]";
    if (id == t->bos_id) return "[BOS]";
    if (id == t->eos_id) return "[EOS]";
    if (id == t->pad_id) return "[PAD]";
    if (id == t->prompt_id) return "<|prompt|>";
    if (id == t->response_id) return "<|response|>";
    return NULL;
}

int tokenizer_is_special(const Tokenizer *t, int id) {
    return special_name(t, id) != NULL || (t->bpe && bpe_is_special(t->bpe, id));
}

const char *tokenizer_kind_name(const Tokenizer *t) {
    return t->kind == TOKENIZER_BYTES ? "bytes" : t->kind == TOKENIZER_SPM ? "sentencepiece"
                                                                           : "tokenizer.json";
}

int tokenizer_token_id(const Tokenizer *t, const char *text) {
    return t->bpe ? bpe_token_id(t->bpe, text) : -1;
}

int tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, char **text, Error *err) {
    if (t->kind == TOKENIZER_SPM) return spm_decode(t->spm, ids, n, text, err);
    if (t->kind == TOKENIZER_BPE) return bpe_decode(t->bpe, ids, n, text, err);
    char *out = malloc(n * 16 + 1);
    if (!out) return error_set(err, "out of memory decoding %zu tokens", n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= 0 && ids[i] < 256) {
            out[len++] = (char)ids[i];
        } else if (ids[i] == t->prompt_id || ids[i] == t->response_id) {
            const char *name = special_name(t, ids[i]);
            memcpy(out + len, name, strlen(name));
            len += strlen(name);
        }
    }
    out[len] = '\0';
    *text = out;
    return 0;
}

// SentencePiece marks a word start with U+2581 (3 bytes in UTF-8); on screen it is a space.
static void spm_piece_text(const char *piece, char *buf) {
    size_t len = 0;
    for (const char *p = piece; *p && len < TOKENIZER_PIECE_MAX - 1; p++) {
        if (memcmp(p, "\xe2\x96\x81", 3) == 0) {
            buf[len++] = ' ';
            p += 2;
        } else {
            buf[len++] = *p;
        }
    }
    buf[len] = '\0';
}

const char *tokenizer_piece_len(const Tokenizer *t, int id, char *buf, size_t *len) {
    const char *name = special_name(t, id);
    unsigned char byte;
    *len = 0;
    if (id < 0 || id >= t->vocab_size) {
        snprintf(buf, TOKENIZER_PIECE_MAX, "[?]");
    } else if (name && t->kind != TOKENIZER_BPE) {
        snprintf(buf, TOKENIZER_PIECE_MAX, "%s", name);
    } else if (t->kind == TOKENIZER_BPE) {  // its specials show as the file spells them
        const char *bytes = bpe_token_bytes(t->bpe, id, len);
        if (!bytes) *len = 0;
        if (*len > TOKENIZER_PIECE_MAX - 1) *len = TOKENIZER_PIECE_MAX - 1;
        if (bytes) memcpy(buf, bytes, *len);
        buf[*len] = '\0';
        return buf;
    } else if (t->kind == TOKENIZER_BYTES || spm_is_byte(t->spm, id, &byte)) {
        buf[0] = (char)(t->kind == TOKENIZER_BYTES ? id : byte);
        buf[1] = '\0';
        *len = 1;
        return buf;
    } else {
        spm_piece_text(spm_id_to_piece(t->spm, id), buf);
    }
    *len = strlen(buf);
    return buf;
}

const char *tokenizer_piece(const Tokenizer *t, int id, char *buf) {
    size_t len;
    return tokenizer_piece_len(t, id, buf, &len);
}
