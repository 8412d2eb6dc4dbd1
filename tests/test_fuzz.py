"""A property-based fuzz of the real CLI: random options, settings files and data files.

Whatever the input, ``ternq`` must end with exit status 0, 1 or 2 and never print
a traceback or "Internal error". Every example runs in-process on tiny sizes (a
few epochs, widths of a few units), and the budget is fixed (``max_examples``,
derandomized), so the test takes the same path on every machine.

Hostile inputs drawn include negative seeds, an empty ``--task``, ``/dev/zero``
and folders as settings, data and model files, TOML nested thousands of levels
deep, crafted ``.npy`` headers, and data files with text columns or header rows
that do not match their data.

Left out, because each is slow by design rather than wrong: sizes that need
minutes or GiBs (the memory and time checks have their own tests), and
``--scheduler`` (an address that does not answer is given 10 s before the run
gives up).
"""

import itertools
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke as run
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ternq.model import init_teacher, student_from
from ternq.rng import stream

MAX_EXAMPLES = int(os.environ.get("TERNQ_FUZZ_EXAMPLES", "300"))  # raise it to fuzz longer



def mostly(valid, hostile, weight=4):
    """Values drawn from ``valid`` about ``weight`` times as often as from ``hostile``: runs get past parsing."""
    return st.sampled_from(list(valid) * weight * max(1, len(hostile) // max(1, len(valid))) + list(hostile))


COUNTS = mostly(["1", "2", "3"], ["0", "abc", "", "1.5", "nan", "-0"], 8)
SEEDS = mostly(["0", "1", "3"], ["abc", "", "2.5", "0x1", "-1", "-4294967296"])
SEED_SETS = mostly(["1", "2", "0:2", "1:3"], ["3:1", "2:2", "a:b", "", "x", "0:"])
RATES = mostly(["1e-2", "1e-3"], ["0", "-1", "nan", "inf", "1e10", "abc", ""])
FLOATS = mostly(["0.3", "0.8", "1", "20"], ["0", "-1", "nan", "inf", "abc", "1e300"])
TASKS = mostly(["sine", "multisine", "lorenz", "sunspots"], ["nope", "SINE", ""], 2)
COMMON_FLAGS = ("--json", "--json", "--quiet", "--quiet")
FLAGS = {"student": ("--shaped", "--no-shaped", "--distill", "--no-distill"), "factorial": ("--no-gradcheck",),
         "sweep": ("--no-gradcheck",), "predict": ("--factored",)}


# ---- data files: good series, degenerate ones, crafted binaries

def _series(draw):
    rows = draw(mostly([80, 120], [0, 1, 5, 40]))
    channels = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["sine", "sine", "const", "zeros", "huge", "tiny", "outlier", "nan", "random"]))
    t = np.arange(rows)[:, None] * 0.1 * np.arange(1, channels + 1)
    s = np.sin(t)
    if kind == "const":
        s[:, -1] = 3.0
    elif kind == "zeros":
        s[:] = 0.0
    elif kind == "huge":
        s = (s + 2) * 1e300
    elif kind == "tiny":
        s = (s + 2) * 1e-300
    elif kind == "outlier" and rows:
        s[draw(st.integers(0, rows - 1)), 0] = draw(st.sampled_from([1e300, -1e300, 1e30, 1e8]))
    elif kind == "nan" and rows:
        s[draw(st.integers(0, rows - 1)), 0] = draw(st.sampled_from([np.nan, np.inf]))
    elif kind == "random":
        s = np.array(draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64),
                                   min_size=rows * channels, max_size=rows * channels))).reshape(rows, channels)
    return s


def _npy_header(shape, descr="<f8"):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@st.composite
def data_files(draw, folder):
    kind = draw(st.sampled_from(["csv", "csv", "csv", "npy", "npy", "npy-crafted", "text", "special"]))
    if kind == "special":
        return draw(st.sampled_from(["/dev/zero", "/dev/null", str(folder), str(folder / "missing.csv"), ""]))
    if kind == "text":
        path = folder / draw(st.sampled_from(["d.csv", "d.txt", "d.npy"]))
        path.write_bytes(draw(st.binary(max_size=300)) if draw(st.booleans()) else
                         draw(st.text(alphabet="0123456789.,-e \nabcnaif", max_size=300)).encode())
        return str(path)
    if kind == "npy-crafted":
        path = folder / "c.npy"
        shape = draw(st.sampled_from([(10**12, 1), (3, 4, 5), (), (0,), (100, 2)]))
        descr = draw(st.sampled_from(["<f8", "<i4", "|O", "<U3", "<c16"]))
        path.write_bytes(_npy_header(shape, descr) + b"\0" * draw(st.sampled_from([0, 16, 1600])))
        return str(path)
    s = _series(draw)
    if kind == "npy":
        path = folder / "d.npy"
        with np.errstate(all="ignore"):  # hostile casts are the point
            np.save(path, s.astype(draw(st.sampled_from([np.float64, np.float32, np.int16]))))
    else:
        path = folder / "d.csv"
        header = draw(st.sampled_from(["", "a,b,c\n", "#x\n", "time,a\n", ",\n"]))
        stamp = draw(st.sampled_from(["", "", "", "2024-03-01T00:00:00,", "x,"]))  # a text column first
        path.write_text(header + "\n".join(stamp + ",".join(repr(float(v)) for v in row) for row in s) + "\n")
    return str(path)


