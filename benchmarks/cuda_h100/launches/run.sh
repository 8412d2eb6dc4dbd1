#!/bin/bash
# run on the device from the repository root (commit 6508614 plus the change of f869f4d's baselines wait, which MODE=early undoes); PATH_TO_THE_VARIANT: kernels/cuda.py with blocks of 257..512 threads at 128 registers, as committed in 527009d
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/machine.txt; nproc >> $R/machine.txt
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
T warm python3 -m ternq factorial --quiet --device cuda --seeds 0:10 --out /tmp/f0 > $R/warm.out 2>&1
for r in 1 2; do for m in base early nb sync; do
  MODE=$m T "$m$r" python3 benchmarks/cuda_h100/launches/probe.py $R/p_${m}_$r.json --calls -- factorial --quiet --device cuda --seeds 0:10 --out /tmp/f_${m}_$r > $R/p_${m}_$r.out 2>&1
done; done
md5sum /tmp/f*/results.json >> $R/md5.txt
(cd benchmarks && timeout 240 python3 cuda_phases.py $R/k.json base r512=PATH_TO_THE_VARIANT --points 32:1:100:1024,32:1:100:512,32:10:50:1024,32:10:50:512,64:1:100:1024,64:1:100:512,32:40:50:512,32:40:50:1024 > $R/k.out 2>&1)
tar czf $OUT/r.tgz -C $OUT r
