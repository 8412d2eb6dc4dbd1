#!/bin/bash
# whole factorials after the profile (profile.sh), the code at this commit: the 10-seed one twice, the 100-seed one
# with the default workers (one per CPU) twice and with 2, alternating; walls from the shell, after a first
# process of each size that compiles; everything into $OUT/f.tgz
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/f; mkdir -p $R
T() { /usr/bin/time -f "$1 %e s" -a -o $R/walls.txt "${@:2}"; }
F="python3 -m ternq factorial --quiet --device cuda"
T compile10 $F --seeds 0:10 --out /tmp/c10 > $R/c10.out 2>&1
T compile100 $F --seeds 0:100 --out /tmp/c100 > $R/c100.out 2>&1
tar czf $OUT/f.tgz -C /tmp f
for r in 1 2; do
  T f100_default_$r $F --seeds 0:100 --out /tmp/f100d_$r > $R/f100d_$r.out 2>&1
  T f100_w2_$r $F --seeds 0:100 --workers 2 --out /tmp/f100w_$r > $R/f100w_$r.out 2>&1
  T f10_$r $F --seeds 0:10 --out /tmp/f10_$r > $R/f10_$r.out 2>&1
  tar czf $OUT/f.tgz -C /tmp f
done
md5sum /tmp/c10/results.json /tmp/f10_*/results.json /tmp/c100/results.json /tmp/f100*/results.json > $R/md5.txt
grep -h "on .* workers\|training" $R/*.out | head -20 > $R/workers.txt
tar czf $OUT/f.tgz -C /tmp f
cat $R/walls.txt $R/md5.txt $R/workers.txt
