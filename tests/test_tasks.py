"""Tasks: shapes, determinism, held-out sets disjoint from training, file input and its errors."""

import json
import sys

import numpy as np
import pytest
from conftest import invoke as run

from ternq.rng import stream
from ternq.tasks import (
    ECG_A,
    ECG_B,
    ECG_F_HF,
    ECG_F_LF,
    ECG_HR_MEAN,
    ECG_HR_STD,
    ECG_SEED,
    ECG_THETA,
    ECG_WANDER,
    TASK_HELP,
    TASKS,
    MultiSine,
    Series,
    Sine,
    ecg_trajectory,
    from_file,
    get_task,
    min_length,
    rr_process,
    statsmodels_series,
)
from ternq.tasks.simulated import _ecg_rk4
from ternq.train import TeacherConfig, evaluate, train_teacher

try:
    import statsmodels  # noqa: F401
    HAVE_SM = True
except ImportError:  # pragma: no cover
    HAVE_SM = False

NAMES = [n for n in TASKS if HAVE_SM or n not in ("sunspots", "co2")]




@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_determinism(name):
    task = get_task(name)
    X, Y = task.batches(np.random.default_rng(7), 3, 4)
    assert X.shape == (3, 4, task.steps, task.n_in) and Y.shape == (3, 4, task.steps, task.n_out)
    assert X.dtype == Y.dtype == np.float32 and X.flags.c_contiguous and Y.flags.c_contiguous
    X2, Y2 = task.batches(np.random.default_rng(7), 3, 4)
    assert X.tobytes() == X2.tobytes() and Y.tobytes() == Y2.tobytes()
    X3, _ = task.batches(np.random.default_rng(8), 3, 4)
    assert X3.tobytes() != X.tobytes()
    Xe, Ye = task.eval_set()
    assert Xe.ndim == 3 and Xe.shape[2] == task.n_in and Ye.shape[2] == task.n_out and Xe.shape[:2] == Ye.shape[:2]
    assert Xe.dtype == np.float32 and Xe.flags.c_contiguous and Ye.flags.c_contiguous
    Xe2, Ye2 = get_task(name).eval_set()
    assert Xe.tobytes() == Xe2.tobytes() and Ye.tobytes() == Ye2.tobytes()
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(Xe))
    # next-step prediction: the target of step t is the input of step t + 1
    assert np.array_equal(X[:, :, 1:], Y[:, :, :-1]) and np.array_equal(Xe[:, 1:], Ye[:, :-1])
    json.dumps(task.describe())


def test_no_global_random_state():
    np.random.seed(0)
    a = get_task("lorenz").batches(np.random.default_rng(1), 2, 2)[0]
    np.random.seed(1)
    b = get_task("lorenz").batches(np.random.default_rng(1), 2, 2)[0]
    assert a.tobytes() == b.tobytes()


def test_sine_unchanged():
    X, Y = Sine().batches(np.random.default_rng(0), 1, 1)
    phi = np.random.default_rng(0).uniform(0.0, 2 * np.pi, size=(1, 1))[0, 0]
    assert X[0, 0, 3, 0] == np.float32(np.sin(phi + 3 * 0.1)) and Y[0, 0, 0, 0] == X[0, 0, 1, 0]
    Xe, _ = Sine().eval_set()
    assert Xe.shape == (64, 100, 1) and Xe[0, 0, 0] == np.float32(np.sin(2 * np.pi * 0.5 / 64))


def test_multisine_eval_starts_beyond_training():
    task = MultiSine()
    starts = task.eval_starts()
    assert starts.min() > task.train_span + (task.steps + 1) * task.dt
    X, _ = task.batches(np.random.default_rng(0), 2, 3)
    t = 1000.0 + 7 * 0.1
    val = (np.sin(t) + np.sin(np.sqrt(2) * t) + np.sin(np.pi * t)) / np.sqrt(1.5)
    assert abs(task.signal(np.array([1000.0]), 10)[0][0, 7, 0] - val) < 1e-6


