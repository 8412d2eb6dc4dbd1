#!/bin/bash
# whole 100-seed factorials after the profile (profile.sh), the code at this commit: with the default workers (one per
# CPU) and with 2, alternating; walls from the shell, after a first process that compiles; into $OUT/f.tgz
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/f; mkdir -p $R
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
F="python3 -m ternq factorial --device cuda --seeds 0:100"
T compile100 $F --quiet --out /tmp/c100 > $R/c100.out 2>&1
tar czf $OUT/f.tgz -C /tmp f
for r in 1 2; do
  T f100_default_$r $F --out /tmp/f100d_$r > $R/f100d_$r.out 2>&1
  T f100_w2_$r $F --workers 2 --out /tmp/f100w_$r > $R/f100w_$r.out 2>&1
  tar czf $OUT/f.tgz -C /tmp f
done
md5sum /tmp/c100/results.json /tmp/f100*/results.json > $R/md5.txt
grep -h "workers" $R/f100*.out > $R/workers.txt
tar czf $OUT/f.tgz -C /tmp f
cat $R/walls.txt $R/md5.txt $R/workers.txt
