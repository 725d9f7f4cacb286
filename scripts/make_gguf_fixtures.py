#!/usr/bin/env python3
"""GGUF fixtures, written by llama.cpp's own gguf-py (PyPI `gguf`) from dllm's Hugging Face
fixture models (tests/fixtures/hf_models), as llama.cpp's convert_hf_to_gguf.py lays them out:
ggml tensor names, q and k rows permuted for "llama" and "llada", 1-D tensors in F32, matrices
in the file's type (a matrix whose rows are not whole blocks stays F32, as llama.cpp's
quantizer leaves it), the tokenizer as tokens / merges / token types / pre-tokenizer name.

    tests/fixtures/gguf/NAME.TYPE.gguf   the model NAME (llama, qwen2, llada, dream) in TYPE
    tests/fixtures/gguf/expected.safetensors
        NAME.TYPE.TENSOR: the file's TENSOR as gguf-py dequantises it (the rows in the file's
        order) for two tensors of each quantised model, which dllm's decoded weights must equal
    tests/fixtures/gguf/llada_blocks.TYPE.gguf   (Q8_0, Q4_0) a random LLaDA model (the llada
        fixture's tokenizer and shape, widths 64: every matrix whole blocks of 32, so every one
        is quantised and dllm keeps the file in 8 bits); compared with its own decoding
    tests/fixtures/gguf/iq2_xs.gguf      a tensor in a type dllm refuses (IQ2_XS, random bytes)
    tests/fixtures/gguf/blocks.gguf      one tensor of each type dllm reads (Q4_K, Q5_K, Q6_K:
        random blocks, gguf-py has no quantiser for them) and, for each, NAME.expected: gguf-py's
        dequantisation in F32

The models' logits to compare with are the HF fixtures' reference.safetensors (transformers).
Usage: python scripts/make_gguf_fixtures.py   (needs numpy, torch, gguf, safetensors)
       python scripts/make_gguf_fixtures.py --convert DIR OUT.gguf TYPE
           any LLaDA, LLaMA, Qwen2 or Dream directory (e.g. a `dllm export`) as one GGUF file in
           TYPE (F32, BF16, Q8_0, Q4_0): the benchmarks' files
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import gguf
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file
from safetensors.torch import load_file  # the fixtures may hold bf16, which numpy lacks

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HF = os.path.join(ROOT, "tests", "fixtures", "hf_models")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")
T = gguf.GGMLQuantizationType
FORMATS = {"llama": ["F32", "BF16", "Q8_0", "Q4_0"], "qwen2": ["F32", "Q8_0"],
           "llada": ["F32", "Q4_0"], "dream": ["Q8_0"]}
PRE = {  # the pre-tokenizer names llama.cpp gives these split patterns
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama-bpe",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
}


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: a head's two halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    """permute's inverse: the rows back in transformers' order."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_map(arch, n_layer):
    """HF name -> ggml name."""
    if arch == "llada":
        pre = "model.transformer.blocks.%d."
        layer = {"attn_norm.weight": "attn_norm.weight", "q_proj.weight": "attn_q.weight",
                 "k_proj.weight": "attn_k.weight", "v_proj.weight": "attn_v.weight",
                 "attn_out.weight": "attn_output.weight", "ff_norm.weight": "ffn_norm.weight",
                 "ff_proj.weight": "ffn_gate.weight", "up_proj.weight": "ffn_up.weight",
                 "ff_out.weight": "ffn_down.weight"}
        top = {"model.transformer.wte.weight": "token_embd.weight",
               "model.transformer.ln_f.weight": "output_norm.weight",
               "model.transformer.ff_out.weight": "output.weight"}
    else:
        pre = "model.layers.%d."
        layer = {"input_layernorm.weight": "attn_norm.weight",
                 "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                 "self_attn.v_proj.weight": "attn_v.weight", "self_attn.q_proj.bias": "attn_q.bias",
                 "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
                 "self_attn.o_proj.weight": "attn_output.weight",
                 "post_attention_layernorm.weight": "ffn_norm.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
        top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}
    out = dict(top)
    for l in range(n_layer):
        for k, v in layer.items():
            out[pre % l + k] = "blk.%d.%s" % (l, v)
    return out