def _rows_of(task: Series, X):
    """Row indices of the series each window came from (matching the normalised values)."""
    idx = []
    for w in X.reshape(-1, X.shape[-2], X.shape[-1]):
        hits = np.flatnonzero(np.all(task.data[: len(task.data) - len(w) + 1] == w[0], axis=1))
        for h in hits:
            if np.array_equal(task.data[h : h + len(w)], w):
                idx.append(h)
                break
        else:
            raise AssertionError("window not found")
    return np.array(idx)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("sine", "multisine")])
def test_series_split_in_time(name):
    task = get_task(name)
    X, _ = task.batches(np.random.default_rng(0), 20, 10)
    starts = _rows_of(task, X)
    assert starts.max() + task.steps <= task.n_train - 1  # last target row is a training row
    Xe, _ = task.eval_set()
    assert np.all(task.eval_starts >= task.n_train)
    assert task.eval_starts[-1] + task.eval_steps == task.length - 1
    assert Xe.shape == (len(task.eval_starts), task.eval_steps, task.n_in)
    train = task.data[: task.n_train]
    assert np.allclose(train.mean(axis=0), 0, atol=1e-4) and np.allclose(train.std(axis=0), 1, atol=1e-3)


def test_lorenz_trajectory_is_lorenz():
    task = get_task("lorenz")
    assert task.n_in == task.n_out == 3 and task.length == 5000 and task.n_train == 4000
    raw = task.data * task.std + task.mean
    assert raw[:, 2].min() > 0 and raw[:, 0].min() < -10 and raw[:, 0].max() > 10  # both wings visited


def test_statsmodels_missing_says_how_to_install(monkeypatch):
    statsmodels_series.cache_clear()
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    with pytest.raises(ValueError, match=r"pip install ternq\[data\]"):
        get_task("sunspots")
    statsmodels_series.cache_clear()


def test_unknown_task_and_bad_kwargs():
    with pytest.raises(ValueError, match="unknown task 'nope'; choose from"):
        get_task("nope")
    with pytest.raises(ValueError, match="task sine"):
        get_task("sine", bogus=1)


@pytest.mark.parametrize("name", ["lorenz", "multisine"])
def test_short_teacher_trains(name):
    task = get_task(name)
    model, hist = train_teacher(task, TeacherConfig(hidden=4, epochs=40), seed=0)
    assert model.dims == (task.n_in, 4, task.n_out)
    assert np.all(np.isfinite(hist.loss)) and hist.loss[-5:].mean() < hist.loss[:5].mean()
    assert np.isfinite(evaluate(model, task)["eval_mse"])


# ---- --data FILE


def _csv(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_from_file_csv_with_header_and_npy(tmp_path):
    t = np.arange(200) * 0.1
    rows = "\n".join(f"{np.sin(x):.6f},{np.cos(x):.6f}" for x in t)
    a = from_file(_csv(tmp_path, "a,b\n" + rows + "\n"))
    assert a.n_in == a.n_out == 2 and a.length == 200 and a.describe()["sha256"]
    np.save(tmp_path / "s.npy", np.stack([np.sin(t), np.cos(t)], 1))
    b = from_file(tmp_path / "s.npy")
    assert np.allclose(a.data, b.data, atol=1e-5)
    one = from_file(_csv(tmp_path, "\n".join(f"{np.sin(x)}" for x in t), "one.csv"))
    assert one.n_in == 1
    assert min_length(50, 0.75) == 68


@pytest.mark.parametrize("case,needle", [
    ("missing", "not found"),
    ("text", "line 3, column 2: 'abc' is not a number"),
    ("nan", "non-finite value (nan) at row 2, channel 0 (1 in all)"),
    ("inf", "non-finite value (inf) at row 5, channel 1 ('y')"),
    ("short", "has 20 rows; sequences of 50 steps need at least 68"),
    ("ragged", "line 2 has 1 columns"),
    ("empty", "no data rows"),
    ("npy-text", "not numbers"),
    ("both", "not both"),
])
def test_data_errors_one_line_exit_2(tmp_path, case, needle, capsys):
    good = "\n".join(f"{i},{i * 2}" for i in range(100))
    texts = {
        "text": "1,2\n3,4\n5,abc\n" + good,
        "nan": "1,2\nnan,4\n" + good,
        "inf": "x,y\n1,2\n3,4\n5,6\n7,8\n9,inf\n" + good,
        "short": "\n".join(str(i) for i in range(20)),
        "ragged": "1,2\n3\n",
        "empty": "a,b\n",
        "both": good,
    }
    path = _csv(tmp_path, texts[case]) if case in texts else tmp_path / "nope.csv"
    if case == "npy-text":
        path = tmp_path / "s.npy"
        np.save(path, np.array(["a", "b"]))
    argv = ["teacher", "--hidden", "2", "--epochs", "2", "--quiet", "--out", str(tmp_path / "t.npz"),
            "--data", str(path)]
    if case == "both":
        argv += ["--task", "lorenz"]
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "t.npz").exists()


