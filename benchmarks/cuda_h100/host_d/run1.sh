#!/bin/bash
# run on the device from the repository root at 70b01bc (one H100, "host D"): the GPU tests at full size, whole
# 10-seed factorials, warm.py (a kernel load on a thread at the run's start: it compiled its own variant, and was
# slower) and diag.py (where a GPU process's fixed seconds go); .whl holds a numpy 2.4 wheel
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/machine.txt; nproc >> $R/machine.txt
python3 -c "import numba, numba_cuda, numpy; print(numba.__version__, numba_cuda.__version__, numpy.__version__)" >> $R/machine.txt
git rev-parse HEAD >> $R/machine.txt
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
K="scale_groups or odd_width or teachers_bit or every_weight or global_memory or distill"
S=$(date +%s)
timeout 200 python3 -m pytest -o addopts= -v -p no:cacheprovider --durations=12 tests/test_cuda.py -k "$K" > $R/tests1.log 2>&1; echo "pytest1 rc $? $(( $(date +%s) - S )) s" >> $R/walls.txt
tar czf $OUT/r.tgz -C $OUT r
T compile python3 -m ternq factorial --quiet --device cuda --seeds 0:10 --out /tmp/fc > $R/fc.out 2>&1
for r in 1 2; do T "f10_w2_$r" python3 -m ternq factorial --quiet --device cuda --seeds 0:10 --out /tmp/f10_$r > $R/f10_$r.out 2>&1
 T "f10_warm_$r" python3 benchmarks/cuda_h100/host_d/warm.py factorial --quiet --device cuda --seeds 0:10 --out /tmp/f10warm_$r > $R/f10warm_$r.out 2>&1; done
for m in soft hard soft hard; do T "diag_$m" python3 benchmarks/cuda_h100/host_d/diag.py $m >> $R/diag.txt 2>&1; done
T pyonly python3 -c "import ternq.cli"
md5sum /tmp/f*/results.json >> $R/md5.txt
tar czf $OUT/r.tgz -C $OUT r
S=$(date +%s)
timeout 270 python3 -m pytest -o addopts= -v -p no:cacheprovider --durations=12 tests/test_cuda.py -k "not ($K)" > $R/tests2.log 2>&1; echo "pytest2 rc $? $(( $(date +%s) - S )) s" >> $R/walls.txt
tar czf $OUT/r.tgz -C $OUT r
cat $R/walls.txt $R/diag.txt; tail -5 $R/tests1.log $R/tests2.log
