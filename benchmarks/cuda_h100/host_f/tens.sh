#!/bin/bash
# the 10-seed factorial with the kernel now (base) and with v3 (.probe/k_v3.py: one sequence a thread where the
# block has a thread for every (sequence, unit)), alternating, walls from the shell, after a first process of
# each that compiles (the two at once; v3 from a folder of its own, since python -m puts the working directory
# first); every results.json's md5; into $OUT/t.tgz. After profile.sh (which installs the wheels).
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/t; mkdir -p $R
rm -rf /tmp/v3 && mkdir /tmp/v3 && cp -r ternq /tmp/v3/ && find /tmp/v3 -name __pycache__ -prune -exec rm -rf {} + &&
  cp .probe/k_v3.py /tmp/v3/ternq/kernels/cuda.py || exit 1
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
F="python3 -m ternq factorial --device cuda --seeds 0:10 --quiet"
T compile_base $F --out /tmp/c_base > $R/c_base.out 2>&1 &
(cd /tmp/v3 && PYTHONPATH=/tmp/site:/tmp/v3 T compile_v3 $F --out /tmp/c_v3 > $R/c_v3.out 2>&1) &
wait
for r in 1 2 3; do
  T base_$r $F --out /tmp/t_base_$r > $R/base_$r.out 2>&1
  (cd /tmp/v3 && PYTHONPATH=/tmp/site:/tmp/v3 T v3_$r $F --out /tmp/t_v3_$r > $R/v3_$r.out 2>&1)
done
md5sum /tmp/c_*/results.json /tmp/t_*/results.json > $R/md5.txt
python3 benchmarks/same_results.py /tmp/c_*/results.json /tmp/t_*/results.json >> $R/md5.txt
(cd /tmp/v3 && PYTHONPATH=/tmp/site:/tmp/v3 python3 -c "import ternq.kernels.cuda as k; print(k.__file__)") >> $R/md5.txt
tar czf $OUT/t.tgz -C /tmp t
cat $R/walls.txt $R/md5.txt
