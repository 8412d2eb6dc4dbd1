#!/bin/bash
# on the next GPU: tests/test_cuda.py at full size; the 10-seed factorial of this code beside 069f485's (the kernel as
# now, the gradient check and the rerun one after the other on a thread), alternating; the 100-seed factorial
# (default workers) twice; `ternq teacher --hidden 32` on each device, twice; `ternq bench --device cuda` at 1 and
# 4096 models with its one-teacher rows. The factorials' first (compiling) processes run beside the tests; walls from
# the shell, each run's timing.json; into $OUT/l.tgz. RUNS10, RUNS100, TEACHERS (runs of each) and BENCH=0 shorten it.
# .probe/b069 holds `git archive 069f485 ternq`.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/l; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/machine.txt 2>&1; nproc >> $R/machine.txt
rm -rf /tmp/base && mkdir /tmp/base && cp -r .probe/b069/ternq /tmp/base/ || exit 1
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
F="python3 -m ternq factorial --device cuda --quiet"
save() { for d in /tmp/c_* /tmp/new* /tmp/base*; do [ -f $d/timing.json ] && cp $d/timing.json $R/timing_${d#/tmp/}.json; done; tar czf $OUT/l.tgz -C /tmp l; }
T compile_new10 $F --seeds 0:10 --out /tmp/c_new10 > $R/c_new10.out 2>&1 &
(cd /tmp/base && PYTHONPATH=/tmp/site:/tmp/base T compile_base10 $F --seeds 0:10 --out /tmp/c_base10 > $R/c_base10.out 2>&1) &
T compile_new100 $F --seeds 0:100 --out /tmp/c_new100 > $R/c_new100.out 2>&1 &
timeout 270 python3 -m pytest -o addopts= -q -p no:cacheprovider tests/test_cuda.py > $R/tests.log 2>&1
echo "tests rc=$?" >> $R/tests.log; tail -3 $R/tests.log
wait; save
for r in $(seq ${RUNS10:-3}); do
  T new10_$r $F --seeds 0:10 --out /tmp/new10_$r > $R/new10_$r.out 2>&1
  (cd /tmp/base && PYTHONPATH=/tmp/site:/tmp/base T base10_$r $F --seeds 0:10 --out /tmp/base10_$r > $R/base10_$r.out 2>&1)
done
save
for r in $(seq ${RUNS100:-2}); do T new100_$r $F --seeds 0:100 --out /tmp/new100_$r > $R/new100_$r.out 2>&1; done
save
python3 benchmarks/same_results.py /tmp/c_*/results.json /tmp/new*/results.json /tmp/base*/results.json > $R/md5.txt
save
for r in $(seq ${TEACHERS:-2}); do  # one teacher as a user trains it (T=50, 2000 epochs): its training seconds are in the JSON
  for d in cuda cpu; do T teacher_${d}_$r python3 -m ternq teacher --hidden 32 --device $d --json --out /tmp/teacher_${d}_$r.npz > $R/teacher_${d}_$r.json 2>&1; done
done
save
[ "${BENCH:-1}" = 0 ] || T bench timeout 150 python3 -m ternq bench --device cuda --models 1 --models 4096 --budget 0.2 --json > $R/bench.json 2> $R/bench.err
save
cat $R/walls.txt $R/md5.txt; tail -c 1500 $R/bench.json
