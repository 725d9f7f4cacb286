#!/usr/bin/env bash
# Prints what a refactor must leave unchanged: training losses (every logged
# field but times), sampling traces, eval tables and logits of small models on
# every objective, weight kind and model source. Run it before and after a
# change and diff the two outputs:
#   bash scripts/fingerprint.sh /tmp/fp_before > /tmp/before.txt
#   (change) ... bash scripts/fingerprint.sh /tmp/fp_after > /tmp/after.txt
#   diff /tmp/before.txt /tmp/after.txt
# Uses tests/fixtures (no corpus needed); ~1 minute on 2 cores.
set -euo pipefail
out=${1:?usage: fingerprint.sh WORK_DIR}
dllm=${DLLM:-./dllm}
rm -rf "$out"; mkdir -p "$out"
text=tests/fixtures/genesis.txt
shape=(--tokenizer bytes --n-layer 2 --n-head 2 --d-model 32 --d-ff 64 --seq-len 32)
tiny=(--batch-size 4 --eval-every 10 --eval-windows 4 --eval-mc 2 --save-every 20 --log-every 10)

# log.jsonl without wall-clock fields (times and speeds differ run to run)
losses() { sed -E 's/"(time|elapsed|wall|ms|tok_per_s|tokens_per_s|sec|seconds|eta)[a-z_]*":[^,}]*,?//g' "$1/log.jsonl"; }
section() { printf '\n== %s\n' "$*"; }
run() { section "$*"; "$dllm" "$@" 2>&1 | sed -E 's/[0-9.]+ ?(s|ms|tok\/s|tokens\/s)\b/T/g'; }

python_free_sft() {  # an SFT file of 6 prompt/response pairs drawn from the text
  for i in 1 2 3 4 5 6; do printf '{"prompt":"%s plus %s","response":"%s"}\n' $i $i $((i+i)); done
}
python_free_sft > "$out/qa.jsonl"
printf '{"prompt":"1 plus 1","choices":["2","3","4"],"answer":0}\n{"prompt":"2 plus 2","choices":["5","4"],"answer":1}\n' > "$out/choices.jsonl"

for obj in mdm ar; do
  run train --data $text "${shape[@]}" --run "$out/$obj" --objective $obj --steps 20 "${tiny[@]}"
  section "losses $obj"; losses "$out/$obj"
done
run train --data $text "${shape[@]}" --run "$out/bd3" --objective bd3 --block-size 4 --steps 20 "${tiny[@]}"
section "losses bd3"; losses "$out/bd3"
run train --data $text --run "$out/adapt" --init "$out/ar" --objective mdm --steps 20 "${tiny[@]}"
section "losses adapt"; losses "$out/adapt"
run train --data $text "${shape[@]}" --run "$out/tern" --weights ternary --steps 20 "${tiny[@]}"
section "losses ternary"; losses "$out/tern"
run train --data $text "${shape[@]}" --run "$out/rec" --recompute 1 --grad-accum 2 --steps 20 "${tiny[@]}"
section "losses recompute"; losses "$out/rec"
run train --sft "$out/qa.jsonl" --init "$out/mdm" --run "$out/sft" --steps 20 "${tiny[@]}"
section "losses sft"; losses "$out/sft"
run train --sft "$out/qa.jsonl" --init "$out/ar" --objective ar --run "$out/lora" --lora-rank 4 --steps 20 "${tiny[@]}"
section "losses lora"; losses "$out/lora"
run train --resume "$out/mdm" --data $text --steps 30
section "losses resumed"; losses "$out/mdm"

samp() { local name=$1; shift; run sample --device cpu --trace "$out/$name.trace" "$@"; section "trace $name"; cat "$out/$name.trace"; }
samp mdm --model "$out/mdm" --prompt "In the" --gen-length 16 --block-length 8 --steps 8
samp mdm_rand --model "$out/mdm" --prompt "In the" --gen-length 16 --block-length 8 --steps 8 --remasking random --temperature 0.9
samp mdm_thr --model "$out/mdm" --prompt "In the" --gen-length 16 --block-length 8 --steps 16 --threshold 0.1 --cache dual
samp mdm_cfg --model "$out/mdm" --prompt "In the" --gen-length 16 --block-length 16 --steps 8 --cfg 1.5
samp ar --model "$out/ar" --prompt "In the" --gen-length 16
samp ar_topk --model "$out/ar" --prompt "In the" --gen-length 16 --temperature 0.8 --top-k 5 --batch 2
samp bd3 --model "$out/bd3" --prompt "In the" --gen-length 16 --steps 8
samp spec --model "$out/ar" --draft "$out/adapt" --prompt "In the" --gen-length 16
samp tern --model "$out/tern" --prompt "In the" --gen-length 16 --block-length 8 --steps 8
samp sft --model "$out/sft" --prompt "3 plus 3" --gen-length 8 --block-length 8 --steps 8
samp lora --model "$out/lora" --prompt "3 plus 3" --gen-length 8

run eval --device cpu --model "$out/mdm,$out/ar,$out/bd3" --data $text --mc 2 --windows 4
run eval --device cpu --model "$out/sft,$out/lora" --sft "$out/qa.jsonl" --mc 2
run eval --device cpu --model "$out/sft,$out/lora" --choices "$out/choices.jsonl" --mc 2
run eval --device cpu --model "$out/sft,$out/lora" --exact "$out/qa.jsonl"

run export "$out/tern" --out "$out/tern.packed" --format ternary
samp packed --model "$out/tern.packed" --prompt "In the" --gen-length 16 --block-length 8 --steps 8
run export "$out/ar" --out "$out/ar_hf" --dtype bf16

run export "$out/lora" --out "$out/lora_peft"
for m in llada dream llama qwen2 llada_bf16 llama3_rope_tf5 "$out/ar" "$out/ar_hf" "$out/tern.packed"; do
  f=tests/fixtures/hf_models/$m; [ -e "$f" ] || f=$m
  "$dllm" logits --model "$f" --tokens "1 2 3 4 5,6 7 8 9 10" --out "$out/logits.safetensors" >/dev/null
  section "logits $m"; sha256sum < "$out/logits.safetensors"
done
samp peft --model "$out/lora_peft" --prompt "3 plus 3" --gen-length 8
section "file bytes"
(cd "$out" && sha256sum mdm/step_00000030.ckpt lora/step_00000020.ckpt tern.packed ar_hf/model.safetensors \
   ar_hf/config.json lora_peft/adapter_model.safetensors lora_peft/adapter_config.json)

