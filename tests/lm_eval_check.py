"""lm-evaluation-harness (PyPI `lm_eval`, unmodified) against `dllm serve`: its
local-completions model with dllm's remote tokenizer (/tokenizer_info, /tokenize) runs the
committed tasks of tests/fixtures/lm_eval, and the scores are compared with dllm's own:
multiple-choice accuracy with `dllm eval --choices` on the same items, each greedy generation
with `dllm sample` on the same prompt. Prints one JSON line; exits non-zero on a difference.
Usage: python3 tests/lm_eval_check.py BASE_URL MODEL_NAME MODEL_DIR WORK_DIR
With --diffusion, the multiple-choice task alone runs on a diffusion model, its accuracy
compared with `dllm eval --choices --likelihood left-to-right` (the likelihood dllm serve
answers the harness's requests with; docs/lm_eval.md).
"""
import glob
import json
import re
import subprocess
import sys


def run_harness(base, name, tasks, work):
    subprocess.run([sys.executable, "-m", "lm_eval", "--model", "local-completions",
                    "--model_args", f"model={name},base_url={base}/v1/completions,"
                    "num_concurrent=1,max_retries=1", "--tasks", tasks,
                    "--include_path", "tests/fixtures/lm_eval", "--output_path", work,
                    "--log_samples"], check=True, capture_output=True, text=True)
    return json.load(open(sorted(glob.glob(f"{work}/**/results_*.json",
                                           recursive=True))[-1]))["results"]


def dllm_choices_accuracy(model_dir, likelihood):
    out = subprocess.run(["./dllm", "eval", "--model", model_dir, "--choices",
                          "tests/fixtures/lm_eval/choices.jsonl", "--chat", "0", "--likelihood",
                          likelihood], check=True, capture_output=True, text=True).stdout
    correct, total = map(int, re.search(r"(\d+)/(\d+)", out.splitlines()[-1]).groups())
    return correct / total


def main():
    base, name, model_dir, work = sys.argv[1:5]
    if "--diffusion" in sys.argv:
        results = run_harness(base, name, "dllm_choices", work)
        seen = {"lm_eval_choices_acc": results["dllm_choices"]["acc,none"],
                "dllm_eval_choices_acc": dllm_choices_accuracy(model_dir, "left-to-right")}
        assert abs(seen["dllm_eval_choices_acc"] - seen["lm_eval_choices_acc"]) < 1e-9, seen
        print(json.dumps(seen))
        return
    results = run_harness(base, name, "dllm_choices,dllm_generate", work)
    seen = {"lm_eval_choices_acc": results["dllm_choices"]["acc,none"],
            "lm_eval_generate_exact": results["dllm_generate"]["exact_match,first_word"]}

    seen["dllm_eval_choices_acc"] = dllm_choices_accuracy(model_dir, "elbo")
    assert abs(seen["dllm_eval_choices_acc"] - seen["lm_eval_choices_acc"]) < 1e-9, seen

    samples = [json.loads(line) for line in open(glob.glob(
        f"{work}/**/samples_dllm_generate_*.jsonl", recursive=True)[-1])]
    equal = 0
    for s in samples:
        prompt = s["doc"]["prompt"]
        text = subprocess.run(["./dllm", "sample", "--model", model_dir, "--prompt", prompt,
                               "--gen-length", "8", "--temperature", "0"], check=True,
                              capture_output=True).stdout.decode("utf-8", "replace")
        ours = text[len(prompt):].split("\n")[0]
        theirs = s["resps"][0][0]
        # a byte-level model may write invalid UTF-8: the server sends each bad byte as
        # U+FFFD, Python's decoder one per bad sequence
        ours, theirs = (re.sub("\ufffd+", "\ufffd", x) for x in (ours, theirs))
        assert ours == theirs, (prompt, ours, theirs)
        equal += 1
    seen["generations_equal"] = f"{equal}/{len(samples)}"
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
