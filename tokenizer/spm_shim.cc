// extern "C" wrappers around sentencepiece::SentencePieceProcessor and SentencePieceTrainer.
// C++ exceptions never cross into C: SentencePiece reports failures as util::Status values.
#include "tokenizer/spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

struct SpmModel {
    sentencepiece::SentencePieceProcessor proc;
};

static int fail(Error *err, const sentencepiece::util::Status &s) {
    return error_set(err, "sentencepiece: %s", s.error_message());
}

static char *copy_bytes(const std::string &s) {
    char *out = static_cast<char *>(std::malloc(s.size() + 1));
    if (out) {
        std::memcpy(out, s.data(), s.size());
        out[s.size()] = '\0';
    }
    return out;
}

extern "C" int spm_train(const char *const *keys, const char *const *values, int n, char **proto,
                         size_t *proto_bytes, Error *err) {
    std::unordered_map<std::string, std::string> options;
    for (int i = 0; i < n; i++) options[keys[i]] = values[i];
    std::string model;
    auto s = sentencepiece::SentencePieceTrainer::Train(options, nullptr, &model);
    if (!s.ok()) return fail(err, s);
    *proto = copy_bytes(model);
    if (!*proto) return error_set(err, "sentencepiece: out of memory for the model");
    *proto_bytes = model.size();
    return 0;
}

extern "C" SpmModel *spm_load(const char *proto, size_t proto_bytes, Error *err) {
    SpmModel *m = new SpmModel;
    auto s = m->proc.LoadFromSerializedProto(std::string(proto, proto_bytes));
    if (!s.ok()) {
        fail(err, s);
        delete m;
        return nullptr;
    }
    return m;
}

extern "C" void spm_free(SpmModel *m) { delete m; }

extern "C" int spm_vocab_size(const SpmModel *m) { return m->proc.GetPieceSize(); }

extern "C" int spm_encode(const SpmModel *m, const char *text, size_t len, int **ids, size_t *n,
                          Error *err) {
    std::vector<int> out;
    auto s = m->proc.Encode(std::string(text, len), &out);
    if (!s.ok()) return fail(err, s);
    *ids = static_cast<int *>(std::malloc((out.size() + 1) * sizeof(int)));
    if (!*ids) return error_set(err, "sentencepiece: out of memory for %zu ids", out.size());
    if (!out.empty()) std::memcpy(*ids, out.data(), out.size() * sizeof(int));  // NULL data: UB
    *n = out.size();
    return 0;
}

extern "C" int spm_decode(const SpmModel *m, const int *ids, size_t n, char **text, Error *err) {
    std::string out;
    auto s = m->proc.Decode(std::vector<int>(ids, ids + n), &out);
    if (!s.ok()) return fail(err, s);
    *text = copy_bytes(out);
    if (!*text) return error_set(err, "sentencepiece: out of memory for %zu bytes", out.size());
    return 0;
}

extern "C" const char *spm_id_to_piece(const SpmModel *m, int id) {
    return m->proc.IdToPiece(id).c_str();
}

extern "C" int spm_piece_to_id(const SpmModel *m, const char *piece) {
    int id = m->proc.PieceToId(piece);
    // Unknown pieces map to <unk>; only <unk> itself may legitimately return its id.
    return (id == m->proc.unk_id() && std::strcmp(piece, spm_id_to_piece(m, id)) != 0) ? -1 : id;
}

extern "C" int spm_is_byte(const SpmModel *m, int id, unsigned char *byte) {
    if (!m->proc.IsByte(id)) return 0;
    // Byte pieces are spelled "<0xAB>".
    *byte = static_cast<unsigned char>(std::strtoul(spm_id_to_piece(m, id) + 3, nullptr, 16));
    return 1;
}