# ---- settings files: known sections and keys with hostile values, a few unknown ones

VALUES = st.one_of(
    st.integers(-2, 3), st.sampled_from([1.5, 0.0, -1.0, 1e300]), st.booleans(),
    st.sampled_from(['"seed"', '"reference"', '"cosine"', '"constant"', '"sine"', '"lorenz"', '""', '"0:2"',
                     '"/dev/zero"', "nan", "inf", "[4, 8]", "[8, 4]", "[4, 4]", "[0]", "[1, 2, 3]", "[0.3, 0.8]",
                     "[]", "[[1]]", "{a = 1}", '"x"', "1979-05-27"]))
KEYS = {"experiment": ["seeds", "widths", "task", "data", "bogus"],
        "teacher": ["epochs", "lr", "lr_min", "schedule", "batch", "clip", "hidden"],
        "student": ["epochs", "lr", "schedule", "batch", "mask", "beta", "alpha", "shaped"],
        "cs": ["sweeps", "sequences", "steps"], "bogus": ["x"]}
SWEEP_SEEDS = ["1", "2", "[0]", '"0:2"', "0", '"x"']
SWEEP_WIDTHS = ["[[2, 3]]", "[[2, 3], [3, 4]]", "[[3, 2]]", "[]", "[2]"]


@st.composite
def settings_files(draw, folder, sweep=False):
    kind = draw(st.sampled_from(["toml"] * 8 + ["garbage", "special", "deep"]))
    if kind == "special":
        return draw(st.sampled_from([str(folder), str(folder / "missing.toml"), "/dev/zero"]))
    path = folder / "s.toml"
    if kind == "garbage":
        path.write_bytes(draw(st.binary(max_size=200)))
        return str(path)
    if kind == "deep":  # nesting that would exhaust a recursive parser's stack
        n = draw(st.sampled_from([100, 5000]))
        path.write_text(draw(st.sampled_from([f"x = {'[' * n}{']' * n}\n", f"x = {'{a = ' * n}1{'}' * n}\n",
                                              "[" + ".".join(["a"] * n) + "]\n"])))
        return str(path)
    # tiny sizes unless the example overrides them, so that each run stays quick
    doc = {"experiment": {"widths": "[2, 3]"}, "teacher": {"epochs": "3"}, "student": {"epochs": "2"},
           "cs": {"sweeps": "1", "sequences": "1", "steps": "5"}}
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 4]))):
        sec = draw(mostly(["experiment", "teacher", "student", "cs"], ["bogus"]))
        key, value = draw(st.sampled_from(KEYS[sec])), str(draw(VALUES)).lower()
        doc.setdefault(sec, {})[key] = value
    if draw(st.sampled_from([True] * 9 + [False])) == sweep:
        doc["sweep"] = {"seeds": draw(st.sampled_from(SWEEP_SEEDS)), "widths": draw(st.sampled_from(SWEEP_WIDTHS))}
        if draw(st.booleans()):
            doc["sweep.configs.a"] = {"student.mask": draw(st.sampled_from(['"seed"', '"reference"', '"bad"', "1"]))}
    path.write_text("".join(f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                            for sec, keys in doc.items()))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    teacher = init_teacher(3, stream(0, "fuzz"))
    teacher.save(folder / "teacher.npz")
    student_from(teacher).save(folder / "student.npz")
    (folder / "fake.npz").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return folder


def model_paths(models, folder):
    return st.sampled_from([str(models / "teacher.npz"), str(models / "student.npz"), str(models / "fake.npz"),
                            str(folder / "missing.npz"), str(folder), "", "/dev/zero"])


def out_paths(folder, suffix, models=None):
    """Where a command may be told to write; with ``models``, also over the models it may read."""
    inputs = [str(models / "teacher.npz"), str(models / "student.npz")] if models is not None else []
    return st.sampled_from([str(folder / f"out{suffix}"), str(folder / "no" / "such" / f"x{suffix}"), str(folder),
                            str(folder / "d.csv"), str(folder / "out-dir"), "", *inputs])


