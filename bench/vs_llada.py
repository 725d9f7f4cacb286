"""dllm's LLaDA sampler against LLaDA's own generate() in PyTorch, side by side in one run.

Both run on the same weights (a dllm MDM exported with `dllm export` to LLaDA's layout, which
LLaDA's published model class loads) and the same settings (greedy, gen 64, block 32, 64 steps,
low-confidence remasking, batch 1, [MASK] allowed as LLaDA allows it: `--allow-mask 1`). For 1
and 2 threads, idle and beside one busy process, it prints the median seconds of 3 generations
(after one warm-up; model loading not counted on either side) and PyTorch / dllm (> 1: dllm is
faster), and how many of the 64 generated tokens the two have in common.

Nothing of LLaDA is part of dllm: bring your own checkouts.
  python3 bench/vs_llada.py --model runs/demo/mdm --llada LLADA_CHECKOUT --fastdllm FAST_DLLM_CHECKOUT
LLADA_CHECKOUT holds LLaDA's generate.py (github.com/ML-GSAI/LLaDA); FAST_DLLM_CHECKOUT holds
llada/model/modeling_llada.py (github.com/NVlabs/Fast-dLLM; LLaDA's class, transformers 4.49).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def run(cmd, env=None):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)


def dllm_sample(dllm, model, prompt, threads, trace):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run([dllm, "sample", "--model", model, "--prompt", prompt, "--gen-length", "64",
               "--block-length", "32", "--steps", "64", "--temperature", "0", "--allow-mask", "1",
               "--device", "cpu", "--trace", trace], env)
    last = out.stderr.strip().splitlines()[-1]  # "llada sampler: ..., 0.26 s"
    return float(last.rsplit(",", 1)[1].split()[0])


def dllm_tokens(trace, prompt_len, mask_id):
    """The 64 generated ids from a sampling trace; a position whose pick was [MASK] (exact
    LLaDA lets it win) is never committed and stays [MASK], as in LLaDA's output."""
    tokens = {}
    with open(trace) as f:
        for line in f:
            for c in json.loads(line)["committed"]:
                tokens[c["pos"]] = c["token"]
    return [tokens.get(p, mask_id) for p in range(prompt_len, prompt_len + 64)]


def median_time(fn, runs=3):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a dllm MDM run or checkpoint")
    ap.add_argument("--llada", required=True, help="checkout with LLaDA's generate.py")
    ap.add_argument("--fastdllm", required=True, help="checkout with llada/model/modeling_llada.py")
    ap.add_argument("--dllm", default="./dllm")
    ap.add_argument("--prompt", default="And God said,")
    args = ap.parse_args()
    sys.path.insert(0, args.llada)
    sys.path.insert(0, args.fastdllm)
    from generate import generate
    from llada.model.modeling_llada import LLaDAModelLM

    work = tempfile.mkdtemp()
    export = os.path.join(work, "llada")
    run([args.dllm, "export", args.model, "--out", export])
    cfg = json.load(open(os.path.join(export, "config.json")))
    model = LLaDAModelLM.from_pretrained(export, torch_dtype=torch.float32).eval()
    ids = run([args.dllm, "tokenizer", "encode", "--tokenizer", export, "--text", args.prompt])
    prompt = [cfg["bos_token_id"]] + [int(t) for t in ids.stdout.split()]
    x = torch.tensor([prompt])
    trace = os.path.join(work, "trace.jsonl")

    print("| machine | threads | PyTorch generate() (s) | dllm sample (s) | PyTorch / dllm | equal tokens |")
    print("|---|---|---|---|---|---|")
    busy = None
    for load in ("idle", "loaded"):
        if load == "loaded":
            busy = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = {}

            def torch_run():
                out["x"] = generate(model, x, steps=64, gen_length=64, block_length=32,
                                    temperature=0.0, mask_id=cfg["mask_token_id"])
            t_torch = median_time(torch_run)
            t_dllm = statistics.median(
                [dllm_sample(args.dllm, export, args.prompt, threads, trace) for _ in range(3)])
            ours = dllm_tokens(trace, len(prompt), cfg["mask_token_id"])
            same = sum(a == b for a, b in zip(out["x"][0, len(prompt):].tolist(), ours))
            print(f"| {load} | {threads} | {t_torch:.3f} | {t_dllm:.3f} | "
                  f"{t_torch / t_dllm:.2f} | {same}/64 |", flush=True)
    busy.kill()


if __name__ == "__main__":
    main()
