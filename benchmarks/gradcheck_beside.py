"""The experiment's gradient check alone and beside a thread of pure Python, in this process and in a child.

    python benchmarks/gradcheck_beside.py [REPEATS]

The check makes thousands of short compiled calls, each of which gives up the interpreter and then has to win it
back; a thread that holds the interpreter in between (here ``while not stop: x += 1``) makes each such call wait.
Prints seconds per (apart, alone or beside), REPEATS times [2], after one check that loads the kernels.
"""

import sys
import threading
import time

from ternq.config import load
from ternq.experiment.plans import plan
from ternq.experiment.run import gradient_error, plan_widths


def timed(settings, widths, apart: bool, beside: bool) -> float:
    stop = threading.Event()

    def spin():
        x = 0
        while not stop.is_set():
            x += 1

    th = threading.Thread(target=spin) if beside else None
    if th is not None:
        th.start()
    t = time.perf_counter()
    gradient_error(settings, widths, apart)
    s = time.perf_counter() - t
    stop.set()
    if th is not None:
        th.join()
    return s


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    settings = load(None)
    widths = plan_widths(plan(settings))
    gradient_error(settings, widths)
    for _ in range(repeats):
        for apart in (False, True):
            alone, beside = timed(settings, widths, apart, False), timed(settings, widths, apart, True)
            print(f"apart={apart}: alone {alone:.2f} s, beside a thread of pure Python {beside:.2f} s", flush=True)


if __name__ == "__main__":
    main()
