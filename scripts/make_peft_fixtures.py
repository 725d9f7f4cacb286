#!/usr/bin/env python3
"""LoRA adapters written by Hugging Face's peft library, with the adapted model's logits.

For each fixture below, wraps a tiny model of tests/fixtures/hf_models (made by
make_hf_model_fixtures.py) in a peft LoraConfig with random, non-zero A and B, and writes
tests/fixtures/peft/NAME/: adapter_config.json and adapter_model.safetensors as peft saves them
(base_model_name_or_path rewritten to the fixture's relative path), and reference.safetensors
with the base fixture's `tokens` and the adapted model's fp32 `logits`. tests/test_hf_models.c
loads each directory with dllm (the adapters on their base) and compares, without Python.

--check-export DLLM also trains rank-4 adapters with dllm on the llama fixture, exports them
(`dllm export RUN --out DIR`, a PEFT directory), loads DIR with peft on the base and checks that
its logits equal dllm's (`dllm logits`); and the merged export (--merge 1) with transformers.

Needs: pip install torch transformers peft safetensors
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASES = os.path.join(ROOT, "tests", "fixtures", "hf_models")
OUT = os.path.join(ROOT, "tests", "fixtures", "peft")

# name: (base fixture, rank, alpha, target modules)
FIXTURES = {
    "llama_all": ("llama", 4, 8.0,
                  ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "qwen2_qv_down": ("qwen2", 2, 5.0, ["q_proj", "v_proj", "down_proj"]),
}


def base_model(name):
    # fp32 compute on the stored weights (a bf16 file widens exactly, as dllm widens it)
    return AutoModelForCausalLM.from_pretrained(os.path.join(BASES, name),
                                                torch_dtype=torch.float32).eval()


def logits_of(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.float()


def make(name):
    base, rank, alpha, targets = FIXTURES[name]
    torch.manual_seed(1234)
    model = base_model(base)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0,
                        init_lora_weights=False)  # random B too: the adapters change logits
    peft_model = get_peft_model(model, config).eval()
    ref = load_file(os.path.join(BASES, base, "reference.safetensors"))
    tokens = ref["tokens"].long().tolist()
    logits = logits_of(peft_model, tokens)
    moved = (logits - ref["logits"]).abs().max().item()
    assert moved > 1e-2, f"{name}: the adapters barely move the logits ({moved})"
    out = os.path.join(OUT, name)
    peft_model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # peft's model card template: nothing to test
    path = os.path.join(out, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = os.path.join("..", "..", "hf_models", base)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({"tokens": ref["tokens"], "logits": logits.contiguous()},
              os.path.join(out, "reference.safetensors"))
    print(f"{name}: rank {rank}, alpha {alpha}, {len(targets)} targets on {base}; "
          f"logits moved by up to {moved:.3f} from the base's")


def check_export(dllm):
    """dllm-trained adapters, exported, read by peft; and the merged export by transformers."""
    with tempfile.TemporaryDirectory() as tmp:
        def run(*args):
            subprocess.run([dllm, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

        data = os.path.join(tmp, "sft.jsonl")
        with open(data, "w") as f:
            for i in range(64):
                f.write(json.dumps({"prompt": f"{i} plus {i}", "response": f"is {2 * i}"}) + "\n")
        base = os.path.join(BASES, "llama")
        runs = os.path.join(tmp, "run")
        run("train", "--sft", data, "--init", base, "--lora-rank", "4", "--lora-alpha", "8",
            "--steps", "20", "--lr", "3e-2", "--warmup", "2", "--batch-size", "4",
            "--seq-len", "48", "--eval-every", "0", "--device", "cpu", "--run", runs)
        adapters, merged = os.path.join(tmp, "peft"), os.path.join(tmp, "merged")
        run("export", runs, "--out", adapters)
        run("export", runs, "--out", merged, "--merge", "1")
        ref = load_file(os.path.join(base, "reference.safetensors"))
        tokens = ref["tokens"].long().tolist()
        text = ",".join(" ".join(str(t) for t in row) for row in tokens)
        mine = os.path.join(tmp, "dllm.safetensors")
        run("logits", "--model", runs, "--tokens", text, "--out", mine)
        want = load_file(mine)["logits"]
        assert (want - ref["logits"]).abs().max().item() > 1e-2, "training did not move the logits"
        got = logits_of(PeftModel.from_pretrained(base_model("llama"), adapters).eval(), tokens)
        err = ((got - want).abs().max() / want.abs().max()).item()
        print(f"dllm-trained adapters read by peft: max relative error vs dllm's logits {err:.2e}")
        assert err < 1e-5
        merged_model = AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float32)
        err = ((logits_of(merged_model.eval(), tokens) - want).abs().max() /
               want.abs().max()).item()
        print(f"dllm export --merge 1 read by transformers: max relative error {err:.2e}")
        assert err < 1e-5


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check-export", metavar="DLLM", help="also check dllm's exports with peft")
    args = p.parse_args()
    for name in FIXTURES:
        make(name)
    if args.check_export:
        check_export(os.path.abspath(args.check_export))


if __name__ == "__main__":
    sys.exit(main())
