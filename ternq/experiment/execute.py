"""One executor: units run in-process, on local threads or on a Dask cluster, through one scheduling loop.

The loop submits every unit whose dependencies are done (longest first: a
shorter tail), as groups through :func:`ternq.experiment.units.run_group`, up to
the backend's capacity, and collects results as they finish. Units are
identified by digest, so a unit planned twice (a teacher shared by two runs or
two sweep cells) runs once. Only the backend differs: :class:`Serial` runs a
group at once, :class:`Threads` on a thread pool (the kernels release the GIL),
:class:`Dask` as one Dask task that receives the units and their dependencies'
models (a few kB), never more. Same-shaped trainings ready together form one
group (:func:`batches`) that trains in one batched call. Results are the same
bits on every backend and whatever the grouping.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ..model import Model
from .units import Result, Unit, batch_key, on_gpu_group, own, run_group, versions

OnStart = Callable[[Unit], Callable | None]
OnDone = Callable[[Unit, dict, Model], None]


class Cancelled(Exception):
    """Raised inside a running training when the executor stops (Ctrl-C, or another unit failed)."""


def cancellable(stop: threading.Event, progress: Callable | None = None) -> Callable:
    """A progress callback that ends its training (:class:`Cancelled`) once ``stop`` is set: the compiled loop
    cannot be interrupted, but it returns to Python a hundred times a training."""

    def call(done: int, total: int, loss: float) -> None:
        if stop.is_set():
            raise Cancelled
        if progress is not None:
            progress(done, total, loss)

    return call


class ClusterError(RuntimeError):
    """The Dask cluster cannot be used (unreachable, no workers, other package versions)."""


class Serial:
    """Run each group at once, in this thread."""

    capacity = 1
    local = True

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which re-raises it
            fut.set_exception(exc)
        return fut

    def wait(self, futures) -> set:
        return set(futures)

    def result(self, fut) -> list[Result]:
        return fut.result()

    def close(self) -> None:
        pass


class Threads(Serial):
    """Run groups on ``workers`` local threads, and GPU launches on ``gpu_slots`` more (a thread that
    waits for the GPU takes no core from the CPU's trainings)."""

    def __init__(self, workers: int, gpu_slots: int = 0):
        self.capacity = workers
        self.gpu_slots = gpu_slots
        self._pool = ThreadPoolExecutor(max_workers=workers + gpu_slots)

    def submit(self, fn, *args) -> Future:
        return self._pool.submit(fn, *args)

    def wait(self, futures) -> set:
        return wait(futures, return_when=FIRST_COMPLETED)[0]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


GPU_RESOURCE = "GPU"  # a Dask worker started with ``--resources GPU=1`` owns one GPU


class Dask:
    """Run groups as tasks on a ``distributed.Client``; capacity is the cluster's thread count. Where workers
    declare the resource ``GPU``, each GPU launch asks for one, so that a GPU's worker takes one launch at a
    time (several GPUs: one such worker per GPU) and a worker without one never gets a launch."""

    local = False

    def __init__(self, client):
        self.client = client
        info = client.scheduler_info(n_workers=-1)["workers"]
        self.workers = len(info)
        self.capacity = max(1, sum(w.get("nthreads", 1) for w in info.values()))
        self.gpus = sum(int(w.get("resources", {}).get(GPU_RESOURCE, 0)) for w in info.values())
        self._token = uuid.uuid4().hex[:8]
        self._finished = None  # a distributed.as_completed over every submitted task

    def submit(self, fn, units, deps, progress=None, device="cpu"):
        from distributed import as_completed

        key = f"ternq-{units[0].key.replace('/', '-')}-{units[0].digest[:10]}-{self._token}"
        gpu = {"resources": {GPU_RESOURCE: 1}} if self.gpus and on_gpu_group(units, device) else {}
        fut = self.client.submit(fn, units, deps, None, device, pure=False, key=key, **gpu)
        if self._finished is None:
            self._finished = as_completed([fut], loop=self.client.loop)
        else:
            self._finished.add(fut)
        return fut

    def wait(self, futures) -> set:
        return {next(self._finished)}

    def result(self, fut) -> list[Result]:
        out = [(fig, own(model)) for fig, model in fut.result()]
        fut.release()
        return out

    def close(self) -> None:
        pass


def backend_for(workers: int = 1, client=None, gpu_slots: int = 0):
    """The backend: Dask with a client, else threads for ``workers`` > 1 or ``gpu_slots`` > 0, else serial."""
    if client is not None:
        return Dask(client)
    return Threads(workers, gpu_slots) if workers > 1 or gpu_slots > 0 else Serial()


def singletons(ready: list[Unit]) -> list[list[Unit]]:
    """One unit per group: every training on the single-model path."""
    return [[u] for u in ready]


BATCHING = "auto"  # how batches() groups by default: "auto", "always" or "never" (results are the same bits)


def batches(ready: list[Unit], mode: str | None = None, device: str = "cpu") -> list[list[Unit]]:
    """Ready trainings that can share a compiled call (:func:`ternq.experiment.units.batch_key`) in groups
    of :data:`ternq.multi.BATCH_MIN` to :data:`ternq.multi.BATCH_MAX`; anything else one per group.

    ``mode`` (default :data:`BATCHING`): "auto" batches from the break-even size of the
    width (:func:`ternq.multi.batch_min`: fewer are slower batched than one by one) once
    the batched kernel is compiled, and before that (a first run) only full groups of
    BATCH_MAX, the only ones that repay compiling it; "always" batches from BATCH_MIN
    at any width; "never" is :func:`singletons`. With ``device`` "cuda", every ready training
    of one key is one group, of any size (one launch), whatever the mode. Groups come costliest first.
    Results are the same bits whatever the grouping.
    """
    from .. import multi

    mode = mode or BATCHING
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"batching mode must be auto, always or never, not {mode!r}")
    groups = []
    if device == "cuda":
        launches: dict = {}
        for u in ready:
            if batch_key(u) is not None:
                launches.setdefault(batch_key(u), []).append(u)
        groups = list(launches.values())
        taken = {u.digest for g in groups for u in g}
        ready = [u for u in ready if u.digest not in taken]
    if mode == "never":
        return sorted(groups + singletons(ready), key=lambda g: -sum(u.cost() for u in g))
    compiled = mode == "always" or multi.compiled()
    buckets: dict = {}
    for u in ready:
        key = batch_key(u)
        if key is None:
            groups.append([u])
        else:
            buckets.setdefault(key, []).append(u)
    for same in buckets.values():
        lo = multi.BATCH_MIN if mode == "always" else multi.batch_min(same[0].hidden) if compiled else multi.BATCH_MAX
        for i in range(0, len(same), multi.BATCH_MAX):
            part = same[i:i + multi.BATCH_MAX]
            groups.extend([part] if len(part) >= lo else [[u] for u in part])
    return sorted(groups, key=lambda g: -sum(u.cost() for u in g))


