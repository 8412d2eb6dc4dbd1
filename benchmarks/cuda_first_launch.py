"""What a fresh process pays before its first GPU training runs: importing numba-cuda, creating the CUDA
context, loading the cached training kernel at its first launch, against a second, identical launch.

    python benchmarks/cuda_first_launch.py [H] [M] [E]

Run it twice: the first process may compile (numba-cuda's cache is then empty); the second shows what every
``ternq`` process pays. Prints one JSON line of seconds. Defaults: H=32, M=10 teachers, E=2 epochs of
B=10 sequences of 50 steps (the factorial's teachers' shape).
"""

import json
import sys
import time

t0 = time.perf_counter()
import cuda_epochs  # noqa: E402
import numpy as np  # noqa: E402

t_import = time.perf_counter()
from numba import cuda  # noqa: E402

t_numba_cuda = time.perf_counter()
cuda.current_context()
t_context = time.perf_counter()


def launch(M: int, H: int, E: int) -> float:
    X, Y, th = cuda_epochs._device_problem(M, H, E, np.random.default_rng(0))
    X, Y = np.ascontiguousarray(X[:, :, :, :50]), np.ascontiguousarray(Y[:, :, :, :50])
    t = time.perf_counter()
    cuda_epochs.teach(th, X, Y, H)
    return time.perf_counter() - t


args = [int(a) for a in sys.argv[1:4]]
H, M, E = args + [32, 10, 2][len(args):]
first = launch(M, H, E)
second = launch(M, H, E)
print(json.dumps({"H": H, "M": M, "E": E, "import_ternq_s": t_import - t0,
                  "import_numba_cuda_s": t_numba_cuda - t_import, "context_s": t_context - t_numba_cuda,
                  "first_launch_s": first, "second_launch_s": second}))
