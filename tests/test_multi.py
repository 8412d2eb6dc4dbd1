"""Batched training (ternq.multi): every model's bits equal training it alone."""

import itertools

import numpy as np
import pytest
from numba import njit

from ternq import multi
from ternq.kernels import cell
from ternq.kernels import multi as K
from ternq.kernels.loop import thresholds, train_epochs
from ternq.model import init_teacher
from ternq.rng import stream
from ternq.tasks import Sine
from ternq.train import DivergedError, Lane, StudentConfig, TeacherConfig, loop_of, train_student, train_teacher

TASK = Sine(steps=12)  # short sequences: the arithmetic is the same, the tests are fast
EPOCHS = 6
BATCH = 5
WIDTHS = (4, 7, 16, 32)


def same_bits(pair, single):
    (model, hist), (model1, hist1) = pair, single
    assert model.kind == model1.kind
    assert model.theta.dtype == model1.theta.dtype == np.float32
    assert model.theta.tobytes() == model1.theta.tobytes()
    assert hist.loss.tobytes() == hist1.loss.tobytes()
    assert hist.mse.tobytes() == hist1.mse.tobytes()
    assert model.meta == model1.meta


def teacher_cfg(H, **kw):
    return TeacherConfig(hidden=H, epochs=EPOCHS, batch=BATCH, **kw)


@pytest.fixture(scope="module", params=WIDTHS)
def teachers(request):
    """Teachers of one width for seeds 0 and 1, batched (mixed schedules), checked against single runs."""
    H = request.param
    cfgs = [teacher_cfg(H), teacher_cfg(H, schedule="constant", lr=3e-3)]
    seeds = [0, 1]
    got = multi.train_teachers(TASK, cfgs, seeds)
    for pair, cfg, seed in zip(got, cfgs, seeds, strict=True):
        same_bits(pair, train_teacher(TASK, cfg, seed))
    return H, [m for m, _ in got]


def test_teachers_bit_identical(teachers):
    H, models = teachers
    assert len(models) == 2 and all(m.hidden == H for m in models)
    assert models[0].theta.tobytes() != models[1].theta.tobytes()  # the seeds differ


STUDENT_KINDS = list(itertools.product((None, "seed", "reference"), (False, True), ("cosine", "constant")))


def student_cfg(H, mask, distill, schedule, k):
    return StudentConfig(hidden=H, epochs=EPOCHS, batch=BATCH, shaped=mask is not None, mask=mask or "seed",
                         distill=distill, schedule=schedule, lr=1e-2 / (1 + k % 3), lr_min=1e-4 * (k % 2),
                         clip=5.0 if k % 2 else 0.05, beta=(1.0 + k, 20.0 - k), alpha=(0.3, 0.8 - 0.05 * k))


