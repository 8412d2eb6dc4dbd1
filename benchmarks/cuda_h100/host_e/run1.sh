#!/bin/bash
# run on the device from the repository root: the code before this stop (45e4119, unpacked into .probe/base) against
# the code now, side by side on one machine. base: `python3 -m ternq` of 45e4119; new: `python3 -m ternq` now (the
# context and the first launches' kernels made at the device check, the exit without the interpreter's teardown);
# soft: the code now through main() (no such exit). .whl holds a numpy 2.4 wheel.
# base's folder: mkdir -p .probe/base && git archive 45e4119 ternq | tar -x -C .probe/base (carried with .whl)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1
NEW=/tmp/site:$PWD; BASE=$PWD/.probe/base
R=$OUT/e; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/machine.txt; nproc >> $R/machine.txt
PYTHONPATH=$NEW python3 -c "import numba, numba_cuda, numpy; print(numba.__version__, numba_cuda.__version__, numpy.__version__)" >> $R/machine.txt
base() { (cd $BASE && PYTHONPATH=/tmp/site python3 -m ternq "$@"); }  # python -m puts the folder first
new() { PYTHONPATH=$NEW python3 -m ternq "$@"; }
soft() { PYTHONPATH=$NEW python3 -c "from ternq.cli import main; main()" "$@"; }
export -f base new soft; export NEW BASE
# T LABEL VERSION ARGS...: the wall of one process of VERSION (base, new or soft) from the shell
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt bash -c "$2 \"\$@\"" _ "${@:3}"; }
F="factorial --quiet --device cuda --seeds 0:10"
S=$(date +%s)
# the first processes compile (each copy of the code has its own caches; base's one-model launch its own kernel)
base $F --out /tmp/c_base > $R/c_base.out 2>&1 &
new $F --out /tmp/c_new > $R/c_new.out 2>&1 &
base teacher --hidden 32 --device cuda --quiet --out /tmp/c_t.npz > $R/c_t.out 2>&1 &
base factorial --quiet --device cuda --seeds 0:100 --workers 4 --out /tmp/c_hbase > $R/c_hbase.out 2>&1 &
new factorial --quiet --device cuda --seeds 0:100 --workers 4 --out /tmp/c_hnew > $R/c_hnew.out 2>&1 &
wait; echo "compile $(( $(date +%s) - S )) s" >> $R/walls.txt
for r in 1 2 3; do for v in base new soft; do
  T "f10_${v}_$r" $v $F --out /tmp/f_${v}_$r > $R/f_${v}_$r.out 2>&1
done; done
for r in 1 2; do for v in base new; do for d in cuda cpu; do
  $v teacher --hidden 32 --device $d --json --quiet --out /tmp/t_${v}_${d}_$r.npz > $R/t_${v}_${d}_$r.json 2> $R/t_${v}_${d}_$r.err
done; done; done
tar czf $OUT/e.tgz -C $OUT e
PYTHONPATH=$NEW python3 benchmarks/factorial_timeline.py $R/timeline_new.json --calls -- $F --out /tmp/p_new > $R/p_new.out 2>&1
for r in 1 2; do for v in new base; do
  T "f100_${v}_$r" $v factorial --quiet --device cuda --seeds 0:100 --workers 15 --out /tmp/h_${v}_$r > $R/h_${v}_$r.out 2>&1
done; done
md5sum /tmp/f_*/results.json /tmp/c_*/results.json /tmp/p_new/results.json > $R/md5.txt
md5sum /tmp/h_*/results.json >> $R/md5.txt
# the same figures from both versions (results.json records the code's version, so compare without it)
python3 - /tmp/f_base_1 /tmp/f_new_1 /tmp/f_soft_1 /tmp/h_base_1 /tmp/h_new_1 >> $R/md5.txt <<'PY'
import json, sys
def doc(d):
    r = json.load(open(d + "/results.json")); r.pop("versions", None); r.pop("timing", None); return r
print("same figures f10:", doc(sys.argv[1]) == doc(sys.argv[2]) == doc(sys.argv[3]), "f100:", doc(sys.argv[4]) == doc(sys.argv[5]))
PY
for f in /tmp/f_*_1 /tmp/h_*_1; do echo "$f $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['timing'])" $f/timing.json)"; done > $R/timing.txt
tar czf $OUT/e.tgz -C $OUT e
cat $R/walls.txt $R/md5.txt; grep -h '"seconds"\|"eval_mse"' $R/t_*.json | head -20
