#include "tokenizer/tokenizer_train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "tokenizer/spm_shim.h"

// Where to cut a line of len bytes that is longer than max: the last space before max, or, if
// there is none, the last UTF-8 character boundary (never inside a multi-byte character).
static size_t cut_point(const char *s, size_t max) {
    for (size_t i = max; i > max / 2; i--)
        if (s[i] == ' ') return i;
    size_t i = max;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

// Copies every non-empty line of the inputs to out, split into pieces of at most max bytes.
static int write_training_lines(const TokenizerTrainOptions *o, FILE *out,
                                TokenizerTrainReport *report, Error *err) {
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; i < o->n_inputs; i++) {
        FILE *f = fopen(o->inputs[i], "rb");
        if (!f) {
            free(line);
            return error_set(err, "%s: %s", o->inputs[i], strerror(errno));
        }
        ssize_t got;
        while ((got = getline(&line, &cap, f)) >= 0) {
            size_t len = (size_t)got;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            if (len == 0) continue;
            report->lines++;
            if (len > (size_t)o->max_sentence_length) report->split_lines++;
            const char *p = line;
            while (len > (size_t)o->max_sentence_length) {
                size_t cut = cut_point(p, (size_t)o->max_sentence_length);
                fwrite(p, 1, cut, out);
                fputc('\n', out);
                while (cut < len && p[cut] == ' ') cut++;
                p += cut;
                len -= cut;
            }
            fwrite(p, 1, len, out);
            fputc('\n', out);
        }
        fclose(f);
    }
    free(line);
    if (report->lines == 0) return error_set(err, "%s: no text to train on", o->inputs[0]);
    return 0;
}

int tokenizer_train(const TokenizerTrainOptions *o, const char *out_path,
                    TokenizerTrainReport *report, Error *err) {
    memset(report, 0, sizeof *report);
    if (strcmp(o->type, "bpe") != 0 && strcmp(o->type, "unigram") != 0)
        return error_set(err, "tokenizer type must be bpe or unigram, not '%s'", o->type);
    AtomicFile lines;
    char lines_path[4200];
    snprintf(lines_path, sizeof lines_path, "%s.lines", out_path);
    if (atomic_open(&lines, lines_path, err)) return -1;
    if (write_training_lines(o, lines.f, report, err)) {
        atomic_abort(&lines);
        return -1;
    }
    fflush(lines.f);

    char vocab[32], max_len[32], max_sent[32], threads[32];
    snprintf(vocab, sizeof vocab, "%d", o->vocab_size);
    snprintf(max_len, sizeof max_len, "%d", o->max_sentence_length);
    snprintf(max_sent, sizeof max_sent, "%ld", o->max_sentences);
    snprintf(threads, sizeof threads, "%d", o->threads);
    // Ids 0-3 are unk, BOS, EOS, PAD; then [MASK] (control: text never produces it) and the SFT
    // markers (user-defined: written in text they become one token). Identity normalisation
    // and byte fallback make decode(encode(text)) == text for any UTF-8 input.
    const char *keys[] = {"input", "vocab_size", "model_type", "max_sentence_length",
                          "input_sentence_size", "shuffle_input_sentence", "num_threads",
                          "unk_id", "bos_id", "eos_id", "pad_id", "control_symbols",
                          "user_defined_symbols", "byte_fallback", "normalization_rule_name",
                          "remove_extra_whitespaces", "split_digits", "character_coverage",
                          "minloglevel"};
    const char *values[] = {lines.tmp, vocab, o->type, max_len, max_sent, "true", threads,
                            "0", "1", "2", "3", "[MASK]", "<|prompt|>,<|response|>", "true",
                            "identity", "false", "true", "0.9995", "1"};
    char *proto = NULL;
    size_t proto_bytes = 0;
    int rc = spm_train(keys, values, (int)(sizeof keys / sizeof keys[0]), &proto, &proto_bytes,
                       err);
    atomic_abort(&lines);  // the split lines were only for training
    if (rc) return -1;
    AtomicFile out;
    if (atomic_open(&out, out_path, err)) {
        free(proto);
        return -1;
    }
    fwrite(proto, 1, proto_bytes, out.f);
    free(proto);
    return atomic_commit(&out, err);
}
