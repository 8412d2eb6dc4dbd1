#!/usr/bin/env bash
# The honest figures at 5 seeds: vs an equal-budget float on the scored metric and the notes' whole-sequence
# metric, and every model against the best simple forecast. Each command writes results.json (both metrics,
# the reference and its budget, every baseline) under benchmarks/honest/<name>/.
#
#   bash benchmarks/honest.sh [name ...]      (default: all; names below)
#
# The notes' design (configs/default.toml) takes minutes; configs/best.toml (students 6000 + 3000 epochs,
# equal-budget floats 9000 epochs) takes hours on a laptop.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/honest
run() {  # name, then the factorial's arguments
    local name=$1; shift
    mkdir -p "$out/$name"
    ternq factorial --seeds 0:5 --quiet --json --out "$out/$name" --force "$@" > "$out/$name/stdout.json"
}
declare -A RUNS=(
    [seeds-sine]="--task sine"
    [best-sine]="--config configs/best.toml --task sine"
    [best-multisine]="--config configs/best.toml --task multisine"
    [best-lorenz]="--config configs/best.toml --task lorenz"
    [best-ecg]="--config configs/best.toml --task ecg"
    [best-sunspots]="--config configs/best.toml --task sunspots"
    [best-co2]="--config configs/best.toml --task co2"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(seeds-sine best-sine best-multisine best-lorenz best-ecg best-sunspots best-co2)
for n in "${names[@]}"; do
    # shellcheck disable=SC2086
    run "$n" ${RUNS[$n]}
done
