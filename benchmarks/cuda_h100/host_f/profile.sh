#!/bin/bash
# where one model's epoch goes: one launch of 1 H=32 teacher (T=100, 512 threads) and of 10 (T=50) under Nsight
# Compute with the kernel's line information (benchmarks/cuda_profile.py), then the phases left out in turn at
# those two points (benchmarks/cuda_phases.py); everything into $OUT/p.tgz
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/p; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; nproc; ncu --version; } > $R/machine.txt 2>&1
cd benchmarks
NCU="ncu --clock-control none --launch-skip 1 --launch-count 1 -k regex:_train --import-source yes --section WarpStateStats --section SourceCounters --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats --section LaunchStats --section Occupancy"
for p in "one 32 1 100 512 20" "ten 32 10 50 512 20"; do
  set -- $p; n=$1; shift
  timeout 200 $NCU -f -o $R/$n python3 cuda_profile.py $R/k_$n.py "$@" > $R/$n.log 2>&1
  ncu -i $R/$n.ncu-rep --print-details all > $R/${n}_details.txt 2>&1
  ncu -i $R/$n.ncu-rep --page source --csv --print-source sass > $R/${n}_sass.csv 2>&1
  ncu -i $R/$n.ncu-rep --page source --csv --print-source cuda,sass > $R/${n}_cuda_sass.csv 2>&1
  ls -la $R; tar czf $OUT/p.tgz -C /tmp p
done
timeout 240 python3 cuda_phases.py $R/phases.json base no_bptt no_forward no_weight_grads --points 32:1:100:512,32:10:50:512 > $R/phases.log 2>&1
tar czf $OUT/p.tgz -C /tmp p
grep -E "Duration|Issued Ipc|Warp Cycles Per Issued|stalled|Executed Instructions  " $R/one_details.txt $R/ten_details.txt | head -40
cat $R/phases.log | cut -c1-300
head -c 3000 $R/one_sass.csv
