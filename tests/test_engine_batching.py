"""The engine's batching: same-shaped trainings share a compiled call and give the same bits.

Serial one-by-one, threads batched and Dask batched must write byte-identical
results.json files and bit-identical models.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ternq import multi
from ternq.config import load
from ternq.experiment import execute as ex
from ternq.experiment import units as un
from ternq.experiment.plans import plan
from ternq.experiment.run import run_experiment
from ternq.report.files import models_of, save_results

ROOT = Path(__file__).parent.parent
QUICK = load(str(ROOT / "configs" / "quick.toml"))
SEEDS = (0, 1, 2, 3)  # 4 teachers and 16 students per width: full batches of both kinds


def _run(tmp_path, name, mode, monkeypatch, **kw):
    monkeypatch.setattr(ex, "BATCHING", mode)
    doc, p, results = run_experiment(replace(QUICK, seeds=SEEDS), check_gradients=False, check_reproducible=False,
                                     **kw)
    out = tmp_path / name
    save_results(doc, models_of(p, results), out)
    return (out / "results.json").read_bytes(), {d: r[1].theta.tobytes() for d, r in results.items()}


@pytest.fixture(scope="module")
def serial_unbatched(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        return _run(tmp_path_factory.mktemp("serial"), "serial", "never", mp, workers=1)
    finally:
        mp.undo()


def test_threads_batched_equal_serial_unbatched(serial_unbatched, tmp_path, monkeypatch):
    calls = []
    real = un.run_batch

    def spy(units, deps, progress=None):
        calls.append(len(units))
        return real(units, deps, progress)

    monkeypatch.setattr(un, "run_batch", spy)
    got = _run(tmp_path, "threads", "always", monkeypatch, workers=2)
    # the batches ran: 4 teachers and 4 equal-budget floats of each width, then 16 students of each width
    assert sorted(calls) == [4, 4, 4, 4, 16, 16]
    assert got[1] == serial_unbatched[1]
    assert got[0] == serial_unbatched[0]


def test_dask_batched_equal_serial_unbatched(serial_unbatched, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        got = _run(tmp_path, "dask", "always", monkeypatch, client=client)
    assert got[1] == serial_unbatched[1]
    assert got[0] == serial_unbatched[0]


def _ready_units(seeds=(0, 1, 2, 3, 4)):
    # without the equal-budget floats: teacher-kind units of other epochs, batched apart
    p = plan(replace(QUICK, seeds=seeds, run=replace(QUICK.run, float_reference=False)))
    return p, [u for u in p.units if u.kind == "teacher"], [u for u in p.units if u.kind != "teacher"]


def test_batches_partition_the_ready_units():
    p, teachers, rest = _ready_units()
    for mode in ("always", "auto", "never"):
        groups = ex.batches(teachers + rest, mode)
        flat = [u.digest for g in groups for u in g]
        assert sorted(flat) == sorted(u.digest for u in teachers + rest)  # each unit exactly once
        for g in groups:
            assert len({un.batch_key(u) for u in g}) == 1
            assert len(g) == 1 or multi.BATCH_MIN <= len(g) <= multi.BATCH_MAX
        costs = [sum(u.cost() for u in g) for g in groups]
        assert mode == "never" or costs == sorted(costs, reverse=True)
    # always: the 5 teachers of each width together; coordinate searches alone
    groups = ex.batches(teachers + rest, "always")
    assert sorted(len(g) for g in groups if g[0].kind == "teacher") == [5, 5]
    assert all(len(g) == 1 for g in groups if g[0].kind == "cs")
    assert all(len(g) == 1 for g in ex.batches(teachers, "never"))


def test_batches_split_at_the_largest_group_and_leave_small_rests_single():
    p, teachers, _ = _ready_units(seeds=tuple(range(21)))  # 21 teachers per width: 16 + 5
    groups = ex.batches(teachers, "always")
    assert sorted(len(g) for g in groups) == [5, 5, 16, 16]
    p, teachers, _ = _ready_units(seeds=tuple(range(18)))  # 18 per width: 16 + 2 singles
    assert sorted(len(g) for g in ex.batches(teachers, "always")) == [1] * 4 + [16, 16]
    # three of a kind stay single (below the break-even size)
    p, teachers, _ = _ready_units(seeds=(0, 1, 2))
    assert all(len(g) == 1 for g in ex.batches(teachers, "always"))
    with pytest.raises(ValueError, match="batching mode"):
        ex.batches(teachers, "sometimes")


def test_auto_batches_full_groups_only_before_the_kernel_is_compiled(monkeypatch):
    _, teachers, _ = _ready_units(seeds=tuple(range(20)))  # 20 per width: 16 + 4
    monkeypatch.setattr(multi, "compiled", lambda: False)
    assert sorted(len(g) for g in ex.batches(teachers, "auto")) == [1] * 8 + [16, 16]
    monkeypatch.setattr(multi, "compiled", lambda: True)
    assert sorted(len(g) for g in ex.batches(teachers, "auto")) == [4, 4, 16, 16]
    # wider than multi.NARROW: only full groups repay a batch
    wide = plan(replace(QUICK, seeds=tuple(range(20)), widths=(16, 32), run=replace(QUICK.run, float_reference=False)))
    wide = [u for u in wide.units if u.kind == "teacher"]
    groups = ex.batches(wide, "auto")
    assert sorted((g[0].hidden, len(g)) for g in groups if len(g) > 1) == [(16, 4), (16, 16), (32, 16)]
    assert sum(len(g) == 1 for g in groups) == 4
    assert multi.batch_min(multi.NARROW) == multi.BATCH_MIN and multi.batch_min(multi.NARROW + 1) == multi.BATCH_MAX


def test_run_batch_gives_run_unit_results():
    p = plan(replace(QUICK, seeds=(0,)))
    teacher = p.teachers[1, 0]
    t_fig, t_model = un.run_unit(teacher, {})
    students = [u for u in p.units if u.kind == "student" and u.hidden == teacher.hidden]
    assert len(students) == 4
    seen = []
    batch = un.run_group(students, {teacher.digest: t_model},
                         {u.digest: (lambda d, t, loss: seen.append(d)) for u in students[:2]})
    assert seen and seen[-1] == students[0].config.epochs  # progress reached the end, once per listed unit
    assert len(seen) % 2 == 0
    for u, (fig, model) in zip(students, batch, strict=True):
        fig1, model1 = un.run_unit(u, {teacher.digest: t_model})
        assert model.theta.tobytes() == model1.theta.tobytes()
        assert {k: v for k, v in fig.items() if k != "seconds"} == {k: v for k, v in fig1.items() if k != "seconds"}
        assert fig["seconds"] > 0
        strip = lambda m: {k: v for k, v in m.meta.items() if k != "figures"}  # noqa: E731
        assert strip(model) == strip(model1)
        assert list(model.meta) == list(model1.meta)  # the same keys in the same order (the saved files)
    with pytest.raises(ValueError, match="one kind"):
        un.run_batch([teacher, students[0]], {teacher.digest: t_model})


def test_run_group_of_mixed_units_runs_one_by_one():
    p = plan(replace(QUICK, seeds=(0, 1)))
    teachers = [p.teachers[1, 0], p.teachers[1, 1], p.teachers[5, 0]]  # two widths: no common batch
    assert un.batch_key(teachers[0]) != un.batch_key(teachers[2])
    out = un.run_group(teachers, {})
    for u, (_, model) in zip(teachers, out, strict=True):
        assert model.theta.tobytes() == un.run_unit(u, {})[1].theta.tobytes()
        assert model.hidden == u.hidden
    assert np.isfinite(out[0][0]["eval_mse"])


def test_compiled_reads_the_cache(tmp_path):
    import os
    import subprocess
    import sys

    code = "from ternq import multi; print(multi.compiled())"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False"]  # an empty cache: a first run


def test_students_with_a_recipe_batch_with_their_epochs():
    """Every recipe batches; a fine-tune adds epochs, so it batches only with students of the same fine-tune."""
    units = [u for u in plan(QUICK).units if u.kind == "student"]
    plain = units[0]
    assert un.batch_key(plain) is not None
    tuned = replace(plain, config=replace(plain.config, finetune_epochs=5))
    assert un.batch_key(tuned) is not None and un.batch_key(tuned) != un.batch_key(plain)
    assert un.batch_key(replace(plain, config=replace(plain.config, scale_mode="twn"))) == un.batch_key(plain)
    assert tuned.cost() > plain.cost()
