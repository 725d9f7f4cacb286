#!/usr/bin/env python3
"""Tiny Hugging Face models of the layouts dllm imports, with their reference logits.

Writes tests/fixtures/hf_models/NAME/ for each fixture below: config.json and
model.safetensors (saved by the reference implementation itself), the tokenizer files (copied
from tests/fixtures/hf/FAMILY), and reference.safetensors holding `tokens` [B, T] (as F32) and
the reference `logits` [B, T, vocab] in fp32. tests/test_hf_models.c loads each directory with
dllm and compares its logits with these, without Python.

bf16 fixtures store bf16 weights; their reference logits come from those same bf16 weights
widened to fp32 (dllm widens them on load), so the comparison is still an fp32 one.

LLaDA and Dream have no class in transformers: their published modeling files are imported
from a Fast-dLLM checkout (github.com/NVlabs/Fast-dLLM: llada/model/ and dream/model/) whose
path is the --fastdllm argument. LLaDA-MoE's (modeling_lladamoe.py and
configuration_lladamoe.py, as its Hugging Face repository ships them; a copy is in
github.com/InfiniTensor/InfiniLM: modeling_lladamoe.py at commit 0a7e522a, its configuration at
239f1d70) come from the directory --lladamoe names;
its fixture also stores each MoE layer's expert picks (`picks` [layers, B * T, k]). LLaDA
2.0's (modeling_llada2_moe.py and configuration_llada2_moe.py, as its Hugging Face repository
ships them) come from the directory --llada2 names; that code needs transformers >= 4.50 and
< 5 (the fixture was written with 4.57.1), and its reference logits are taken under the
block-causal mask its generate() builds (as the 1/0 4D mask its mask preparation expects, with
eager attention), over 64 tokens in two blocks of 32. That code is read at generation time and
never committed.

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
gives other logits. Qwen3 (q/k norms), which transformers 4.49 lacks, is written there too.
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
    # LLaDA-MoE (its own modeling_lladamoe.py, --lladamoe): a dense first layer, then two MoE
    # layers of 8 experts of width 16, 2 per token, a shared expert of width 24, q/k norms and
    # the expert bias (random: it changes which experts win, and the weights as the code adds it)
    "llada_moe": ("llada_moe", "llama3", 1024, torch.float32,
                  dict(num_key_value_heads=2, moe_layer_freq=[0, 1, 1], num_experts=8,
                       num_experts_per_tok=2, expert_intermediate_size=16,
                       shared_expert_intermediate_size=24, moe_router_enable_expert_bias=True)),
    # LLaDA 2.0 (its own modeling_llada2_moe.py, --llada2): a dense first layer, then two MoE
    # layers of 8 experts in 4 groups (the best 2 groups eligible), 2 picks per token scaled by
    # 2.5, one shared expert, a random expert bias, q/k norms, RoPE on half of each head; 64
    # tokens in two blocks of 32 under its block-causal mask
    "llada2": ("llada2", "llama3", 1024, torch.float32,
               dict(num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, n_group=4,
                    topk_group=2, moe_intermediate_size=16, num_shared_experts=1,
                    first_k_dense_replace=1, partial_rotary_factor=0.5)),
    # Mistral's sliding window: each query sees itself and the 3 keys before it (T is 12)
    "mistral": ("mistral", "llama3", 1009, torch.float32,
                dict(num_key_value_heads=2, tie_word_embeddings=False, sliding_window=4)),
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
    # Qwen3: per-head RMS norms on q and k (random gains, as every weight here), no biases
    "qwen3": ("qwen3", "qwen2", 1024, torch.float32,
              dict(num_key_value_heads=2, tie_word_embeddings=True, head_dim=8,
                   rope_theta=1000000.0)),
    # Qwen3-0.6B's kind: heads of 16 over hidden 32 / 4 heads (q is 64 wide), untied head
    "qwen3_hd": ("qwen3", "qwen2", 1024, torch.float32,
                 dict(num_key_value_heads=2, tie_word_embeddings=False, head_dim=16,
                      rope_theta=1000000.0)),
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
    elif layout == "llada_moe":
        code = code_package(fastdllm, "lladamoe", ("modeling_lladamoe.py",
                                                    "configuration_lladamoe.py"))
        cfg = code.configuration_lladamoe.LLaDAConfig(
            vocab_size=vocab, hidden_size=32, num_attention_heads=4, num_hidden_layers=3,
            dense_intermediate_size=48, max_position_embeddings=64, rope_theta=50000.0,
            partial_rotary_factor=1.0, rms_norm_eps=1e-5, qk_layernorm=True,
            moe_router_score_function="softmax", router_aux_loss_coef=0.01,
            mask_token_id=MASK[family], eos_token_id=1003, pad_token_id=1003,
            tie_word_embeddings=False, use_cache=False, attn_implementation="eager", **options)
        model = random_expert_bias(code.modeling_lladamoe.LLaDAMoEModelLM(cfg))
    elif layout == "llada2":
        code = code_package(fastdllm, "llada2", ("modeling_llada2_moe.py",
                                                  "configuration_llada2_moe.py"))
        cfg = code.configuration_llada2_moe.LLaDA2MoeConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
            num_attention_heads=4, head_dim=8, max_position_embeddings=64, rope_theta=600000.0,
            rms_norm_eps=1e-5, use_qkv_bias=False, use_qk_norm=True, use_bias=False,
            routed_scaling_factor=2.5, mask_token_id=MASK[family], eos_token_id=1003,
            pad_token_id=1003, tie_word_embeddings=False, use_cache=False,
            attn_implementation="eager", **options)
        model = random_expert_bias(code.modeling_llada2_moe.LLaDA2MoeModelLM(cfg))
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
        import transformers
        family = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral", "qwen3": "Qwen3"}
        Config = getattr(transformers, family[layout] + "Config")
        Model = getattr(transformers, family[layout] + "ForCausalLM")
        options = dict(dict(rope_theta=10000.0), **options)
        if layout == "mistral":  # eager attention: the mask transformers builds, window included
            options["attn_implementation"] = "eager"
        cfg = Config(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6,
                     **options)
        model = Model(cfg)
    # larger than the usual init, so attention is far from uniform and every weight matters
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def code_package(path, name, files):
    """A released model's modeling and configuration files (from the directory --lladamoe or
    --llada2 names) imported as one package: the modeling file imports its configuration
    relatively."""
    import importlib
    pkg = os.path.join(tempfile.gettempdir(), "dllm_" + name + "_code")
    os.makedirs(pkg, exist_ok=True)
    for f in files:
        shutil.copy(os.path.join(path, f), pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    sys.path.insert(0, os.path.dirname(pkg))
    code = importlib.import_module("dllm_" + name + "_code")
    for f in files:
        importlib.import_module("dllm_" + name + "_code." + f[:-3])
    return code


def random_expert_bias(model):
    """The routers' expert biases drawn at random (a buffer, which the weights' init leaves at
    zero): they change which experts win."""
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("expert_bias"):
                b.copy_(torch.randn(b.shape) * 0.05)
    return model


def block_mask(T, block):
    """LLaDA 2.0's block-causal attention as its mask preparation reads a 4D mask: 1 where a
    query of block b sees a key (blocks 0 .. b), 0 elsewhere."""
    n = T // block
    return torch.tril(torch.ones(n, n)).repeat_interleave(block, 0).repeat_interleave(block, 1)


def llada2_logits(model, tokens):
    x = torch.tensor(tokens)
    mask = block_mask(x.shape[1], 32)[None, None].expand(x.shape[0], 1, -1, -1)
    with torch.no_grad():
        return model(x, attention_mask=mask.to(next(model.parameters()).dtype)).logits.float()


def expert_picks(model, tokens):
    """Each MoE layer's picks, as the reference routes: [MoE layers, B * T, k], best first."""
    picks = []
    if hasattr(model.model, "word_embeddings"):  # LLaDA 2.0: its gate returns the picks
        hooks = [l.mlp.gate.register_forward_hook(lambda mod, inp, out: picks.append(out[0]))
                 for l in model.model.layers if hasattr(l.mlp, "gate")]
        llada2_logits(model, tokens)
        for h in hooks:
            h.remove()
        return torch.stack(picks)
    for layer in model.model.layers:
        if layer.mlp_type != "moe":
            continue
        hook = layer.mlp.gate.register_forward_hook(
            lambda mod, inp, out: picks.append(out.detach()))
        logits_of(model, tokens)
        hook.remove()
    moe = [l.mlp for l in model.model.layers if l.mlp_type == "moe"]
    out = []
    for logits, mlp in zip(picks, moe):
        weights = torch.softmax(logits.float(), dim=1)
        if mlp.expert_bias is not None:
            weights = weights + mlp.expert_bias
        out.append(torch.topk(weights, mlp.top_k, dim=-1)[1])
    return torch.stack(out)


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
    rows = 64 if layout == "llada2" else T  # LLaDA 2.0: two blocks of 32
    tokens = torch.randint(0, tokenizer_size(family) - 10, (B, rows), generator=g)
    if layout in ("llada", "dream", "llada_moe", "llada2"):
        tokens[:, 3::4] = MASK[family]
    tokens = tokens.tolist()
    run = llada2_logits if layout == "llada2" else logits_of
    logits = run(model, tokens)
    exact = run(model.double(), tokens)
    model.float()
    noise = ((logits.double() - exact).abs().max() / exact.abs().max()).item()
    if layout == "mistral":  # the window matters: without it the later rows change
        options_no_window = dict(options, sliding_window=None)
        plain = build(layout, family, vocab, options_no_window, fastdllm)
        plain.load_state_dict(model.state_dict())
        wide = logits_of(plain, tokens)
        assert torch.allclose(wide[:, :4], logits[:, :4], atol=1e-5)
        assert not torch.allclose(wide[:, 4:], logits[:, 4:], atol=1e-2)
    if layout == "llada2":  # block-causal: block 1's tokens leave block 0's rows alone
        changed = [row[:] for row in tokens]
        changed[0][40] = (changed[0][40] + 1) % 900
        moved = llada2_logits(model, changed) - logits
        assert moved[0, :32].abs().max() < 1e-5 and moved[0, 32:].abs().max() > 1e-2
        changed[0][40], changed[0][5] = tokens[0][40], (tokens[0][5] + 1) % 900
        assert llada2_logits(model, changed)[0, 0].sub(logits[0, 0]).abs().max() > 1e-2
    elif layout in ("llada", "dream", "llada_moe"):  # bidirectional: the last token changes row 0
        changed = [row[:] for row in tokens]
        changed[0][-1] = (changed[0][-1] + 1) % 900
        assert not torch.allclose(logits_of(model, changed)[0, 0], logits[0, 0])
    reference = {"tokens": torch.tensor(tokens, dtype=torch.float32), "logits": logits.contiguous()}
    if layout in ("llada_moe", "llada2"):  # the routing, expert for expert
        picks = expert_picks(model, tokens)
        print(f"  experts picked: {picks.unique().numel()} of {model.config.num_experts}")
        assert picks.unique().numel() >= model.config.num_experts // 2
        reference["picks"] = picks.float().contiguous()
    save_file(reference, os.path.join(out, "reference.safetensors"))
    for leftover in ("generation_config.json",):
        if os.path.exists(os.path.join(out, leftover)):
            os.remove(os.path.join(out, leftover))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {layout}, vocab {vocab}, {dtype}, {size / 1e6:.2f} MB; "
          f"reference fp32 vs fp64: max rel error {noise:.2e}")
    return model, tokens, logits