def hparams(arch, c):
    if arch == "llada":
        return dict(n_layer=c["n_layers"], d=c["d_model"], ff=c["mlp_hidden_size"], heads=c["n_heads"],
                    kv=c["n_kv_heads"], ctx=c["max_sequence_length"], theta=c["rope_theta"],
                    eps=c["rms_norm_eps"], mask=c["mask_token_id"], vocab=c["embedding_size"])
    return dict(n_layer=c["num_hidden_layers"], d=c["hidden_size"], ff=c["intermediate_size"],
                heads=c["num_attention_heads"], kv=c["num_key_value_heads"],
                ctx=c["max_position_embeddings"], theta=c["rope_theta"], eps=c["rms_norm_eps"],
                mask=c.get("mask_token_id"), vocab=c["vocab_size"])


def add_tokenizer(w, d, vocab_size, mask):
    tok = json.load(open(os.path.join(d, "tokenizer.json")))
    cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
    regex = tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    tokens = ["[PAD%d]" % i for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for text, i in tok["model"]["vocab"].items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    for a in tok["added_tokens"]:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(PRE[regex])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    ids = {t: i for i, t in enumerate(tokens)}
    for key, add in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                     ("pad_token", w.add_pad_token_id)):
        text = cfg.get(key)
        if isinstance(text, dict):
            text = text["content"]
        if text in ids:
            add(ids[text])
    if mask is not None:
        w.add_mask_token_id(mask)
    if isinstance(cfg.get("chat_template"), str):
        w.add_chat_template(cfg["chat_template"])


ARCHS = {"llada": "llada", "llama": "llama", "qwen2": "qwen2", "Dream": "dream"}


def write_model(name, qtype, expected):
    write_gguf(os.path.join(HF, name), os.path.join(OUT, "%s.%s.gguf" % (name, qtype.lower())),
               qtype, expected, name)


