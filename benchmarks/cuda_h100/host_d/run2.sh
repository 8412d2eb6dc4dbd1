#!/bin/bash
# run right after run1.sh on the same machine: 10- and 100-seed factorials, one teacher on each device, and
# the bench (whole calls, data and copies included); then run3: python3 benchmarks/cuda_h100/launches/probe.py
# p_R.json --calls -- factorial --quiet --device cuda --seeds 0:10 --out /tmp/p_R, R = 1, 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
R=$OUT/s; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/machine.txt; nproc >> $R/machine.txt
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
T fwarm python3 -m ternq factorial --quiet --device cuda --seeds 0:10 --out /tmp/fw > /dev/null 2>&1
for r in 1 2; do T "f10_w15_$r" python3 -m ternq factorial --quiet --device cuda --workers 15 --seeds 0:10 --out /tmp/g10w_$r > $R/g10w_$r.out 2>&1; done
for r in 1 2; do T "f100_w15_$r" python3 -m ternq factorial --quiet --device cuda --workers 15 --seeds 0:100 --out /tmp/g100w_$r > $R/g100w_$r.out 2>&1; done
T "f100_w2_1" python3 -m ternq factorial --quiet --device cuda --seeds 0:100 --out /tmp/g100_1 > $R/g100_1.out 2>&1
md5sum /tmp/g*/results.json >> $R/md5.txt
tar czf $OUT/s.tgz -C $OUT s
for r in 1 2; do for d in cpu cuda; do T "teacher_${d}_$r" python3 -m ternq teacher --hidden 32 --device $d --json --quiet --out /tmp/t_$d.npz > $R/teacher_${d}_$r.json 2>&1; done; done
md5sum /tmp/t_*.npz >> $R/md5.txt
tar czf $OUT/s.tgz -C $OUT s
timeout 200 python3 -m ternq bench --device cuda --models 1 --models 16 --models 256 --models 4096 --budget 0.5 --quiet --json > $R/bench.json 2> $R/bench.err
tar czf $OUT/s.tgz -C $OUT s
cat $R/walls.txt $R/md5.txt; grep -h seconds $R/teacher_*.json | head
