#!/usr/bin/env bash
# The MDM-vs-AR comparison suite: writes the synthetic tasks (data/tasks/), then runs every
# plan under scripts/plans/ as a sweep (sweeps/<plan>/REPORT.md each). Safe to rerun after an
# interruption: finished runs are skipped, an interrupted one resumes.
# Usage: bash scripts/compare.sh [plan ...]      (default: all plans; needs scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./dllm ] || make dllm
for task in addition reversal sudoku; do
    [ -f "data/tasks/$task/test.jsonl" ] && continue
    extra=""
    [ "$task" = addition ] && extra="--digits 2 --train 3000"
    ./dllm task "$task" --out "data/tasks/$task" $extra
done
# the sudoku reproduction: hard 4x4 puzzles whose answer is the holes alone, in reading order
# and in a solver's order (the same puzzles)
for answer in holes solver; do
    [ -f "data/tasks/sudoku_$answer/test.jsonl" ] ||
        ./dllm task sudoku --holes 10 --train 20000 --answer "$answer" --out "data/tasks/sudoku_$answer"
done
# the reversal reproduction: the facts as pretraining text
[ -f data/tasks/reversal_text/test.jsonl ] ||
    ./dllm task reversal --text 1 --test 40 --out data/tasks/reversal_text
plans=("$@")
[ ${#plans[@]} -eq 0 ] && plans=(scripts/plans/*.md)
for plan in "${plans[@]}"; do
    echo "== $plan"
    ./dllm sweep "$plan"
done
