"""benchmarks/factorial_timeline.py plus, for every GPU launch, when its kernel started and ended on the GPU
(CUDA events) and when the host queued it; and a watcher of the interpreter lock (pauses over 20 ms).

    MODE=base|early|nb|sync python benchmarks/cuda_h100/launches/probe.py OUT.json --calls -- factorial ...

Writes OUT.json (the timeline) and OUT.json.gpu.json. MODE, on the code of run.sh's header: base as it is;
early: the baselines start at once; nb: every stream non-blocking; sync: the stream waited on before the
copies back (as ternq.gpu now does).
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import factorial_timeline as ft  # noqa: E402  (sets ft.T0 at import)
from numba import cuda  # noqa: E402
from numba.cuda.cudadrv import driver as drv  # noqa: E402

import ternq.gpu as gpu  # noqa: E402
from ternq.kernels import cuda as K  # noqa: E402

T0 = ft.T0

MODE = os.environ.get("MODE", "base")
out = sys.argv[1]
ctx = cuda.current_context()
s0 = cuda.stream()
ref = cuda.event()
ref.record(stream=s0)
s0.synchronize()
t_ref = time.perf_counter() - T0
launches = []
lock = threading.Lock()

if MODE == "nb":
    from cuda.bindings import driver as B
    def nb_stream():
        flags = B.CUstream_flags.CU_STREAM_NON_BLOCKING.value
        h = drv.driver.cuStreamCreate(flags)
        return drv.Stream(h, finalizer=drv._stream_finalizer(ctx.deallocations, h))
    cuda.stream = nb_stream
if MODE == "early":  # the baselines start at once, as before
    import ternq.experiment.run as _run
    _run.gpu_launched = lambda timeout=None: True
if MODE == "sync":
    src = open(gpu.__file__).read()
    old = "        outs = [d.copy_to_host(stream=stream) for d in (d_theta, d_m, d_v, d_losses, d_mses, d_bad, d_thr)]"
    assert old in src
    src = src.replace(old, "        stream.synchronize()\n" + old)
    exec(compile(src, gpu.__file__, "exec"), gpu.__dict__)

def wrap_kernel(getter, name):
    def get(threads, p_shared):
        kern = getter(threads, p_shared)
        class L:
            def __getitem__(self, cfg):
                M, nt, stream, shmem = cfg
                f = kern[cfg]
                def launch(*args):
                    e0, e1 = cuda.event(), cuda.event()
                    h0 = time.perf_counter() - T0
                    e0.record(stream=stream)
                    f(*args)
                    e1.record(stream=stream)
                    h1 = time.perf_counter() - T0
                    with lock:
                        launches.append(dict(kind=name, M=M, nt=nt, thread=threading.get_ident() % 100000,
                                             host_launch=(round(h0, 4), round(h1, 4)), ev=(e0, e1)))
                return launch
        return L()
    return get
K.train_kernel = wrap_kernel(K.train_kernel, "train")
K.rollout_kernel = wrap_kernel(K.rollout_kernel, "rollout")

gaps = []
def watch():
    last = time.perf_counter()
    while True:
        time.sleep(0.001)
        now = time.perf_counter()
        if now - last > 0.02:
            gaps.append((round(last - T0, 3), round(now - last, 3)))
        last = now
threading.Thread(target=watch, daemon=True).start()

sys.argv = [sys.argv[0]] + sys.argv[1:]
try:
    ft.main()
finally:
    cuda.synchronize()
    rows = []
    for rec in launches:
        e0, e1 = rec.pop("ev")
        rec["gpu"] = (round(t_ref + ref.elapsed_time(e0) / 1e3, 4),
                    round(t_ref + ref.elapsed_time(e1) / 1e3, 4))
        rows.append(rec)
    json.dump(dict(mode=MODE, t_ref=t_ref, launches=rows, gil_gaps=gaps), open(out + ".gpu.json", "w"), indent=1)
