#!/usr/bin/env python3
"""Tiny Hugging Face models of the four layouts dllm imports, with their reference logits.

Writes tests/fixtures/hf_models/NAME/ for each fixture below: config.json and
model.safetensors (saved by the reference implementation itself), the tokenizer files (copied
from tests/fixtures/hf/FAMILY), and reference.safetensors holding `tokens` [B, T] (as F32) and
the reference `logits` [B, T, vocab] in fp32. tests/test_hf_models.c loads each directory with
dllm and compares its logits with these, without Python.

bf16 fixtures store bf16 weights; their reference logits come from those same bf16 weights
widened to fp32 (dllm widens them on load), so the comparison is still an fp32 one.

LLaDA and Dream have no class in transformers: their published modeling files are imported
from a Fast-dLLM checkout (github.com/NVlabs/Fast-dLLM: llada/model/ and dream/model/) whose
path is the --fastdllm argument. That code is read at generation time and never committed.

--check-export DLLM also runs `DLLM export` on every fixture and loads the result back with
the reference class: its logits must equal the reference ones (dllm's, within the C test's
tolerance); and trains two small dllm models (MDM and AR, grouped-query attention), exports
them, and checks that LLaDA's class and LlamaForCausalLM give `DLLM logits`' logits.

Needs: pip install torch transformers==4.49.0 einops safetensors (the version Fast-dLLM pins;
its Dream code does not run on newer transformers).

--transformers5 writes the FIXTURES_TF5 directories instead, with transformers >= 5 (no
Fast-dLLM needed): LLaMA and Qwen2 models saved the way transformers 5 saves every config, RoPE
settings inside one `rope_parameters` block (rope_theta, rope_type, scaling factors) and the
dtype as `dtype`. Their rope_theta differs from 10000 so that a reader ignoring the block
gives other logits.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf_models")
TOKENIZERS = os.path.join(ROOT, "tests", "fixtures", "hf")
B, T = 2, 12

# name: (layout, tokenizer family, vocabulary (>= the tokenizer's), dtype, shape options)
FIXTURES = {
    "llada": ("llada", "llama3", 1024, torch.float32, dict(n_kv_heads=2, weight_tying=False)),
    "llada_bf16": ("llada", "llama3", 1009, torch.bfloat16, dict(n_kv_heads=2, weight_tying=False)),
    "dream": ("dream", "qwen2", 1005, torch.float32, dict(num_key_value_heads=2)),
    "llama": ("llama", "llama3", 1009, torch.float32,
              dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2": ("qwen2", "qwen2", 1024, torch.bfloat16,
              dict(num_key_value_heads=1, tie_word_embeddings=True)),
    # Llama 3.1/3.2's RoPE scaling, set so that head 8's four frequencies (wavelengths 6.3, 63,
    # 628, 6283) fall in all three bands: kept (< 32/4), blended (< 32/0.5), stretched
    "llama3_rope": ("llama", "llama3", 1009, torch.float32,
                    dict(num_key_value_heads=2, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                       "low_freq_factor": 0.5, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 32})),
}
# transformers >= 5: rope_theta and rope_scaling are saved inside rope_parameters
FIXTURES_TF5 = {
    "llama_tf5": ("llama", "llama3", 1009, torch.float32,
                  dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500000.0)),
    "qwen2_tf5": ("qwen2", "qwen2", 1024, torch.bfloat16,
                  dict(num_key_value_heads=1, tie_word_embeddings=True, rope_theta=1000000.0)),
    "llama3_rope_tf5": ("llama", "llama3", 1009, torch.float32,
                        dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500000.0,
                             rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                           "low_freq_factor": 0.5, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 32})),
}
MASK = {"llama3": 1007, "qwen2": 1003}


def tokenizer_size(family):
    with open(os.path.join(TOKENIZERS, family, "tokenizer.json")) as f:
        t = json.load(f)
    return max([len(t["model"]["vocab"])] + [a["id"] + 1 for a in t["added_tokens"]])


def build(layout, family, vocab, options, fastdllm):
    torch.manual_seed(1234)
    if layout == "llada":
        sys.path.insert(0, fastdllm)
        from llada.model.configuration_llada import LLaDAConfig
        from llada.model.modeling_llada import LLaDAModelLM
        cfg = LLaDAConfig(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=48, mlp_ratio=4,
                          activation_type="silu", block_type="llama", rope=True,
                          rope_theta=500000.0, layer_norm_type="rms", rms_norm_eps=1e-5,
                          max_sequence_length=64, vocab_size=vocab, embedding_size=vocab,
                          include_bias=False, include_qkv_bias=False, mask_token_id=MASK[family],
                          eos_token_id=1003, pad_token_id=1003, init_device="cpu",
                          attention_dropout=0.0, residual_dropout=0.0, embedding_dropout=0.0,
                          use_cache=False, **options)
        model = LLaDAModelLM(cfg, init_params=True)
    elif layout == "dream":
        sys.path.insert(0, fastdllm)
        from dream.model.configuration_dream import DreamConfig
        from dream.model.modeling_dream import DreamModel
        cfg = DreamConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                          tie_word_embeddings=False, mask_token_id=MASK[family], pad_token_id=1000,
                          bos_token_id=1000, eos_token_id=1002, rope_theta=1000000.0,
                          use_cache=False, **options)
        model = DreamModel(cfg)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
        Config, Model = (LlamaConfig, LlamaForCausalLM) if layout == "llama" else (
            Qwen2Config, Qwen2ForCausalLM)
        options = dict(dict(rope_theta=10000.0), **options)
        cfg = Config(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6,
                     **options)
        model = Model(cfg)
    # larger than the usual init, so attention is far from uniform and every weight matters
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def logits_of(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.float()


def make(name, fastdllm):
    layout, family, vocab, dtype, options = {**FIXTURES, **FIXTURES_TF5}[name]
    model = build(layout, family, vocab, options, fastdllm)
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    # the reference computes in fp32 from the stored (possibly bf16-rounded) weights; its
    # buffers (RoPE frequencies) stay fp32, as a bf16 model's would not
    model = build(layout, family, vocab, options, fastdllm)
    model.load_state_dict({k: v.float() for k, v in load_file(
        os.path.join(out, "model.safetensors")).items()}, strict=False)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZERS, family, f), out)
    # token ids below the tokenizer's size; the diffusion models' inputs hold [MASK]s
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, tokenizer_size(family) - 10, (B, T), generator=g)
    if layout in ("llada", "dream"):
        tokens[:, 3::4] = MASK[family]
    tokens = tokens.tolist()
    logits = logits_of(model, tokens)
    exact = logits_of(model.double(), tokens)
    model.float()
    noise = ((logits.double() - exact).abs().max() / exact.abs().max()).item()
    if layout in ("llada", "dream"):  # bidirectional: the last token changes the first row
        changed = [row[:] for row in tokens]
        changed[0][-1] = (changed[0][-1] + 1) % 900
        assert not torch.allclose(logits_of(model, changed)[0, 0], logits[0, 0])
    save_file({"tokens": torch.tensor(tokens, dtype=torch.float32), "logits": logits.contiguous()},
              os.path.join(out, "reference.safetensors"))
    for leftover in ("generation_config.json",):
        if os.path.exists(os.path.join(out, leftover)):
            os.remove(os.path.join(out, leftover))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {layout}, vocab {vocab}, {dtype}, {size / 1e6:.2f} MB; "
          f"reference fp32 vs fp64: max rel error {noise:.2e}")
    return model, tokens, logits


def check_export(name, dllm, model, tokens, logits):
    """dllm export of the fixture, loaded by the reference class, gives the same logits."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "export")
        subprocess.run([dllm, "export", os.path.join(OUT, name), "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
        cls = type(model)
        again = cls.from_pretrained(out, torch_dtype=torch.float32).eval()
        err = ((logits_of(again, tokens) - logits).abs().max() / logits.abs().max()).item()
        print(f"  export of {name} -> {cls.__name__}.from_pretrained: max rel error {err:.2e}")
        assert err < 1e-5, err


def check_native_exports(dllm, fastdllm):
    """dllm's own models (an MDM and an AR model with grouped-query attention, trained a few
    steps) exported, loaded by LLaDA's class and by LlamaForCausalLM: their logits equal
    dllm's (`dllm logits`)."""
    sys.path.insert(0, fastdllm)
    from llada.model.modeling_llada import LLaDAModelLM
    from safetensors.torch import load_file as load
    from transformers import LlamaForCausalLM

    def run(*args):
        subprocess.run([dllm, *args], check=True, stdout=subprocess.DEVNULL)

    with tempfile.TemporaryDirectory() as d:
        shards = os.path.join(d, "shards")
        run("prepare", "--tokenizer", os.path.join(OUT, "llama"), "--input",
            os.path.join(ROOT, "README.md"), "--out", shards, "--val-fraction", "0.2")
        for objective, cls in (("mdm", LLaDAModelLM), ("ar", LlamaForCausalLM)):
            model, out = os.path.join(d, objective), os.path.join(d, objective + "_hf")
            run("train", "--data", shards, "--run", model, "--objective", objective,
                "--steps", "3", "--n-layer", "2", "--n-head", "4", "--n-kv-head", "2",
                "--d-model", "32", "--d-ff", "48", "--seq-len", "16", "--batch-size", "2",
                "--eval-every", "0")
            run("export", model, "--out", out)
            tokens = "1 50 1007 300 1007 7 8 9,4 1007 1007 900 10 11 12 13"
            ref = os.path.join(d, objective + ".safetensors")
            run("logits", "--model", model, "--tokens", tokens, "--out", ref)
            r = load(ref)
            again = cls.from_pretrained(out, torch_dtype=torch.float32).eval()
            got = logits_of(again, r["tokens"].long().tolist())
            err = ((got - r["logits"]).abs().max() / r["logits"].abs().max()).item()
            print(f"  dllm {objective} model -> export -> {cls.__name__}: max rel error vs "
                  f"dllm's logits {err:.2e}")
            assert err < 1e-5, err


def main():
    import transformers
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fastdllm", help="a Fast-dLLM checkout (llada/, dream/)")
    ap.add_argument("--transformers5", action="store_true",
                    help="write the transformers-5 fixtures (FIXTURES_TF5) instead")
    ap.add_argument("--check-export", metavar="DLLM", help="also check `DLLM export`")
    args = ap.parse_args()
    major = int(transformers.__version__.split(".")[0])
    if args.transformers5 != (major >= 5):
        sys.exit(f"transformers {transformers.__version__}: --transformers5 needs >= 5, the "
                 "other fixtures 4.49 (Fast-dLLM's code)")
    if not args.transformers5 and not args.fastdllm:
        sys.exit("--fastdllm is needed for the LLaDA and Dream fixtures")
    fastdllm = os.path.abspath(args.fastdllm) if args.fastdllm else None
    os.makedirs(OUT, exist_ok=True)
    for name in FIXTURES_TF5 if args.transformers5 else FIXTURES:
        model, tokens, logits = make(name, fastdllm)
        if args.check_export:
            check_export(name, args.check_export, model, tokens, logits)
    if args.check_export and not args.transformers5:
        check_native_exports(args.check_export, fastdllm)


if __name__ == "__main__":
    main()
