#!/bin/bash
# land.sh in the few minutes of device time left: the 10-seed factorial, before (.probe/k_base.py) and now,
# alternating twice after a compiling process of each; beside those compiles, the GPU tests of the teachers,
# every mask with distillation and one or two sequences a thread at full size; one teacher on the GPU; into $OUT/s.tgz
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/s; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/machine.txt 2>&1
rm -rf /tmp/base && mkdir /tmp/base && cp -r ternq /tmp/base/ && find /tmp/base -name __pycache__ -prune -exec rm -rf {} + &&
  cp .probe/k_base.py /tmp/base/ternq/kernels/cuda.py || exit 1
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
F="python3 -m ternq factorial --device cuda --quiet --seeds 0:10"
save() { tar czf $OUT/s.tgz -C /tmp s; }
T compile_new $F --out /tmp/c_new > $R/c_new.out 2>&1 &
(cd /tmp/base && PYTHONPATH=/tmp/site:/tmp/base T compile_base $F --out /tmp/c_base > $R/c_base.out 2>&1) &
timeout 150 python3 -m pytest -o addopts= -q -p no:cacheprovider tests/test_cuda.py \
  -k "teachers_bit or every_mask or one_or_two" > $R/tests.log 2>&1; echo "tests rc=$?" >> $R/tests.log
wait; save
for r in 1 2; do
  T new_$r $F --out /tmp/new_$r > $R/new_$r.out 2>&1
  (cd /tmp/base && PYTHONPATH=/tmp/site:/tmp/base T base_$r $F --out /tmp/base_$r > $R/base_$r.out 2>&1)
done
python3 benchmarks/same_results.py /tmp/c_*/results.json /tmp/new_*/results.json /tmp/base_*/results.json > $R/md5.txt
save
T teacher_cuda python3 -m ternq teacher --hidden 32 --device cuda --json --out /tmp/teacher.npz > $R/teacher_cuda.json 2>&1
save
tail -3 $R/tests.log; cat $R/walls.txt $R/md5.txt; grep -E '"seconds"|eval_mse"' $R/teacher_cuda.json
