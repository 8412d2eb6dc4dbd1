#!/bin/bash
# the factorial's H=32 student launch (10 seeds: 40 students, 20 distilled) with the kernel now (the trajectory
# sum by a spare warp during BPTT), 4d4414b's (.probe/k_4d.py: the sum by the block before BPTT), that one
# without the trajectory sum, and this one without the teacher's forward; into $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/machine.txt 2>&1
cd benchmarks && timeout ${LIMIT:-560} python3 cuda_students.py $OUT/students.json base old=../.probe/k_4d.py \
  no_traj=../.probe/k_4d.py no_teacher 2>&1 | tee $OUT/students.log
