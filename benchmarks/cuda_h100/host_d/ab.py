"""ternq's command line, MODE=noprep (the context made at the first launch), prep (as committed) or hard
(prep, and os._exit once the command is done); prints to stderr when the command ended and when the last
exit handler ran."""
import atexit
import os
import sys
import time

T0 = time.perf_counter()
atexit.register(lambda: print(f"ab last-atexit {time.perf_counter() - T0:.3f}", file=sys.stderr, flush=True))
import ternq.experiment.run as R  # noqa: E402
from ternq import cli  # noqa: E402

MODE = os.environ["MODE"]
if MODE == "noprep":
    R.gpu_prepare = lambda: None
code = 0
try:
    cli.main(sys.argv[1:])
except SystemExit as e:
    code = e.code or 0
print(f"ab main-end {time.perf_counter() - T0:.3f}", file=sys.stderr, flush=True)
if MODE == "hard":
    sys.stdout.flush()
    os._exit(code)
sys.exit(code)
