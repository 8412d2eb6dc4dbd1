#!/bin/bash
# the paired test of the context made at the device check (prep), at the first launch (noprep) and with os._exit
# (hard): not yet run on a GPU
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
R=$OUT/u; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/machine.txt; nproc >> $R/machine.txt
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
T compile python3 -m ternq factorial --quiet --device cuda --seeds 0:10 --out /tmp/c0 > /dev/null 2>&1
for r in 1 2 3; do for m in noprep prep hard; do
  MODE=$m T "f10_${m}_$r" python3 benchmarks/cuda_h100/host_d/ab.py factorial --quiet --device cuda --seeds 0:10 --out /tmp/f_${m}_$r > $R/f_${m}_$r.out 2>&1
  grep "^ab" $R/f_${m}_$r.out | sed "s/^/f10_${m}_$r /" >> $R/walls.txt
done; done
for r in 1 2; do for m in noprep prep; do
  MODE=$m T "t_${m}_$r" python3 benchmarks/cuda_h100/host_d/ab.py teacher --hidden 32 --device cuda --json --quiet --out /tmp/t.npz > $R/t_${m}_$r.json 2>$R/t_${m}_$r.err
  grep -h '"seconds"' $R/t_${m}_$r.json | sed "s/^/t_${m}_$r /" >> $R/walls.txt
done; done
md5sum /tmp/f_*/results.json /tmp/c0/results.json >> $R/md5.txt
tar czf $OUT/u.tgz -C $OUT u
cat $R/walls.txt $R/md5.txt
