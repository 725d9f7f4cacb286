#!/usr/bin/env bash
# Do threads pay? The LLaDA sampler (64 tokens, 2 blocks, 64 steps, batch 2) and a training
# step on a small and a larger random model, with 1 and 2 OpenMP threads, on an idle machine
# and beside one busy process, under dllm's default (an idle thread spins 1000 times, then
# sleeps: cli/dllm.c) and under OMP_WAIT_POLICY=active (libgomp's spinning, the old
# behaviour). Prints medians of 7 runs, 1 and 2 threads taking turns, and the ratio
# 2 threads / 1 thread (< 1: the second thread helps). The models train on data/shards (the
# demo's 4096-token BPE) when setup.sh made them, else on bytes of tests/fixtures/genesis.txt.
# Run from the project root after `make`:
#     bash bench/threads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
busy_pid=
trap '[ -n "$busy_pid" ] && kill $busy_pid 2>/dev/null; rm -rf "$work"' EXIT

data=data/shards
if [ ! -s data/shards/train_000000.bin ]; then
    head -c 200000 tests/fixtures/genesis.txt > "$work/text.txt"
    data=$work/text.txt
fi
make_model() {  # name, then the model flags
    local name=$1; shift
    ./dllm train --data "$data" --objective mdm --steps 1 --batch-size 2 --seq-len 128 \
        --eval-every 0 --run "$work/$name" "$@" > /dev/null
}
make_model small --n-layer 4 --d-model 128 --n-head 4 --d-ff 352
make_model large --n-layer 6 --d-model 384 --n-head 6 --d-ff 1024

# ./dllm under a wait policy: default (what dllm sets itself) or an OMP_WAIT_POLICY value
with_policy() {  # policy, then the command
    local policy=$1; shift
    if [ "$policy" = default ]; then
        env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$@"
    else
        env OMP_WAIT_POLICY="$policy" "$@"
    fi
}

# one sampling time (seconds, as dllm reports it)
sample_time() {  # model, threads, wait policy
    OMP_NUM_THREADS=$2 with_policy $3 ./dllm sample --model "$work/$1" \
        --prompt "In the beginning" --gen-length 64 --block-length 32 --steps 64 --batch 2 \
        --device cpu 2>&1 >/dev/null | sed -n 's/.*, \([0-9.]*\) s$/\1/p'
}

# median ms of training steps 2..6 (batch 16 x 128 tokens)
step_ms() {  # model, threads, wait policy
    rm -rf "$work/steps"
    OMP_NUM_THREADS=$2 with_policy $3 ./dllm train --data "$data" --objective mdm \
        --steps 6 --batch-size 16 --seq-len 128 --log-every 1 --eval-every 0 --save-every 0 \
        --run "$work/steps" $(cat "$work/$1.flags") 2>&1 |
        awk '/^step +[0-9]+\/6 \|/ { split($2, s, "/"); if (s[1] + 0 >= 2)
             for (i = 1; i <= NF; i++) if ($(i + 1) == "ms") print $i }' | sort -n | sed -n 3p
}

# "median at 1 thread | median at 2 threads | ratio" of 7 runs each, 1 and 2 threads taking
# turns: the two cores of a VM need not be equally fast (one of the CI machine's ran 1.5x
# slower), and runs in a row tend to stay on one of them
one_vs_two() {  # measure function, model, wait policy
    local run
    for run in 1 2 3 4 5 6 7; do
        echo "1 $($1 $2 1 $3)"
        echo "2 $($1 $2 2 $3)"
    done | awk '{ t[$1, ++n[$1]] = $2 }
        function median(k,   i, j, v, a) { for (i = 1; i <= n[k]; i++) a[i] = t[k, i]
            for (i = 1; i <= n[k]; i++) for (j = i + 1; j <= n[k]; j++)
                if (a[j] < a[i]) { v = a[i]; a[i] = a[j]; a[j] = v }
            return a[int((n[k] + 1) / 2)] }
        END { one = median(1); two = median(2); printf "%s | %s | %.2f", one, two, two / one }'
}
echo "--n-layer 4 --d-model 128 --n-head 4 --d-ff 352" > "$work/small.flags"
echo "--n-layer 6 --d-model 384 --n-head 6 --d-ff 1024" > "$work/large.flags"

echo "| model | machine | waiting | job | 1 thread | 2 threads | 2 / 1 |"
echo "|---|---|---|---|---|---|---|"
for load in idle loaded; do
    if [ $load = loaded ]; then
        sh -c 'while :; do :; done' &
        busy_pid=$!
    fi
    for model in small large; do
        for policy in default active; do
            name=$policy
            if [ $policy = default ]; then name="1000 spins (default)"; fi
            echo "| $model | $load | $name | sample (s) | $(one_vs_two sample_time $model $policy) |"
            echo "| $model | $load | $name | train step (ms) | $(one_vs_two step_ms $model $policy) |"
        done
    done
done
