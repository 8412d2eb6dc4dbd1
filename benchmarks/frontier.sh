#!/usr/bin/env bash
# The frontier study at 3 seeds: held-out error (scored metric) against weight bytes and instructions per step
# for ternary, int4 and int8, each trained with configs/best.toml's recipe, with PTQ of the equal-budget float
# (configs/frontier-<task>.toml). Every training is kept in runs/frontier/<task>/units (rerunning resumes);
# the small files are copied to benchmarks/frontier/<task>/: results.json, results.csv, timing.json,
# frontier.md and the two plots.
#   bash benchmarks/frontier.sh [task ...]      (default: lorenz sine ecg; WORKERS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(lorenz sine ecg)
for task in "${tasks[@]}"; do
    runs="runs/frontier/$task"
    ternq frontier --config "configs/frontier-$task.toml" --workers "${WORKERS:-2}" --out "$runs"
    mkdir -p "benchmarks/frontier/$task"
    for f in results.json results.csv timing.json frontier.md error-vs-bytes.png error-vs-instructions.png; do
        [ ! -f "$runs/$f" ] || cp "$runs/$f" "benchmarks/frontier/$task/$f"
    done
done
