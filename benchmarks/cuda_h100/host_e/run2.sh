#!/bin/bash
# the second paired run: base (45e4119, unpacked into .probe/base) against new (the code now: the first launches'
# kernels loaded once at the device check, a GPU batch's figures side by side, the exit without the interpreter's
# teardown), alternating; then each one's timeline
# base's folder: mkdir -p .probe/base && git archive 45e4119 ternq | tar -x -C .probe/base (carried with .whl)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1
NEW=/tmp/site:$PWD; BASE=$PWD/.probe/base
R=$OUT/g; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv > $R/machine.txt; nproc >> $R/machine.txt
base() { (cd $BASE && PYTHONPATH=/tmp/site python3 -m ternq "$@"); }  # python -m puts the folder first
new() { PYTHONPATH=$NEW python3 -m ternq "$@"; }
export -f base new; export NEW BASE
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt bash -c "$2 \"\$@\"" _ "${@:3}"; }
F="factorial --quiet --device cuda --seeds 0:10"
S=$(date +%s)
base $F --out /tmp/c_base > $R/c_base.out 2>&1 &
new $F --out /tmp/c_new > $R/c_new.out 2>&1 &
base teacher --hidden 32 --device cuda --quiet --out /tmp/c_t.npz > $R/c_t.out 2>&1 &
wait; echo "compile $(( $(date +%s) - S )) s" >> $R/walls.txt
for r in 1 2 3; do for v in base new; do T "f10_${v}_$r" $v $F --out /tmp/f_${v}_$r > $R/f_${v}_$r.out 2>&1; done; done
tar czf $OUT/g.tgz -C $OUT g
for r in 1 2; do for v in base new; do for d in cuda cpu; do
  T "t_${v}_${d}_$r" $v teacher --hidden 32 --device $d --json --quiet --out /tmp/t_${v}_${d}_$r.npz > $R/t_${v}_${d}_$r.json 2> $R/t_${v}_${d}_$r.err
done; done; done
tar czf $OUT/g.tgz -C $OUT g
# one H=32 teacher of 2000 epochs (T=100), as `ternq bench` times it: the GPU's one-model launch, 3 calls after a short
# one, each version; one CPU core's batched kernel (4 models a call, time / 4)
SINGLE='import sys, numpy as np; from ternq import bench; rng = np.random.default_rng(0); d, m = sys.argv[1], int(sys.argv[2]); bench._device_call(d, m, 32, 20, rng); print(d, m, [round(bench._device_call(d, m, 32, 2000, rng) / m, 4) for _ in range(3)])'
for v in base new; do
  if [ $v = base ]; then (cd $BASE && PYTHONPATH=/tmp/site python3 -c "$SINGLE" cuda 1) >> $R/single.txt 2>&1; else PYTHONPATH=$NEW python3 -c "$SINGLE" cuda 1 >> $R/single.txt 2>&1; fi
done
PYTHONPATH=$NEW python3 -c "$SINGLE" cpu 4 >> $R/single.txt 2>&1
PYTHONPATH=$NEW python3 benchmarks/factorial_timeline.py $R/timeline_new.json --calls -- $F --out /tmp/p_new > $R/p_new.out 2>&1
(cd $BASE && PYTHONPATH=/tmp/site:$BASE python3 $OLDPWD/benchmarks/factorial_timeline.py $R/timeline_base.json --calls -- $F --out /tmp/p_base > $R/p_base.out 2>&1)
md5sum /tmp/f_*/results.json /tmp/c_*/results.json /tmp/p_*/results.json > $R/md5.txt
for f in $R/t_*.json; do echo "$f $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['seconds'], d['eval_mse'].hex() if isinstance(d['eval_mse'], float) else d['eval_mse'])" $f)"; done > $R/teachers.txt
tar czf $OUT/g.tgz -C $OUT g
cat $R/walls.txt $R/md5.txt $R/teachers.txt $R/single.txt
