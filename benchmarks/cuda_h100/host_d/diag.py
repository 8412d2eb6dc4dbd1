"""Where a GPU process's fixed seconds go: imports, the CUDA context, a kernel's first load, the exit."""
import json
import os
import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402

import ternq.cli  # noqa: E402,F401
from ternq import gpu  # noqa: E402

t1 = time.perf_counter()
from numba import cuda  # noqa: E402

cuda.current_context()
t2 = time.perf_counter()


def tiny(H, B=10):
    from ternq.kernels.cell import n_params
    P = n_params(1, H, 1)
    th = np.zeros((1, P), np.float32)
    X = np.zeros((1, 1, B, 1, 1), np.float32)
    gpu.train_epochs(th, th.copy(), th.copy(), X, X.copy(), np.zeros(1, np.int64), 0, 1, 1, 1, H, 1, 0.1, False,
                     lr=0.01, lr_min=0.0001, lr_kind=0, clip=1.0, losses=np.zeros((1, 1)), mses=np.zeros((1, 1)),
                     bad=np.full(1, -1, np.int64), threads=512)


tiny(32)
t3 = time.perf_counter()
tiny(16)
t4 = time.perf_counter()
print(json.dumps(dict(imports=t1 - t0, context=t2 - t1, first_load=t3 - t2, second=t4 - t3)), flush=True)
if sys.argv[1:] == ["hard"]:
    os._exit(0)