def execute(units: Iterable[Unit], backend=None, done: dict[str, Result] | None = None,
            on_start: OnStart | None = None, on_done: OnDone | None = None,
            group: Callable[..., list[list[Unit]]] = batches, device: str = "cpu") -> dict[str, Result]:
    """Run ``units`` (each digest once) on ``backend``, each as soon as its dependencies are done.

    Parameters
    ----------
    units : iterable of Unit
        What to run; dependencies not listed are run too.
    backend : Serial, Threads or Dask, optional
        Where to run [default: serial].
    done : dict, optional
        Results already available, by digest (they are not rerun).
    on_start : callable, optional
        ``on_start(unit)`` may return a progress callback for the unit (local backends).
    on_done : callable, optional
        ``on_done(unit, figures, model)`` for every unit of ``units`` as its result arrives
        (also for a unit whose digest another unit of the list already ran).
    group : callable
        Splits the ready units into the groups given to one :func:`run_group` call
        [default: :func:`batches`, same-shaped trainings together]; called as ``group(ready, device=device)``.
    device : {"cpu", "cuda"}
        Where the trainings the GPU kernels run go (:func:`ternq.experiment.units.run_group`); the same bits.

    Returns
    -------
    dict
        Every result by digest (those of ``done`` included).
    """
    backend = backend or Serial()
    results: dict[str, Result] = dict(done or {})
    wanted: dict[str, list[Unit]] = {}

    def want(u: Unit) -> None:
        for d in u.deps:
            if d.digest not in wanted:
                want(d)
        wanted.setdefault(u.digest, [])

    for u in units:
        want(u)
        wanted[u.digest].append(u)
    pending = {d: None for d in wanted if d not in results}
    by_digest = {}
    for u in units:
        by_digest.setdefault(u.digest, u)

    def unit_of(digest: str) -> Unit:
        if digest in by_digest:
            return by_digest[digest]
        stack = list(by_digest.values())
        while stack:  # a dependency that was not listed itself
            u = stack.pop()
            for d in u.deps:
                by_digest.setdefault(d.digest, d)
                stack.append(d)
        return by_digest[digest]

    def finish(unit: Unit, out: Result) -> None:
        results[unit.digest] = out
        if on_done is not None:
            for u in wanted.get(unit.digest, []):
                on_done(u, dict(out[0]), out[1])

    running: dict = {}
    gpu_slots = getattr(backend, "gpu_slots", 0) if device == "cuda" else 0
    stop = threading.Event()
    try:
        while pending or running:
            ready = sorted((unit_of(d) for d in pending if all(x.digest in results for x in unit_of(d).deps)),
                           key=lambda u: -u.cost())
            busy = Counter(on_gpu_group(g, device) and gpu_slots > 0 for g in running.values())
            for g in group(ready, device=device):
                gpu = on_gpu_group(g, device) and gpu_slots > 0
                if busy[gpu] >= (gpu_slots if gpu else backend.capacity):
                    continue
                busy[gpu] += 1
                for u in g:
                    del pending[u.digest]
                deps = {x.digest: results[x.digest][1] for u in g for x in u.deps}
                progress = ({u.digest: cancellable(stop, on_start(u) if on_start else None) for u in g}
                            if backend.local else None)
                running[backend.submit(run_group, g, deps, progress, device)] = g
            if not running:
                raise RuntimeError("unsatisfiable dependencies: " + ", ".join(unit_of(d).key for d in pending))
            for fut in backend.wait(running):
                g = running.pop(fut)
                for u, out in zip(g, backend.result(fut), strict=True):
                    finish(u, out)
    except BaseException:
        stop.set()  # the trainings still running end at their next progress report
        raise
    finally:
        if running and not backend.local:
            backend.client.cancel(list(running))
    return results


