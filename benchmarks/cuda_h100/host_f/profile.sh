#!/bin/bash
# where an epoch goes: a launch of 1 H=32 teacher (T=100, 512 threads) and one of 4096 (256 threads) under Nsight
# Compute with the kernel's line information (benchmarks/cuda_profile.py); beside it, kernel versions timed at
# those points (benchmarks/cuda_phases.py): the code now (base), a BPTT that loads both sequences before storing
# (v1), and v1 with each thread's first unit divided out once, not every step (v2), each thread one sequence where
# the block has a thread for every (sequence, unit) (v3; v4: v2 and v3), 40 and 48 registers for 256-thread
# blocks; the factorial's launches of 10 and 40 teachers or students too (T=50, 512 threads). v3's process times
# base as well, so that pair is from one process. Every process compiles at once; the profile and each timing
# hold one lock in turn, so no two use the GPU together. Everything into $OUT/p.tgz
# The versions are made here and carried (.probe is ignored by git): P=benchmarks/cuda_h100/host_f; mkdir -p .probe &&
# cp ternq/kernels/cuda.py .probe/k_v1.py && patch .probe/k_v1.py < $P/v1.patch && cp .probe/k_v1.py .probe/k_v2.py &&
# patch .probe/k_v2.py < $P/v2.patch && cp ternq/kernels/cuda.py .probe/k_v3.py && patch .probe/k_v3.py < $P/v3.patch &&
# cp .probe/k_v2.py .probe/k_v4.py && patch .probe/k_v4.py < $P/v3.patch
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 PHASES_LOCK=/tmp/gpu.lock
R=/tmp/p; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; nproc; ncu --version; } > $R/machine.txt 2>&1
cd benchmarks
exec 9>/tmp/gpu.lock; flock 9  # the profile first: its process takes the lock before the others start
(timeout 300 ncu --clock-control none -k regex:_train --import-source yes --section WarpStateStats --section SourceCounters \
  --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats --section LaunchStats \
  --section Occupancy -f -o $R/prof python3 cuda_profile.py $R/k_prof.py 32:1:100:512:20 32:4096:100:256:2 > $R/prof.log 2>&1
 flock -u 9) &
exec 9>&-
sleep 1
P1=32:1:100:512,32:10:50:512,32:40:50:512,32:4096:100:256,16:4096:100:256,64:1:100:1024
timeout 420 python3 cuda_phases.py $R/ph_base.json base --points $P1 > $R/ph_base.log 2>&1 &
timeout 420 python3 cuda_phases.py $R/ph_v1.json v1=../.probe/k_v1.py --points $P1 > $R/ph_v1.log 2>&1 &
timeout 420 python3 cuda_phases.py $R/ph_v2.json v2=../.probe/k_v2.py --points $P1 > $R/ph_v2.log 2>&1 &
timeout 420 python3 cuda_phases.py $R/ph_v3.json base v3=../.probe/k_v3.py --points $P1 > $R/ph_v3.log 2>&1 &
timeout 420 python3 cuda_phases.py $R/ph_v4.json v4=../.probe/k_v4.py --points $P1 > $R/ph_v4.log 2>&1 &
timeout 420 python3 cuda_phases.py $R/ph_regs.json regs40 regs48 --points 32:4096:100:256 > $R/ph_regs.log 2>&1 &
wait
ncu -i $R/prof.ncu-rep --print-details all > $R/prof_details.txt 2>&1
ncu -i $R/prof.ncu-rep --page source --csv --print-source sass > $R/prof_sass.csv 2>&1
ncu -i $R/prof.ncu-rep --page source --csv --print-source cuda,sass > $R/prof_cuda_sass.csv 2>&1
ls -la $R; tar czf $OUT/p.tgz -C /tmp p
grep -E "Duration|Issued Ipc|Warp Cycles Per Issued|stalled|Executed Instructions  |Registers Per" $R/prof_details.txt | head -30
cat $R/ph_*.log | cut -c1-250
head -c 1500 $R/prof_sass.csv