@st.composite
def argv(draw, folder, models):
    cmd = draw(mostly(["teacher", "student", "cs", "factorial", "sweep", "gradcheck", "export", "predict"],
                      ["nope"], 2))
    size = {"teacher": {"--hidden": COUNTS, "--epochs": COUNTS},
            "student": {"--hidden": COUNTS, "--epochs": COUNTS, "--config": settings_files(folder)},
            "cs": {"--hidden": COUNTS, "--sweeps": COUNTS, "--config": settings_files(folder)},
            "factorial": {"--config": settings_files(folder), "--teacher-epochs": COUNTS, "--student-epochs": COUNTS},
            "sweep": {"--config": settings_files(folder, sweep=True)},
            "gradcheck": {"--hidden": COUNTS}}.get(cmd, {})
    optional = {
        "teacher": {"--seed": SEEDS, "--lr": RATES, "--lr-min": RATES, "--schedule": st.sampled_from(
            ["constant", "cosine", "x"]), "--out": out_paths(folder, ".npz")},
        "student": {"--teacher": model_paths(models, folder), "--mask": st.sampled_from(["seed", "reference", "x"]),
                    "--beta": st.tuples(FLOATS, FLOATS), "--alpha": st.tuples(FLOATS, FLOATS), "--lr": RATES,
                    "--seed": SEEDS, "--out": out_paths(folder, ".npz", models)},
        "cs": {"--from": st.one_of(st.just("teacher"), model_paths(models, folder)),
               "--teacher": model_paths(models, folder), "--seed": SEEDS, "--out": out_paths(folder, ".npz", models)},
        "factorial": {"--seed": SEEDS, "--seeds": SEED_SETS, "--workers": COUNTS, "--out": out_paths(folder, ""),
                      "--mask": st.sampled_from(["seed", "reference", ""])},
        "sweep": {"--seeds": SEED_SETS, "--workers": COUNTS, "--out": out_paths(folder, "")},
        "gradcheck": {"--seed": SEEDS},
        "export": {"--out": out_paths(folder, ".tqd", models)},
        "predict": {"--out": out_paths(folder, ".npy"), "--task": TASKS},
    }.get(cmd, {})
    args = [cmd]
    if cmd in ("teacher", "student", "cs", "factorial", "gradcheck"):  # the commands with --task and --data
        source = draw(st.sampled_from(["", "task", "data", "data", "both"]))
        if source in ("task", "both"):
            args += ["--task", draw(TASKS)]
        if source in ("data", "both"):
            args += ["--data", draw(data_files(folder))]
    if cmd in ("export", "predict"):
        args.append(draw(model_paths(models, folder)))
    chosen = draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)) if optional else []
    for name in sorted(size) + chosen:
        strategy = size[name] if name in size else optional[name]
        value = draw(strategy)
        args += [name, *value] if isinstance(value, tuple) else [name, value]
    flags = COMMON_FLAGS * 2 + FLAGS.get(cmd, ()) * 4 + ("--bogus",)
    args += draw(st.lists(st.sampled_from(flags), unique=True, max_size=2))
    return args


_counter = itertools.count()


@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_cli_never_crashes(data, tmp_path, capsys, monkeypatch, models):
    folder = tmp_path / f"ex{next(_counter)}"
    folder.mkdir()
    (folder / "out-dir").mkdir()
    monkeypatch.setenv("TERNQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(folder)
    mine = folder / "models"  # each example's own copies: a command may legitimately write over one it does not read
    shutil.copytree(models, mine)
    args = data.draw(argv(folder, mine), label="argv")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run(args, capsys)
    read = {args[i + 1] for i in range(len(args) - 1) if args[i] in ("--teacher", "--from")}
    read |= {args[1]} if args[0] in ("export", "predict") and len(args) > 1 else set()
    target = args[args.index("--out") + 1] if "--out" in args[:-1] else None
    if target in read and Path(target).is_file():  # told to write over its own input: refused, input intact
        assert code == 2 and Path(target).read_bytes() == before[Path(target).name], (args, code, err)
    if target == "":
        assert code == 2, (args, code, err)
    event(f"{args[0]}: exit {code}")  # pytest --hypothesis-show-statistics shows the mix
    assert code in (0, 1, 2), (args, code, err)
    assert "Traceback" not in err and "Internal error" not in err, (args, err)
    if code == 2:
        assert err.strip(), (args, "exit 2 without a message")
    numeric = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not numeric, (args, numeric)  # a raw numpy warning means a number went wrong unnoticed
    if code == 0 and "--json" in args and cmd_prints_json(args):
        json.loads(out)


def cmd_prints_json(args):
    return args[0] in ("teacher", "student", "cs", "gradcheck", "predict", "export")