def test_students_every_kind_mixed_in_one_batch(teachers):
    """Every mask x distill x schedule, with different lr, clip, beta and alpha, three seeds, one batch.

    28 models: the kernel's vector blocks of 16, 8 and 4 lanes all run.
    """
    H, models = teachers
    cfgs, seeds, tchs = [], [], []
    kinds = STUDENT_KINDS * 2 + STUDENT_KINDS[:4]
    for k, (mask, distill, schedule) in enumerate(kinds):
        cfgs.append(student_cfg(H, mask, distill, schedule, k % len(STUDENT_KINDS)))
        seeds.append(k % 3)
        tchs.append(models[(k // 2) % 2])  # teachers and seeds not aligned: any pairing works
    got = multi.train_students(tchs, TASK, cfgs, seeds)
    assert len(got) == len(cfgs)
    for pair, t, cfg, seed in zip(got, tchs, cfgs, seeds, strict=True):
        same_bits(pair, train_student(t, TASK, cfg, seed))


def test_batch_of_one_and_chunking():
    """A single model in a batch, and any split of the epochs into compiled calls, give the same bits."""
    t = init_teacher(7, stream(3, "t"), TASK.n_in, TASK.n_out)
    cfg = StudentConfig(hidden=7, epochs=EPOCHS, batch=BATCH, shaped=True, distill=True)
    (pair,) = multi.train_students([t], TASK, [cfg], [3])
    same_bits(pair, train_student(t, TASK, cfg, 3))
    X, Y = TASK.batches(stream(0, "d"), EPOCHS, BATCH)
    th = np.stack([t.theta, t.theta * 0.5])
    lanes = [multi.Lane(), multi.Lane(lr=1e-3)]
    a = multi.train_batch(th, X[None], Y[None], [0, 0], t.dims, lanes, student=False, chunks=1)
    b = multi.train_batch(th, X[None], Y[None], [0, 0], t.dims, lanes, student=False, chunks=EPOCHS)
    assert a.theta.tobytes() == b.theta.tobytes() and a.losses.tobytes() == b.losses.tobytes()
    assert a.theta[0].tobytes() != a.theta[1].tobytes()
    # any split of the models into compiled calls (groups) gives the same bits too
    th6 = np.stack([t.theta * (1 + 0.1 * k) for k in range(6)])
    lanes6 = [multi.Lane(lr=1e-2 / (k + 1)) for k in range(6)]
    whole = multi.train_batch(th6, X[None], Y[None], [0] * 6, t.dims, lanes6, student=False)
    for group in (1, 4, 5):
        split = multi.train_batch(th6, X[None], Y[None], [0] * 6, t.dims, lanes6, student=False, group=group)
        assert split.theta.tobytes() == whole.theta.tobytes()
        assert split.losses.tobytes() == whole.losses.tobytes()


def single_until_divergence(theta, X, Y, dims, lr):
    """The single compiled loop, which stops at the first non-finite loss; theta as it was then."""
    theta = theta.copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    losses, mses = np.full(EPOCHS * 5, np.nan), np.full(EPOCHS * 5, np.nan)
    loop = loop_of([Lane(lr=lr, lr_min=0.0, schedule="cosine", clip=5.0)], dims, len(X), False)
    bad = train_epochs(theta, m, v, X, Y, 0, len(X), loop, None, thresholds(loop, theta.dtype), losses, mses)
    return bad, theta, losses


def test_divergence_freezes_only_that_model():
    E = EPOCHS * 5
    cfgs = [TeacherConfig(hidden=8, epochs=E, batch=BATCH), TeacherConfig(hidden=8, epochs=E, batch=BATCH, lr=1e30,
                                                                         lr_min=0.0)]
    with pytest.raises(DivergedError) as exc:
        train_teacher(TASK, cfgs[1], 0)
    got = multi.train_teachers(TASK, cfgs, [0, 0], errors="return")
    assert isinstance(got[1], DivergedError) and got[1].epoch == exc.value.epoch
    same_bits(got[0], train_teacher(TASK, cfgs[0], 0))
    with pytest.raises(DivergedError, match=f"epoch {exc.value.epoch}"):
        multi.train_teachers(TASK, cfgs, [0, 0])
    # at the kernel level: the frozen model keeps the single loop's last theta, NaN losses after
    t = init_teacher(8, stream(0, "teacher-init", 8), TASK.n_in, TASK.n_out)
    X, Y = TASK.batches(stream(0, "teacher-data", 8), E, BATCH)
    res = multi.train_batch(np.stack([t.theta, t.theta]), X[None], Y[None], [0, 0], t.dims,
                            [multi.Lane(lr=1e30, lr_min=0.0), multi.Lane()], student=False)
    bad, theta1, losses1 = single_until_divergence(t.theta, X, Y, t.dims, 1e30)
    assert bad >= 0 and res.diverged.tolist() == [bad, -1]
    assert res.theta[0].tobytes() == theta1.tobytes()
    assert res.losses[0].tobytes() == losses1.tobytes()
    assert np.all(np.isnan(res.losses[0, bad:])) and np.all(np.isfinite(res.losses[1]))


def test_progress_is_called():
    calls = []
    multi.train_teachers(TASK, teacher_cfg(4), [0, 1], progress=lambda d, n, loss: calls.append((d, n, loss)))
    assert calls[-1][:2] == (EPOCHS, EPOCHS) and all(np.isfinite(c[2]) for c in calls)


@pytest.mark.parametrize("call, match", [
    (lambda: multi.train_teachers(TASK, [teacher_cfg(4), teacher_cfg(8)], [0, 1]), "same hidden"),
    (lambda: multi.train_teachers(TASK, [teacher_cfg(4)], [0, 1]), "one config per seed"),
    (lambda: multi.train_teachers(TASK, teacher_cfg(4), [-1]), "non-negative"),
    (lambda: multi.train_teachers(TASK, teacher_cfg(4), [0], errors="ignore"), "errors"),
    (lambda: multi.train_teachers(TASK, TeacherConfig(hidden=4, lr=-1.0), [0]), "lr"),
    (lambda: multi.train_students(init_teacher(8, stream(0, "t")), TASK, StudentConfig(hidden=4), [0]),
     "teachers of width 4"),
    (lambda: multi.train_batch(np.zeros((2, 3), np.float32), np.zeros((1, 1, 1, 1, 1)), np.zeros((1, 1, 1, 1, 1)),
                               [0, 0], (1, 4, 1), [multi.Lane()] * 2, student=False), "theta must have shape"),
    (lambda: multi.train_batch(np.zeros((1, 57), np.float32), np.zeros((1, 2, 1, 3, 1)), np.zeros((1, 2, 1, 3, 1)),
                               [1], (1, 4, 1), [multi.Lane()], student=False), "data must hold"),
    (lambda: multi.train_batch(np.zeros((1, 57), np.float32), np.zeros((1, 2, 1, 3, 1)), np.zeros((1, 2, 1, 3, 1)),
                               [0], (1, 4, 1), [multi.Lane(mask="seed")], student=False), "only students"),
    (lambda: multi.train_batch(np.zeros((1, 57), np.float32), np.zeros((1, 2, 1, 3, 1)), np.zeros((1, 2, 1, 3, 1)),
                               [0], (1, 4, 1), [multi.Lane(scale_mode="twn")], student=False), "only students"),
    (lambda: multi.train_batch(np.zeros((2, 66), np.float32), np.zeros((1, 2, 1, 3, 1)), np.zeros((1, 2, 1, 3, 1)),
                               [0, 0], (1, 4, 1), [multi.Lane(), multi.Lane(finetune_epochs=1)], student=True),
     "one fine-tune"),
    (lambda: multi.train_batch(np.zeros((1, 66), np.float32), np.zeros((1, 2, 1, 3, 1)), np.zeros((1, 2, 1, 3, 1)),
                               [0], (1, 4, 1), [multi.Lane(distill_output=0.5)], student=True), "teacher parameters"),
    (lambda: multi.train_students(init_teacher(4, stream(0, "t")), TASK,
                                  [StudentConfig(hidden=4), StudentConfig(hidden=4, finetune_epochs=2)], [0, 0]),
     "fine-tune"),
])
def test_bad_input_is_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_empty_batch():
    assert multi.train_teachers(TASK, teacher_cfg(4), []) == []


@njit(cache=True)
def _vector_acts(a):
    g = np.empty_like(a)
    t = np.empty_like(a)
    K._sigmoid_v(g, a)
    K._tanh_v(t, a)
    return g, t


@njit(cache=True)
def _scalar_acts(a):
    g = np.empty_like(a)
    t = np.empty_like(a)
    for k in range(a.shape[0]):
        g[k] = cell.sigmoid(a[k])
        t[k] = cell.tanh(a[k])
    return g, t


def test_vector_sigmoid_tanh_equal_the_cells_bit_for_bit():
    """Every lane block (16, 8, 4) against the cell's scalar functions, edge values included."""
    rng = np.random.default_rng(0)
    edge = [0.0, -0.0, 1e-30, -1e-30, 1e-8, 0.5, -0.5, 39.9, 40.0, 40.1, 79.9, 80.0, 80.5, 87.0, 88.8,
            -87.0, 1e30, -1e30, np.inf, -np.inf, np.float32(np.nextafter(np.float32(40), np.float32(0))), 126.0]
    edge = np.array(edge + [-v for v in edge], np.float32)
    wide = np.float32(2.0) ** rng.uniform(-40, 7, 4000) * rng.choice([-1, 1], 4000)
    x = np.concatenate([edge, rng.standard_normal(40000) * 4, rng.uniform(-100, 100, 40000), wide])
    x = np.ascontiguousarray(x[: len(x) - len(x) % 4], np.float32)
    for n in (len(x), 28, 12, 4):  # block mixes: many 16s; 16+8+4; 8+4; 4
        for part in (x[:n], x[-n:]):
            g, t = _vector_acts(part.copy())
            g1, t1 = _scalar_acts(part.copy())
            assert g.tobytes() == g1.tobytes()
            assert t.tobytes() == t1.tobytes()


def test_threads_give_the_same_bits():
    """The kernel releases the GIL and owns its workspace: batches on threads run side by side unchanged."""
    from concurrent.futures import ThreadPoolExecutor

    cfgs = [teacher_cfg(7, lr=1e-2 / (k + 1)) for k in range(5)]
    serial = multi.train_teachers(TASK, cfgs, [0, 1, 2, 3, 4])
    with ThreadPoolExecutor(2) as ex:
        futs = [ex.submit(multi.train_teachers, TASK, cfgs, [0, 1, 2, 3, 4]) for _ in range(2)]
        for f in futs:
            for pair, ref in zip(f.result(), serial, strict=True):
                same_bits(pair, ref)


def test_data_built_on_threads_is_each_seeds_own_stream():
    """The seeds' data sets, built on several threads, are each the set its own stream gives, in seed order."""
    cfg = teacher_cfg(4)
    keys = [5, 2, 9, 2, 11, 3, 7, 13, 1, 4, 6]  # more distinct seeds than threads, one repeated
    X, Y, data = multi._data(TASK, keys, "teacher-data", cfg, 4)
    uniq = sorted(set(keys))
    assert len(uniq) > multi.DATA_THREADS
    for k, s in enumerate(uniq):
        x, y = TASK.batches(stream(s, "teacher-data", 4), cfg.epochs, cfg.batch)
        assert X[k].tobytes() == x.tobytes() and Y[k].tobytes() == y.tobytes()
    assert [uniq[d] for d in data] == keys