# --- Dask clusters -------------------------------------------------------------------------------

def worker_environment() -> dict:
    """Package versions and ternq's code on a worker (the numbers are bit-identical only with the same ones)."""
    return versions()  # includes "ternq code", fixed when first computed in this process


CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler
WORKERS_TIMEOUT = 60.0  # seconds for a first worker to join
ADDRESS = re.compile(r"(?:(?:tcp|tls|ws|wss)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*):\d{1,5}")


def _quiet_client():
    """``distributed.Client`` whose finaliser does not hang for a minute and print a traceback when its
    connection failed (its own ``__del__`` closes with a 60 s timeout and lets the TimeoutError out)."""
    from distributed import Client

    class QuietClient(Client):
        def __del__(self):
            try:
                self.close(timeout=0.5)
            except BaseException:  # noqa: BLE001, S110 - a finaliser has nobody to tell
                pass

    return QuietClient


def _probe(address: str, timeout: float) -> None:
    """Fail at once when nothing listens at ``address`` (Dask would retry until its timeout)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {reason}") from None


def connect(address: str, workers_timeout: float = WORKERS_TIMEOUT, timeout: float = CONNECT_TIMEOUT):
    """A ``distributed.Client`` on the scheduler at ``address``, checked for workers and versions.

    ``address`` is ``[tcp://]HOST:PORT``; anything else is refused before any
    connection. The scheduler must answer within ``timeout`` seconds and a worker
    join within ``workers_timeout``; every failure is a :class:`ClusterError`.
    """
    if (not isinstance(address, str) or not ADDRESS.fullmatch(address.strip())
            or not 0 < int(address.rpartition(":")[2]) < 65536):
        raise ClusterError(f"--scheduler {address!r} is not a scheduler address such as tcp://host:8786")
    _probe(address.strip(), timeout)
    try:
        client_class = _quiet_client()
    except ImportError:
        raise ClusterError("--scheduler needs Dask: pip install 'ternq[dask]'") from None
    try:
        client = client_class(address.strip(), timeout=timeout, set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - refused, timed out, unresolvable, or not a Dask scheduler at all
        reason = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
        raise ClusterError(f"cannot connect to the Dask scheduler at {address} within {timeout:g} s "
                           f"({reason.splitlines()[0][:200] if reason else exc.__class__.__name__})") from None
    try:
        check_cluster(client, workers_timeout)
    except BaseException:
        client.close(timeout=timeout)
        raise
    return client


def check_cluster(client, workers_timeout: float = WORKERS_TIMEOUT) -> None:
    """Wait for a worker; refuse workers whose packages differ from ours (results would differ)."""
    try:
        client.wait_for_workers(1, timeout=workers_timeout)
    except TimeoutError:
        raise ClusterError(f"no Dask worker joined the scheduler within {workers_timeout:.0f} s") from None
    here = worker_environment()
    try:
        there = client.run(worker_environment)
    except ImportError as exc:
        raise ClusterError(f"a Dask worker cannot import ternq ({exc}); install it on every worker") from None
    for worker, env in sorted(there.items()):
        diff = [f"{k} {env.get(k)} (here {v})" for k, v in here.items() if env.get(k) != v]
        if diff:
            raise ClusterError(f"Dask worker {worker} runs {', '.join(diff)}: results would not be bit-identical"
                               " (install the same versions there, or restart workers that predate a code change)")


def obtain(unit: Unit, store, progress: Callable | None = None) -> tuple[Result, bool]:
    """One unit from ``store`` if it holds it, else run (with its dependencies) and stored.

    Returns ((figures, model), whether it came from the store).
    """
    from .store import StoreWriteError

    try:
        done = store.scan([unit])
    except StoreWriteError as exc:
        store.warn(f"{exc}; nothing is cached there")  # an unusable cache: train, keep nothing
        done = None
    if done and unit.digest in done:
        return done[unit.digest], True

    def save(u: Unit, fig: dict, model: Model) -> None:
        if done is None:
            return
        try:
            store.save(u, fig, model)
        except StoreWriteError:  # a read-only cache only costs a rerun next time, but say so
            store.warn(f"cannot cache {u.key} in {store.root}; it is trained again next time")

    results = execute([unit], Serial(), on_start=lambda u: progress if u is unit else None, on_done=save)
    return results[unit.digest], False
