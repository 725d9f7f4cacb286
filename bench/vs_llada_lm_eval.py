"""lm-evaluation-harness on a masked-diffusion model two ways, side by side in one run: the
harness's own local-completions model against `dllm serve`, and LLaDA's lm_eval model class
(eval_llada.py's `llada_dist`) running the same weights in PyTorch. Both score the committed
multiple-choice task of tests/fixtures/lm_eval (12 items, 33 choices) on the CPU, one thread.

The two estimate a choice's log-likelihood differently, as each is meant to: LLaDA's class
draws `--mc` masked copies of every (context, choice) pair (its ELBO), dllm answers the
harness's echo + logprobs request with the left-to-right decoding likelihood (one masked row
per token; docs/lm_eval.md). The timing is of the whole harness run, model loading included,
alternated (dllm, LLaDA, dllm, ...) `--runs` times; medians printed.

Nothing of LLaDA is part of dllm: bring your own checkouts.
  python3 bench/vs_llada_lm_eval.py --model DIR --llada LLADA_CHECKOUT --fastdllm FAST_DLLM_CHECKOUT
DIR: a LLaDA-layout model directory with a tokenizer.json (e.g. tests/fixtures/hf_models/llada,
or `dllm export` of an MDM trained with a Hugging Face tokenizer); LLADA_CHECKOUT holds
eval_llada.py and generate.py (github.com/ML-GSAI/LLaDA); FAST_DLLM_CHECKOUT holds
llada/model/{configuration,modeling}_llada.py (github.com/NVlabs/Fast-dLLM, transformers 4.49).
The python running this needs what LLaDA's class was written for: torch, transformers 4.49,
accelerate 0.34.2 and lm_eval[api] 0.4.8 (the harness then tokenizes with the model's
tokenizer.json on both sides).
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TASK = "dllm_choices"


def prepare_model(src, fastdllm, work):
    """The model directory with LLaDA's modeling code beside it, named in config.json."""
    dst = os.path.join(work, "model")
    shutil.copytree(src, dst)
    for name in ("configuration_llada.py", "modeling_llada.py"):
        shutil.copy(os.path.join(fastdllm, "llada", "model", name), dst)
    cfg_path = os.path.join(dst, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["auto_map"] = {"AutoConfig": "configuration_llada.LLaDAConfig",
                       "AutoModel": "modeling_llada.LLaDAModelLM"}
    json.dump(cfg, open(cfg_path, "w"), indent=2)
    return dst, cfg


def accuracy(out_dir):
    results = sorted(glob.glob(f"{out_dir}/**/results_*.json", recursive=True))[-1]
    return json.load(open(results))["results"][TASK]["acc,none"]


def run_dllm(dllm, model, work, i, env):
    out = os.path.join(work, f"dllm_{i}")
    t0 = time.perf_counter()
    server = subprocess.Popen([dllm, "serve", "--model", model, "--port", "0", "--device", "cpu",
                               "--log", os.devnull], stdout=subprocess.PIPE, text=True, env=env)
    port = int(server.stdout.readline().split("127.0.0.1:")[1].split("/")[0])
    try:
        subprocess.run([sys.executable, "-m", "lm_eval", "--model", "local-completions",
                        "--model_args", f"model=model,base_url=http://127.0.0.1:{port}/v1/"
                        f"completions,num_concurrent=1,max_length=64,tokenizer_backend="
                        f"huggingface,tokenizer={model}", "--tasks", TASK,
                        "--include_path", "tests/fixtures/lm_eval", "--output_path", out],
                       check=True, capture_output=True, env=env)
    finally:
        server.terminate()
        server.wait()
    return time.perf_counter() - t0, accuracy(out)


def run_llada(llada, model, cfg, mc, work, i, env):
    out = os.path.join(work, f"llada_{i}")
    driver = (
        "import sys; sys.path.insert(0, %r); import eval_llada; "
        "from lm_eval import simple_evaluate; from lm_eval.tasks import TaskManager; "
        "from lm_eval.loggers import EvaluationTracker; "
        "r = simple_evaluate(model='llada_dist', model_args=%r, tasks=[%r], "
        "task_manager=TaskManager(include_path='tests/fixtures/lm_eval'), "
        "evaluation_tracker=EvaluationTracker(output_path=%r)); "
        "import json; print(json.dumps(r['results'][%r]))"
        % (llada, f"model_path={model},mask_id={cfg['mask_token_id']},max_length=64,"
           f"mc_num={mc},batch_size={mc},device=cpu,is_check_greedy=False", TASK, out, TASK))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", driver], check=True, capture_output=True,
                          text=True, env=env)
    seconds = time.perf_counter() - t0
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])["acc,none"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--llada", required=True)
    ap.add_argument("--fastdllm", required=True)
    ap.add_argument("--dllm", default="./dllm")
    ap.add_argument("--mc", type=int, default=32, help="LLaDA's Monte-Carlo draws per choice")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="0",
               HF_DATASETS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as work:
        model, cfg = prepare_model(args.model, args.fastdllm, work)
        dllm_times, llada_times, accs = [], [], {}
        for i in range(args.runs):  # alternated: each side sees the same machine state
            t, accs["dllm"] = run_dllm(args.dllm, model, work, i, env)
            dllm_times.append(t)
            t, accs["llada"] = run_llada(args.llada, model, cfg, args.mc, work, i, env)
            llada_times.append(t)
    d, l = statistics.median(dllm_times), statistics.median(llada_times)
    print(f"| harness run | median s (of {args.runs}) | runs (s) | accuracy |")
    print("|---|---|---|---|")
    print(f"| local-completions -> dllm serve (left-to-right likelihood) | {d:.2f} | "
          f"{', '.join(f'{x:.2f}' for x in dllm_times)} | {accs['dllm']:.3f} |")
    print(f"| LLaDA's llada_dist in PyTorch (ELBO, mc {args.mc}) | {l:.2f} | "
          f"{', '.join(f'{x:.2f}' for x in llada_times)} | {accs['llada']:.3f} |")
    print(f"LLaDA / dllm wall time: {l / d:.2f}")


if __name__ == "__main__":
    main()