def write_gguf(d, path, qtype, expected, name):
    """The model directory d as GGUF file path in qtype; expected (a dict or None) receives
    two tensors' dequantisations under name."""
    c = json.load(open(os.path.join(d, "config.json")))
    arch = ARCHS[c["model_type"]]
    h = hparams(arch, c)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(h["n_layer"])
    w.add_context_length(h["ctx"])
    w.add_embedding_length(h["d"])
    w.add_feed_forward_length(h["ff"])
    w.add_head_count(h["heads"])
    w.add_head_count_kv(h["kv"])
    w.add_rope_freq_base(h["theta"])
    w.add_layer_norm_rms_eps(h["eps"])
    w.add_rope_dimension_count(h["d"] // h["heads"])
    w.add_vocab_size(h["vocab"])
    if arch in ("llada", "dream"):
        w.add_causal_attention(False)
        w.add_diffusion_shift_logits(arch == "dream")  # as convert_hf_to_gguf.py writes it
    add_tokenizer(w, d, h["vocab"], h["mask"])
    names = tensor_map(arch, h["n_layer"])
    weights = load_file(os.path.join(d, "model.safetensors"))
    for hf_name, x in weights.items():
        g = names[hf_name]
        x = x.float().numpy()
        if arch in ("llama", "llada") and g.endswith(("attn_q.weight", "attn_q.bias")):
            x = permute(x, h["heads"])
        if arch in ("llama", "llada") and g.endswith(("attn_k.weight", "attn_k.bias")):
            x = permute(x, h["kv"])
        t = T[qtype]
        if x.ndim == 1 or (t in (T.Q8_0, T.Q4_0) and x.shape[-1] % 32):
            t = T.F32
        if t == T.F32:
            w.add_tensor(g, x)
            continue
        q = quantize(x, t)
        w.add_tensor(g, q, raw_shape=q.shape, raw_dtype=t)
        if expected is not None and g in ("blk.0.attn_q.weight", "blk.1.ffn_gate.weight"):
            x = dequantize(q, t).astype(np.float32)
            if g.endswith("attn_q.weight") and arch in ("llama", "llada"):
                x = unpermute(x, h["heads"])
            expected["%s.%s.%s" % (name, qtype.lower(), g)] = x
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_blocks(expected_out):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(os.path.join(OUT, "blocks.gguf"), "blocks")
    x = rng.standard_normal((2, 256)).astype(np.float32)
    for qtype in ("F16", "BF16", "Q8_0", "Q4_0"):
        t = T[qtype]
        q = quantize(x, t)
        w.add_tensor(qtype.lower(), q, raw_shape=q.shape, raw_dtype=t)
        w.add_tensor(qtype.lower() + ".expected", dequantize(q, t).astype(np.float32))
    # Q4_K: random blocks (fp16 scales in a plausible range, every scale byte and nibble)
    n_blocks = 2
    blocks = rng.integers(0, 256, size=(n_blocks, 144), dtype=np.uint8)
    for b in range(n_blocks):
        blocks[b, 0:2] = np.frombuffer(np.float16(rng.uniform(0.001, 0.05)).tobytes(), np.uint8)
        blocks[b, 2:4] = np.frombuffer(np.float16(rng.uniform(0.001, 0.05)).tobytes(), np.uint8)
    q = blocks.reshape(2, 144)
    w.add_tensor("q4_k", q, raw_shape=q.shape, raw_dtype=T.Q4_K)
    w.add_tensor("q4_k.expected", dequantize(q, T.Q4_K).astype(np.float32).reshape(2, 256))
    # Q5_K (d, dmin first) and Q6_K (d last): random blocks the same way
    for name, size, scale_at in (("q5_k", 176, (0, 2)), ("q6_k", 210, (208,))):
        blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
        for b in range(n_blocks):
            for at in scale_at:
                blocks[b, at:at + 2] = np.frombuffer(np.float16(rng.uniform(0.001, 0.05)).tobytes(),
                                                     np.uint8)
        w.add_tensor(name, blocks, raw_shape=blocks.shape, raw_dtype=T[name.upper()])
        w.add_tensor(name + ".expected",
                     dequantize(blocks, T[name.upper()]).astype(np.float32).reshape(2, 256))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_blocks_model():
    """llada_blocks.{q8_0,q4_0}.gguf: the llada fixture with d_model and the MLP at 64 (heads of
    32), random weights of std 0.3 (smaller ones attend too uniformly to test anything)."""
    src = os.path.join(HF, "llada")
    c = json.load(open(os.path.join(src, "config.json")))
    c["d_model"] = c["mlp_hidden_size"] = 64
    rng = np.random.default_rng(11)
    wider = {32: 64, 48: 64}
    weights = {k: (0.3 * rng.standard_normal([wider.get(n, n) for n in v.shape])).astype(np.float32)
               for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
    for k, v in weights.items():
        if v.ndim == 1:  # norm gains
            weights[k] = np.ones_like(v)
    with tempfile.TemporaryDirectory() as d:
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(src, f), d)
        save_file(weights, os.path.join(d, "model.safetensors"))
        for qtype in ("Q8_0", "Q4_0"):
            write_gguf(d, os.path.join(OUT, "llada_blocks.%s.gguf" % qtype.lower()), qtype, None,
                       None)


def write_refused():
    w = gguf.GGUFWriter(os.path.join(OUT, "iq2_xs.gguf"), "llama")
    q = np.random.default_rng(8).integers(0, 256, size=(1, 74), dtype=np.uint8)
    w.add_tensor("token_embd.weight", q, raw_shape=q.shape, raw_dtype=T.IQ2_XS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    for name, types in FORMATS.items():
        for qtype in types:
            write_model(name, qtype, expected)
    save_file(expected, os.path.join(OUT, "expected.safetensors"))
    write_blocks(expected)
    write_blocks_model()
    write_refused()
    for f in sorted(os.listdir(OUT)):
        print("%-28s %8d bytes" % (f, os.path.getsize(os.path.join(OUT, f))))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--convert":
        write_gguf(sys.argv[2], sys.argv[3], sys.argv[4], None, None)
    else:
        main()