def test_teacher_on_a_data_file(tmp_path, capsys):
    t = np.arange(400) * 0.1
    np.save(tmp_path / "s.npy", np.stack([np.sin(t), np.sin(2 * t)], 1).astype(np.float32))
    out = tmp_path / "t.npz"
    code, stdout, err = run(["teacher", "--hidden", "4", "--epochs", "20", "--quiet", "--json", "--out", str(out),
                             "--data", str(tmp_path / "s.npy")], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["task"]["name"] == "data" and res["task"]["n_in"] == 2 and np.isfinite(res["eval_mse"])


# ---- batches a chunk of epochs at a time


def _file_task(tmp_path):
    t = np.arange(300) * 0.1
    np.save(tmp_path / "s.npy", np.stack([np.sin(t), np.cos(1.3 * t)], 1))
    return from_file(tmp_path / "s.npy", steps=20)


@pytest.mark.parametrize("name", NAMES + ["file"])
@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_batch_chunks_are_bitwise_slices_of_batches(name, chunk, tmp_path):
    task = _file_task(tmp_path) if name == "file" else get_task(name)
    epochs, batch = 7, 5
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    X, Y = task.batches(rng_a, epochs, batch)
    seen = 0
    for e0, Xc, Yc in task.batch_chunks(rng_b, epochs, batch, chunk):
        assert e0 == seen and len(Xc) == min(chunk, epochs - e0)
        assert Xc.tobytes() == X[e0:e0 + len(Xc)].tobytes() and Yc.tobytes() == Y[e0:e0 + len(Yc)].tobytes()
        assert Xc.flags.c_contiguous and Yc.flags.c_contiguous
        seen += len(Xc)
    assert seen == epochs
    # the stream was consumed exactly as one batches() call consumes it
    assert rng_a.random() == rng_b.random()


def test_batch_chunks_hold_one_chunk_at_a_time():
    task = get_task("sine")
    sizes = [Xc.nbytes for _, Xc, _ in task.batch_chunks(np.random.default_rng(0), 100, 10, 8)]
    full = task.batches(np.random.default_rng(0), 100, 10)[0].nbytes
    assert max(sizes) * 100 == full * 8
    with pytest.raises(ValueError, match="chunk"):
        next(task.batch_chunks(np.random.default_rng(0), 10, 10, 0))


# ---- normalisation: hostile series refused, extreme scales handled exactly


def _sine_series(n=200, channels=1):
    t = np.arange(n) * 0.1
    return np.stack([np.sin((c + 1) * t) for c in range(channels)], 1)


def _hostile(case):
    s = _sine_series(200, 2)
    if case == "constant column":
        s[:, 1] = 3.0
    elif case == "all zero":
        s[:] = 0.0
    elif case == "outlier in training":
        s[40, 0] = 1e300
    elif case == "outlier held out":
        s[190, 1] = 1e300
    elif case == "outlier over tiny":
        s *= 1e-300
        s[190, 0] = 1e300
    elif case == "constant 1e300":
        s[:, 0] = 1e300
    elif case == "below resolution":
        s[:, 0] = 1.0 + 1e-15 * s[:, 0]
    elif case == "one spike":
        s[:, 0] = 0.0
        s[17, 0] = 1.0
    return s


HOSTILE = ["constant column", "all zero", "outlier in training", "outlier held out", "outlier over tiny",
           "constant 1e300", "below resolution", "one spike"]


@pytest.mark.parametrize("case", HOSTILE)
def test_degenerate_series_are_refused_without_warnings(case):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as exc:
            Series(_hostile(case), "x", steps=20)
    msg = str(exc.value)
    assert "\n" not in msg and "channel" in msg


@pytest.mark.parametrize("factor", [1e-300, 1e-30, 1e30, 1e300, -1e300])
def test_extreme_scales_normalise_as_the_unit_series(factor):
    import warnings

    base = Series(_sine_series(200, 2) + 0.5, "x", steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = Series((_sine_series(200, 2) + 0.5) * factor, "x", steps=20)
    assert np.all(np.isfinite(big.data))
    np.testing.assert_allclose(big.data, np.sign(factor) * base.data, rtol=0, atol=1e-6)
    np.testing.assert_allclose(big.std, base.std * abs(factor), rtol=1e-12)
    np.testing.assert_allclose(big.mean, base.mean * factor, rtol=1e-12)
    train = big.data[: big.n_train].astype(np.float64)
    assert np.allclose(train.mean(0), 0, atol=1e-6) and np.allclose(train.std(0), 1, atol=1e-6)


COMMANDS = {"teacher": ["teacher", "--hidden", "2", "--epochs", "2"], "gradcheck": ["gradcheck", "--hidden", "2"],
            "student": ["student", "--hidden", "2", "--epochs", "2"], "cs": ["cs", "--hidden", "2"],
            "factorial": ["factorial", "--teacher-epochs", "2", "--student-epochs", "2"]}


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_degenerate_data_files_through_the_cli(tmp_path, capsys, case, command):
    path = tmp_path / "s.csv"
    np.savetxt(path, _hostile(case), delimiter=",")
    out_flag = ["--out", str(tmp_path / ("t" if command == "factorial" else "t.npz"))] if command != "gradcheck" else []
    code, out, err = run(COMMANDS[command] + ["--quiet"] * (command != "gradcheck") + out_flag + ["--data", str(path)],
                         capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "channel" in err
    assert "Traceback" not in err and "Warning" not in err and "Internal error" not in err
    assert not (tmp_path / "t.npz").exists()


def test_huge_values_give_the_same_model_as_unit_values(tmp_path, capsys):
    """Values near 1e300 used to normalise to zeros and report an MSE of 0: now the same run as unit values."""
    figures = []
    for factor in (1.0, 1e300, 1e-300):
        path = tmp_path / f"s{factor}.csv"
        np.savetxt(path, (_sine_series(200) + 0.5) * factor, delimiter=",", fmt="%.17g")
        code, out, err = run(["teacher", "--hidden", "3", "--epochs", "5", "--quiet", "--json",
                              "--out", str(tmp_path / "t.npz"), "--data", str(path)], capsys)
        assert code == 0 and "Warning" not in err, err
        figures.append(json.loads(out)["eval_mse"])
    assert figures[0] > 0 and np.allclose(figures, figures[0], rtol=1e-4)


# ---- memory a training needs


@pytest.mark.parametrize("name", NAMES)
def test_training_memory_bounds_what_making_the_data_takes(name):
    import tracemalloc

    from ternq.memory import training_memory

    task = get_task(name)
    task.eval_set()  # build any cached series first: only the batches are measured
    E, B, H = 40, 10, 8
    tracemalloc.start()
    task.batches(np.random.default_rng(0), E, B)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full = training_memory(E, B, task.steps, H, task.n_in, task.n_out)
    one = training_memory(E, B, task.steps, H, task.n_in, task.n_out, chunk=1)
    data = (full - one) * E // (E - 1)  # the part that scales with the epochs held at once
    assert peak <= data <= 4 * peak


def test_memory_estimate_grows_with_every_size_and_refuses_what_does_not_fit():
    from ternq.memory import available_memory, check_fits, training_memory

    base = training_memory(10, 4, 20, 8, 1, 1)
    for k in range(6):
        sizes = [10, 4, 20, 8, 1, 1]
        sizes[k] *= 2
        assert training_memory(*sizes) > base
    have = available_memory()
    assert have is None or have > 0
    if have is not None:
        check_fits(have // 10)
        with pytest.raises(ValueError, match="GiB"):
            check_fits(training_memory(10**9, 10, 50, 32))
    with pytest.raises(ValueError, match="epochs"):
        training_memory(0, 1, 1, 1)


def test_task_of_finds_the_data_file_and_refuses_a_changed_one(tmp_path):
    from ternq.tasks import from_file, task_of

    path = tmp_path / "s.csv"
    rng = np.random.default_rng(0)
    np.savetxt(path, np.cumsum(rng.normal(size=(400, 2)), axis=0), delimiter=",")
    described = from_file(path).describe()
    again = task_of(described)
    assert again.describe() == described
    assert task_of({"name": "lorenz"}).name == "lorenz"
    np.savetxt(path, np.cumsum(rng.normal(size=(400, 2)), axis=0), delimiter=",")
    with pytest.raises(ValueError, match="gone or has changed"):
        task_of(described)
    path.unlink()
    with pytest.raises(ValueError, match="gone or has changed"):
        task_of(described)
    with pytest.raises(ValueError, match="does not say"):
        task_of({})


# ---- the ecg task (McSharry et al. 2003)


def _r_peaks(d: np.ndarray, level: float = 2.0) -> np.ndarray:
    """Rows of the local maxima above ``level`` (the normalised R peaks stand near 4; nothing else passes 2)."""
    return np.flatnonzero((d[1:-1] > d[:-2]) & (d[1:-1] >= d[2:]) & (d[1:-1] > level)) + 1


def test_ecg_is_one_channel_with_a_beat_period():
    from ternq.forecast import baselines

    task = get_task("ecg")
    assert task.n_in == task.n_out == 1 and task.period == round(64 * 60 / ECG_HR_MEAN)
    assert task.length == 16384 and task.n_train == int(0.8 * 16384)
    assert task.describe()["seed"] == ECG_SEED
    base = baselines(task)
    assert base["period"] == task.period and np.isfinite(base["seasonal"]["mse"])


def test_ecg_series_is_fixed_seeded_and_read_only():
    a = ecg_trajectory(1000)
    ecg_trajectory.cache_clear()
    np.random.seed(5)  # the global state plays no part
    b = ecg_trajectory(1000)
    assert a.tobytes() == b.tobytes() and not b.flags.writeable
    c = ecg_trajectory(1000, seed=ECG_SEED + 1)
    assert c.tobytes() != a.tobytes()
    assert get_task("ecg").data.tobytes() == get_task("ecg").data.tobytes()


def test_rr_process_has_the_papers_spectrum():
    fs, n = 4.0, 1 << 14
    rr = rr_process(stream(0, "test-rr"), n, fs, hr_mean=75.0, hr_std=3.0, lf_hf=0.5)
    assert abs(rr.mean() - 60 / 75) < 1e-12 and abs(rr.std() - 60 * 3 / 75**2) < 1e-12
    power = np.abs(np.fft.rfft(rr - rr.mean())) ** 2
    f = np.fft.rfftfreq(n, 1 / fs)
    lf, hf = (f > 0.04) & (f < 0.175), (f > 0.175) & (f < 0.4)
    assert abs(power[lf].sum() / power[hf].sum() - 0.5) < 0.01  # the LF/HF ratio asked for
    assert abs(f[lf][np.argmax(power[lf])] - ECG_F_LF) <= fs / n  # Mayer waves
    assert abs(f[hf][np.argmax(power[hf])] - ECG_F_HF) <= fs / n  # respiratory sinus arrhythmia
    assert power[(f > 0.5)].sum() < 1e-9 * power.sum()  # nothing outside the two peaks
    other = rr_process(stream(1, "test-rr"), n, fs)
    assert not np.array_equal(other, rr_process(stream(0, "test-rr"), n, fs))
    with pytest.raises(ValueError, match="rr_process"):
        rr_process(stream(0, "test-rr"), 2, fs)


def _mcsharry_z(seconds: float, fs: int, beat: float) -> np.ndarray:
    """The paper's equations written out independently and solved by scipy at tight tolerance (constant rate)."""
    from scipy.integrate import solve_ivp

    th, a, b = np.array(ECG_THETA), np.array(ECG_A), np.array(ECG_B)
    w = 2 * np.pi / beat

    def f(t, s):
        x, y, z = s
        alpha = 1 - np.hypot(x, y)
        d = (np.arctan2(y, x) - th + np.pi) % (2 * np.pi) - np.pi
        z0 = ECG_WANDER * np.sin(2 * np.pi * ECG_F_HF * t)
        return [alpha * x - w * y, alpha * y + w * x, -np.sum(a * d * np.exp(-d**2 / (2 * b**2))) - (z - z0)]

    t = np.arange(int(seconds * fs)) / fs
    sol = solve_ivp(f, (0, t[-1]), [1.0, 0.0, 0.0], t_eval=t, method="DOP853", rtol=1e-11, atol=1e-13,
                    max_step=0.25 / fs)
    return sol.y[2]


def test_ecg_rk4_solves_the_papers_equations():
    fs, every, beat = 64, 8, 0.9
    n = 4 * fs * every
    z = _ecg_rk4(np.full(n, 2 * np.pi / beat), 1.0 / (fs * every), every, np.array(ECG_THETA), np.array(ECG_A),
                 np.array(ECG_B), ECG_WANDER, ECG_F_HF)
    ref = _mcsharry_z(4.0, fs, beat)
    assert z.shape == ref.shape and np.abs(z - ref).max() < 1e-6 * np.abs(ref).max()


def test_ecg_beats_where_expected():
    task = get_task("ecg")
    d = task.data[:, 0].astype(np.float64)
    peaks = _r_peaks(d)
    beats = len(d) / 64 * ECG_HR_MEAN / 60  # duration (s) x heart rate (beats per s)
    assert abs(len(peaks) - beats) <= 0.02 * beats
    gaps = np.diff(peaks)
    assert abs(gaps.mean() - task.period) < 0.5
    rr_sd = 60 * ECG_HR_STD / ECG_HR_MEAN**2 * 64  # the RR process's sd, in samples
    assert 0.5 * rr_sd < gaps.std() < 2 * rr_sd  # heart-rate variability, of the size asked for
    # the mean beat around its R peak: Q just before, S just after, P and T where table 1 puts them
    m = task.period
    peaks = peaks[(peaks > m) & (peaks < len(d) - m)]
    mean_beat = np.mean([d[p - m // 2:p + m // 2] for p in peaks], axis=0)
    r = m // 2
    samples_at = [round(t / (2 * np.pi) * m) for t in ECG_THETA]  # P, Q, R, S, T
    assert np.argmax(mean_beat) == r
    assert abs(np.argmax(mean_beat[: r - 5]) - (r + samples_at[0])) <= 1  # P
    assert abs(np.argmax(mean_beat[r + 6:]) + r + 6 - (r + samples_at[4])) <= 1  # T
    assert abs(np.argmin(mean_beat[r - 5:r]) + r - 5 - (r + samples_at[1])) <= 1  # Q
    assert abs(np.argmin(mean_beat[r + 1:r + 6]) + r + 1 - (r + samples_at[3])) <= 1  # S
    assert mean_beat[r + samples_at[1]] < 0 and mean_beat[r + samples_at[3]] < 0


def test_short_teacher_trains_on_ecg():
    task = get_task("ecg")
    model, hist = train_teacher(task, TeacherConfig(hidden=4, epochs=40), seed=0)
    assert model.dims == (1, 4, 1)
    assert np.all(np.isfinite(hist.loss)) and hist.loss[-5:].mean() < hist.loss[:5].mean()
    assert np.isfinite(evaluate(model, task)["eval_mse"])


def test_ecg_through_the_cli(tmp_path, capsys):
    out = tmp_path / "t.npz"
    code, stdout, err = run(["teacher", "--task", "ecg", "--epochs", "50", "-q", "--json", "--out", str(out)], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["task"]["name"] == "ecg" and np.isfinite(res["eval_mse"]) and out.exists()
    assert res["naive"]["period"] == get_task("ecg").period
    assert "ecg" in TASK_HELP
    code, stdout, _ = run(["teacher", "--help"], capsys)
    assert code == 0 and "ecg" in stdout
    with pytest.raises(ValueError, match="ecg"):
        get_task("ekg")