def check_export(name, dllm, model, tokens, logits, fastdllm=None):
    """dllm export of the fixture, loaded by the reference class, gives the same logits. LLaDA
    and Dream exports are also loaded the way users load the released models,
    AutoModel.from_pretrained(trust_remote_code=True), with the modeling files placed beside
    them (the config's auto_map names them)."""
    layout = {**FIXTURES, **FIXTURES_TF5}[name][0]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "export")
        subprocess.run([dllm, "export", os.path.join(OUT, name), "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
        loaders = [type(model).from_pretrained]
        if layout in ("llada", "dream"):
            from transformers import AutoModel
            code = os.path.join(fastdllm, layout, "model")
            for f in os.listdir(code):
                if f.endswith(".py") and f != "__init__.py":
                    shutil.copy(os.path.join(code, f), out)
            loaders.append(lambda path, **kw: AutoModel.from_pretrained(
                path, trust_remote_code=True, **kw))
        for load in loaders:
            again = load(out, torch_dtype=torch.float32).eval()
            err = ((logits_of(again, tokens) - logits).abs().max() / logits.abs().max()).item()
            how = "its class" if load is loaders[0] else "AutoModel"
            print(f"  export of {name} -> {type(again).__name__} ({how}): max rel error {err:.2e}")
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


MASK_WINS = "llada_mask_wins"


class Recorder(torch.nn.Module):
    """The model as LLaDA's generate() calls it, keeping every input it is given: the
    sequences before each denoising step (the guided half left out)."""

    def __init__(self, model, batch):
        super().__init__()
        self.model, self.batch, self.inputs = model, batch, []
        self.device = torch.device("cpu")

    def forward(self, x, attention_mask=None):
        self.inputs.append(x[:self.batch].tolist())
        return self.model(x, attention_mask=attention_mask)


def block_only_final(model, prompts, gen, block, steps, cfg, mask):
    """What a sampler that considers the current block only (and so ignores an earlier block's
    [MASK]) would output: greedy, low-confidence remasking. Only to count the cases where that
    differs from LLaDA's generate(): those are the ones the fixture tests."""
    import torch.nn.functional as F
    x = torch.cat([prompts, torch.full((prompts.shape[0], gen), mask)], 1)
    plen, per_block = prompts.shape[1], steps // (gen // block)
    for k in range(gen // block):
        bs, be = plen + k * block, plen + (k + 1) * block
        n = (x[:, bs:be] == mask).sum(1)
        for i in range(per_block):
            counts = n // per_block + (i < n % per_block).long()
            if cfg > 0:
                un = x.clone()
                un[:, :plen] = mask
                both = model(torch.cat([x, un])).logits
                cond, uncond = torch.chunk(both, 2)
                logits = uncond + (cfg + 1) * (cond - uncond)
            else:
                logits = model(x).logits
            x0 = logits.argmax(-1)
            p = torch.gather(F.softmax(logits, -1), -1, x0.unsqueeze(-1)).squeeze(-1)
            p[:, :bs] = -float("inf")
            p[:, be:] = -float("inf")
            p = torch.where(x == mask, p, torch.tensor(-float("inf")))
            for b in range(x.shape[0]):
                top = torch.topk(p[b], int(counts[b])).indices
                x[b, top] = x0[b, top]
    return x


def make_mask_wins(fastdllm, llada, factor):
    """A LLaDA model whose [MASK] output row is scaled by `factor` (4: [MASK] is the argmax at
    about a quarter of masked positions), and the states after every step of LLaDA's generate()
    (greedy, low-confidence remasking, [MASK] allowed as LLaDA allows it) for a set of prompts
    and schedules: tests/fixtures/hf_models/llada_mask_wins/reference_trace.json. A position
    that receives [MASK] stays masked and competes again in later steps and blocks."""
    sys.path.insert(0, llada)
    from generate import generate
    layout, family, vocab, dtype, options = FIXTURES["llada"]
    model = build(layout, family, vocab, options, fastdllm)
    mask = MASK[family]
    head = model.model.transformer.ff_out.weight
    with torch.no_grad():
        head[mask] *= factor
    out = os.path.join(OUT, MASK_WINS)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZERS, family, f), out)
    if os.path.exists(os.path.join(out, "generation_config.json")):
        os.remove(os.path.join(out, "generation_config.json"))
    g = torch.Generator().manual_seed(11)
    probe = torch.randint(0, 990, (4, 24), generator=g)
    probe[:, 8:] = mask
    wins = (logits_of(model, probe.tolist())[:, 8:].argmax(-1) == mask).float().mean().item()
    cases, revisited = [], 0
    # (prompt length, batch, gen_length, block_length, steps, cfg): several short blocks, so
    # that [MASK] left by one block meets the next ones
    settings = []
    for k in range(32):
        block = [2, 4, 4, 8][k % 4]
        blocks = 2 + k % 5
        per_block = block if k % 3 else max(1, block // 2)
        cfg = [0.0, 0.0, 0.0, 0.5][k % 4 if k % 8 < 4 else 3 - k % 4]
        settings.append((2 + k % 6, 1 + (k % 7 == 3 or k % 5 == 1), block * blocks, block,
                         per_block * blocks, cfg))
    for k, (plen, batch, gen, block, steps, cfg) in enumerate(settings):
        prompts = torch.randint(0, 990, (batch, plen), generator=g)
        rec = Recorder(model, batch)
        # an all-ones attention mask changes nothing; generate() needs one for guidance
        ones = torch.ones(batch, plen, dtype=torch.long) if cfg > 0 else None
        final = generate(rec, prompts, attention_mask=ones, steps=steps, gen_length=gen,
                         block_length=block, temperature=0.0, cfg_scale=cfg,
                         remasking="low_confidence", mask_id=mask)
        states = rec.inputs[1:] + [final.tolist()]
        with torch.no_grad():
            other = block_only_final(model, prompts, gen, block, steps, cfg, mask)
        revisited += not torch.equal(other, final)
        cases.append({"prompts": prompts.tolist(), "gen_length": gen, "block_length": block,
                      "steps": steps, "cfg": cfg, "states": states})
    with open(os.path.join(out, "reference_trace.json"), "w") as f:
        json.dump({"mask_id": mask, "cases": cases}, f, separators=(",", ":"))
    print(f"{MASK_WINS}: [MASK] is the argmax at {wins:.0%} of masked probe positions; "
          f"{len(cases)} cases, {revisited} whose output a sampler considering the current block "
          "alone would change")


def main():
    import transformers
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fastdllm", help="a Fast-dLLM checkout (llada/, dream/)")
    ap.add_argument("--transformers5", action="store_true",
                    help="write the transformers-5 fixtures (FIXTURES_TF5) instead")
    ap.add_argument("--check-export", metavar="DLLM", help="also check `DLLM export`")
    ap.add_argument("--llada", help="a LLaDA checkout (generate.py): also write the "
                                    "[MASK]-favouring model and its reference trace")
    ap.add_argument("--only", metavar="NAME", help="write this fixture alone")
    ap.add_argument("--lladamoe", help="a directory with LLaDA-MoE's modeling_lladamoe.py and "
                                       "configuration_lladamoe.py (the released model's code)")
    ap.add_argument("--llada2", help="a directory with LLaDA 2.0's modeling_llada2_moe.py and "
                                     "configuration_llada2_moe.py (the released model's code)")
    args = ap.parse_args()
    major = int(transformers.__version__.split(".")[0])
    if args.transformers5 != (major >= 5):
        sys.exit(f"transformers {transformers.__version__}: --transformers5 needs >= 5, the "
                 "other fixtures 4.49 (Fast-dLLM's code)")
    names = list(FIXTURES_TF5 if args.transformers5 else FIXTURES)
    if args.only:
        if args.only not in names:
            sys.exit(f"--only {args.only}: not one of {', '.join(names)}")
        names = [args.only]
    if not args.fastdllm and any(FIXTURES.get(n, ("",))[0] in ("llada", "dream") for n in names):
        sys.exit("--fastdllm is needed for the LLaDA and Dream fixtures")
    if not args.lladamoe and any(FIXTURES.get(n, ("",))[0] == "llada_moe" for n in names):
        sys.exit("--lladamoe is needed for the LLaDA-MoE fixture")
    if not args.llada2 and any(FIXTURES.get(n, ("",))[0] == "llada2" for n in names):
        sys.exit("--llada2 is needed for the LLaDA 2.0 fixture (with transformers 4.50 .. 4.x)")
    fastdllm = os.path.abspath(args.fastdllm) if args.fastdllm else None
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        layout = FIXTURES.get(name, ("",))[0]
        code = os.path.abspath(args.lladamoe) if layout == "llada_moe" \
            else os.path.abspath(args.llada2) if layout == "llada2" else fastdllm
        model, tokens, logits = make(name, code)
        if args.check_export:
            check_export(name, args.check_export, model, tokens, logits, fastdllm)
    if args.check_export and not args.transformers5 and not args.only:
        check_native_exports(args.check_export, fastdllm)
    if args.llada and not args.transformers5 and not args.only:
        make_mask_wins(fastdllm, os.path.abspath(args.llada), 4.0)


if __name__ == "__main__":
    main()
