#!/usr/bin/env bash
# The research experiments at 5 seeds (configs/research-*.toml), then their tables (where.md, restart.md,
# groups.md):
#   bash benchmarks/research/run.sh [where|restart|groups ...]      (default: all three)
# Each factorial writes results.json under benchmarks/research/<name>/ (models and units are not kept).
# The where designs of one task share their all-quantized cell, teachers and floats: the first one's finished
# trainings (OUT/units) seed the others', which the engine resumes from.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/research
fact() {  # name, then the factorial's arguments
    local name=$1; shift
    mkdir -p "$out/$name"
    ternq factorial --seeds 0:5 --quiet --json --out "$out/$name" --force "$@" > "$out/$name/stdout.json"
}
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(where restart groups)
for w in "${what[@]}"; do
    for task in lorenz sine ecg; do
        if [ "$w" = restart ]; then
            [ "$task" = ecg ] && continue
            fact "restart-$task" --config configs/research-restart.toml --task "$task"
            continue
        fi
        if [ "$w" = groups ]; then
            for g in 4 8 16; do
                fact "groups-$task-$g" --config configs/research-groups.toml --task "$task" \
                    --factor "student.scale_group=0,$g"
            done
            fact "groups-$task-sign" --config configs/research-groups.toml --task "$task" \
                --factor "student.scale_sign=false,true"
            for t in 0.35 0.65; do
                fact "groups-$task-thr$t" --config configs/research-groups.toml --task "$task" \
                    --factor "student.zero_threshold=0.5,$t"
            done
            continue
        fi
        for part in gate cand out input recurrent; do
            name="where-$task-$part"
            if [ "$part" != gate ] && [ -d "$out/where-$task-gate/units" ]; then
                mkdir -p "$out/$name/units"
                cp -n "$out/where-$task-gate/units"/s*-teacher-* "$out/where-$task-gate/units"/s*-float-* \
                    "$out/where-$task-gate/units"/s*-run01-* "$out/$name/units/" 2>/dev/null || true
            fi
            fact "$name" --config configs/research-where.toml --task "$task" --factor "student.float_matrices=none,$part"
        done
    done
done
python benchmarks/research/summary.py "$out"
