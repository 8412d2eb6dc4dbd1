"""Hostile inputs through the real CLI (subprocesses): data, model, deploy and settings files,
flags, output folders, schedulers.

usage: python benchmarks/hostile.py TREE [TEXT]   (PYTHONPATH=TREE is set for the children; TREE may be an old
checkout; with TEXT, only the cases whose names hold it)
A case is handled when it ends in exit 2 with one 'Error:' line on stderr (no traceback, no
'Internal error', no warning) within 60 s, or, where a correct result exists, exit 0 with it.
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

TREE = str(Path(sys.argv[1]).resolve())  # the children run in a temporary folder
D = Path(tempfile.mkdtemp(prefix="hostile-"))
ENV = {**os.environ, "PYTHONPATH": TREE, "TERNQ_CACHE": str(D / "cache")}


def ternq(*args, timeout=60, env=None, cwd=None):
    try:
        p = subprocess.run([sys.executable, "-m", "ternq", *map(str, args)], capture_output=True, text=True,
                           env=env or ENV, timeout=timeout, cwd=cwd or D,
                           preexec_fn=lambda: __import__("resource").setrlimit(
                               __import__("resource").RLIMIT_AS, (3 << 30, 3 << 30)))
    except subprocess.TimeoutExpired:
        return None, "", "TIMEOUT"
    return p.returncode, p.stdout, p.stderr


def refused(res):
    code, _, err = res
    lines = err.strip().splitlines()
    return (code == 2 and len(lines) == 1 and lines[0].startswith("Error:")
            and "Internal error" not in err and "Warning" not in err)


def sine(n=200, c=1):
    t = np.arange(n)[:, None] * 0.1 * np.arange(1, c + 1)
    return np.sin(t)


def csv(name, arr):
    path = D / name
    np.savetxt(path, arr, delimiter=",", fmt="%.17g")
    return path


def npy_header(shape, descr="<f8"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


cases = {}
# ---- data series (faults 2, 3)
s2 = sine(200, 2)
const = s2.copy()
const[:, 1] = 3.0
out_train = sine()
out_train[40] = 1e300
out_held = sine()
out_held[190] = 1e300
tiny_out = sine() * 1e-300
tiny_out[190] = 1e300
spike = np.zeros(200)
spike[17] = 1.0
series = {"constant column": const, "all-zero 2-column": np.zeros((200, 2)), "one 1e300 outlier (training)": out_train,
          "one 1e300 outlier (held out)": out_held, "1e300 outlier over 1e-300 values": tiny_out,
          "constant 1e300": np.full(200, 1e300), "spread below float64 resolution": 1 + 1e-15 * sine(),
          "a single spike": spike}
for cmd in ("teacher", "factorial"):
    extra = ["--epochs", 2, "--hidden", 2] if cmd == "teacher" else ["--teacher-epochs", 2, "--student-epochs", 2]
    out = D / f"o-{cmd}" if cmd == "factorial" else D / "t.npz"
    for name, arr in series.items():
        path = csv(f"{name.replace(' ', '_')}.csv", arr)
        cases[f"{cmd} --data: {name}"] = lambda p=path, c=cmd, e=extra, o=out: refused(
            ternq(c, *e, "--quiet", "--out", o, "--data", p))


def same_as_unit(factor):
    figures = []
    for f in (1.0, factor):
        path = csv(f"scaled{f}.csv", (sine() + 0.5) * f)
        code, out, err = ternq("teacher", "--epochs", 5, "--hidden", 3, "--quiet", "--json", "--out", D / "t.npz",
                               "--data", path)
        if code != 0 or "Warning" in err:
            return False
        figures.append(json.loads(out)["eval_mse"])
    return figures[1] > 0 and abs(figures[1] - figures[0]) <= 1e-3 * figures[0]


for f in (1e300, 1e-300):
    cases[f"teacher --data: values near {f:g} give the unit series' result"] = lambda f=f: same_as_unit(f)

# ---- crafted data files (fault 6)
fifo = D / "fifo.csv"
os.mkfifo(fifo)
(D / "big.npy").write_bytes(npy_header((10**12, 1)))
(D / "obj.npy").write_bytes(npy_header((3,), "|O") + b"\0" * 24)
(D / "bin.csv").write_bytes(b"\0\1\2" * 300)
(D / "empty.csv").write_bytes(b"")
for name, path in {"/dev/zero": "/dev/zero", "a FIFO": fifo, ".npy header claiming 1e12 rows": D / "big.npy",
                   ".npy of objects": D / "obj.npy", "binary bytes as CSV": D / "bin.csv",
                   "empty file": D / "empty.csv", "a directory": D}.items():
    cases[f"teacher --data: {name}"] = lambda p=path: refused(
        ternq("teacher", "--epochs", 2, "--hidden", 2, "--quiet", "--out", D / "t.npz", "--data", p))


# ---- crafted model files (fault 6)
def npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def header(**over):
    h = {"format": "ternq-model", "version": 1, "kind": "teacher", "n_in": 1, "hidden": 2, "n_out": 1, "meta": {}}
    h.update(over)
    return npy(np.array(json.dumps(h)))


def npz(name, members, inflate=None):
    path = D / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        if inflate:
            with zf.open(inflate + ".npy", "w", force_zip64=True) as fh:
                fh.write(npy_header((1 << 30,), "<f4"))  # an honest header: 4 GiB of float32 zeros follow
                block = b"\0" * (1 << 20)
                for _ in range(4096):  # 4 GiB of zeros, a few MB on disk
                    fh.write(block)
        for k, v in members.items():
            zf.writestr(k + ".npy", v)
    return path


need = 2 * 2 * 3 + 3 * 2 + 2 + 1
models = {
    "4 GiB zip bomb (theta)": npz("bomb.npz", {"header": header()}, inflate="theta"),
    "theta header claiming 1e12 values": npz("claim.npz", {"header": header(), "theta": npy_header((10**12,), "<f4")}),
    "NaN parameters": npz("nan.npz", {"header": header(), "theta": npy(np.full(need, np.nan, np.float32))}),
    "hidden = 1e12 in the header": npz("h.npz", {"header": header(hidden=10**12), "theta": npy(np.zeros(3))}),
    "hidden = 2.5 in the header": npz("hf.npz", {"header": header(hidden=2.5), "theta": npy(np.zeros(need))}),
    "meta not a table": npz("meta.npz", {"header": header(meta=[1]), "theta": npy(np.zeros(need, np.float32))}),
    "JSON header nested 100000 deep": npz("deep.npz", {"header": npy(np.array("[" * 100000 + "]" * 100000)),
                                                      "theta": npy(np.zeros(need, np.float32))}),
    "theta of shape (n, 1)": npz("shape.npz", {"header": header(), "theta": npy(np.zeros((need, 1), np.float32))}),
    "/dev/zero": "/dev/zero", "a FIFO": fifo,
}
for name, path in models.items():
    cases[f"student --teacher: {name}"] = lambda p=path: refused(
        ternq("student", "--teacher", p, "--hidden", 2, "--epochs", 2, "--quiet", "--out", D / "s.npz"))
    cases[f"export: {name}"] = lambda p=path: refused(ternq("export", p, "--out", D / "x.tqd"))

# ---- the experiment layer (faults 1, 4, 5, 7, 8, 9)
QUICK = Path(TREE) / "configs" / "quick.toml"


def toml(name, text):
    path = D / name
    path.write_text(text)
    return path


def warned(res, needle):
    code, _, err = res
    return code == 0 and needle in err.lower() and "Traceback" not in err and "Internal error" not in err


deep = toml("deep.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n")
for name, args in {
    "--scheduler bogus": ["--scheduler", "bogus"],
    "--scheduler ''": ["--scheduler", ""],
    "--scheduler tcp://127.0.0.1:1": ["--scheduler", "tcp://127.0.0.1:1"],
    "--seed -1": ["--seed", "-1"],
    "--seeds -3:0": ["--seeds", "-3:0"],
    "config seeds = [-1]": ["--config", toml("neg.toml", "[experiment]\nseeds = [-1]\n")],
    "config seeds = 1000000000": ["--config", toml("many.toml", "[experiment]\nseeds = 1000000000\n")],
    "config batch = 1e8": ["--config", toml("batch.toml", "[teacher]\nbatch = 100000000\n")],
    "config widths = [4, 1000000]": ["--config", toml("wide.toml", "[experiment]\nwidths = [4, 1000000]\n")],
    "config widths = [32, 16]": ["--config", toml("flip.toml", "[experiment]\nwidths = [32, 16]\n")],
    "--task ''": ["--task", ""],
    "config nested 5000 deep": ["--config", deep],
    "config /dev/zero": ["--config", "/dev/zero"],
}.items():
    cases[f"factorial {name}"] = lambda a=args: refused(ternq("factorial", "-q", *a, timeout=40))
huge = {"--hidden 99999999999999999999": ["--hidden", "99999999999999999999"],
        "--hidden 100000": ["--hidden", "100000"], "--epochs 1000000000": ["--epochs", "1000000000"]}
for name, args in huge.items():
    cases[f"teacher {name}"] = lambda a=args: refused(ternq("teacher", "-q", "--out", D / "t.npz", *a))
cases["teacher --lr 1e10 warns that training ended far worse"] = lambda: warned(
    ternq("teacher", "-q", "--hidden", 4, "--epochs", 30, "--lr", "1e10", "--out", D / "t.npz"),
    "learning rate is probably too high")


def out_dir_with(name, make):
    out = D / name
    out.mkdir()
    make(out)
    return refused(ternq("factorial", "-q", "--config", QUICK, "--out", out))


cases["factorial --out holding a file named units"] = lambda: out_dir_with(
    "o-units", lambda o: (o / "units").write_text("x"))


def other_settings():
    out = D / "o-rerun"
    first = ternq("factorial", "-q", "--config", QUICK, "--out", out)
    return first[0] == 0 and refused(ternq("factorial", "-q", "--config", QUICK, "--student-epochs", 3, "--out", out))


cases["factorial rerun into --out with other settings"] = other_settings


def dir_where_unit_goes():
    out = D / "o-dir"
    if ternq("factorial", "-q", "--config", QUICK, "--out", out)[0] != 0:
        return False
    units = sorted((out / "units").glob("*.npz"))
    if not units:
        return False
    units[0].unlink()
    units[0].mkdir()
    code, _, err = ternq("factorial", "-q", "--config", QUICK, "--out", out)
    return refused((code, "", err)) or (code == 0 and "Traceback" not in err and "Internal error" not in err)


cases["factorial: a directory where a unit file goes"] = dir_where_unit_goes


def student_file():
    s = D / "st.npz"
    if ternq("student", "-q", "--hidden", 4, "--epochs", 5, "--out", s)[0] != 0:
        return None
    return s


def export_over_itself():
    s = student_file()
    if s is None:
        return False
    before = s.read_bytes()
    res = ternq("export", s, "--out", s)
    return refused(res) and s.read_bytes() == before


cases["export X.npz --out X.npz"] = export_over_itself


def cs_from_student_hidden():
    s = student_file()
    return s is not None and refused(ternq("cs", "-q", "--from", s, "--hidden", 32, "--out", D / "c.npz"))


cases["cs --from STUDENT --hidden 32 (student is H=4)"] = cs_from_student_hidden


def tqd(name, edit):
    s = student_file()
    if s is None or ternq("export", s, "--out", D / "ok.tqd")[0] != 0:
        return None
    raw = (D / "ok.tqd").read_bytes()
    path = D / name
    path.write_bytes(edit(raw))
    return path


def manifest_field_not_a_table(raw):
    i = raw.index(b'"task":{')
    j = raw.index(b"}", i)  # the task table is flat: its first } closes it
    return raw[:i] + b'"task":[1' + b" " * (j - i - len(b'"task":[1')) + b"]" + raw[j + 1:]


cases["predict: deploy file with a non-table manifest field"] = lambda: (
    (p := tqd("bad-manifest.tqd", manifest_field_not_a_table)) is not None and refused(ternq("predict", p)))




# ---- inputs overwritten, empty paths, files in the way, sizes, silent acceptance, signals
def unchanged_and_refused(argv, *paths):
    before = [Path(p).read_bytes() for p in paths]
    return refused(ternq(*argv)) and [Path(p).read_bytes() for p in paths] == before


def teacher_file():
    t = D / "tt.npz"
    if not t.exists() and ternq("teacher", "-q", "--hidden", 4, "--epochs", 5, "--out", t)[0] != 0:
        return None
    return t


cases["student --teacher X --out X"] = lambda: (t := teacher_file()) is not None and unchanged_and_refused(
    ["student", "-q", "--hidden", 4, "--epochs", 2, "--teacher", t, "--out", t], t)
cases["cs --from X --out X"] = lambda: (s := student_file()) is not None and unchanged_and_refused(
    ["cs", "-q", "--from", s, "--out", s], s)


def empty_out(*argv):
    where = Path(tempfile.mkdtemp(dir=D))
    return refused(ternq(*argv, cwd=where)) and not any(where.iterdir())


cases["factorial --out ''"] = lambda: empty_out("factorial", "-q", "--config", QUICK, "--out", "")
cases["teacher --out ''"] = lambda: empty_out("teacher", "-q", "--epochs", 2, "--out", "")
cases["export --out ''"] = lambda: (s := student_file()) is not None and empty_out("export", s, "--out", "")


def lock_in_the_way(make):
    out = Path(tempfile.mkdtemp(dir=D))
    make(out / ".ternq.lock")
    return refused(ternq("factorial", "-q", "--config", QUICK, "--out", out))


cases["factorial: a folder at OUT/.ternq.lock"] = lambda: lock_in_the_way(lambda p: p.mkdir())
cases["factorial: a dangling symlink at OUT/.ternq.lock"] = lambda: lock_in_the_way(
    lambda p: p.symlink_to(D / "no" / "such" / "lock"))


def mse_as_text(raw):
    m = int.from_bytes(raw[8:12], "little")
    man = json.loads(raw[12:12 + m])
    man["info"]["eval_mse_at_training"] = "0.1"
    text = json.dumps(man).encode()
    return raw[:8] + len(text).to_bytes(4, "little") + text + raw[12 + m:]


cases["predict: .tqd whose info.eval_mse_at_training is a string"] = lambda: (
    (p := tqd("mse-text.tqd", mse_as_text)) is not None and refused(ternq("predict", p)))
def data_student_file():
    """A student of a two-channel CSV far from mean 0, sd 1 (the user's own series)."""
    s = D / "data-st.npz"
    if not s.exists():
        t = np.arange(300) * 0.2
        data = csv("own.csv", np.stack([20 + 5 * np.sin(t), 1013 + 3 * np.cos(0.7 * t)], 1))
        if ternq("student", "-q", "--data", data, "--hidden", 4, "--epochs", 5, "--out", s)[0] != 0:
            return None
    return s


def std_negative(raw):
    m = int.from_bytes(raw[8:12], "little")
    man = json.loads(raw[12:12 + m])
    man["task"]["std"] = [-abs(v) for v in man["task"]["std"]]
    text = json.dumps(man).encode()
    return raw[:8] + len(text).to_bytes(4, "little") + text + raw[12 + m:]


def refused_saying(res, needle):
    """Refused for the reason the case is about (an unknown option is refused too, in one line)."""
    return refused(res) and needle in res[2]


def predict_input(rows, needle):
    s = data_student_file()
    return s is not None and refused_saying(ternq("predict", s, "--input", csv("in.csv", np.array(rows))), needle)


cases["predict --input: a value beyond float32"] = lambda: predict_input([[20.0, 1e39], [21.0, 1013.0]], "float32")
cases["predict --input: one column for a two-channel model"] = lambda: predict_input([[20.0], [21.0]], "2 inputs")
cases["predict --input: .tqd whose task.std is negative"] = lambda: (s := data_student_file()) is not None and (
    ternq("export", s, "--out", D / "own.tqd")[0] == 0 and (p := D / "own-bad.tqd").write_bytes(
        std_negative((D / "own.tqd").read_bytes())) > 0 and refused_saying(
        ternq("predict", p, "--input", D / "own.csv"), "task.mean and task.std"))
cases["export --format c-int --input (the integer library is normalised)"] = lambda: (
    (s := data_student_file()) is not None and empty_out("export", s, "--format", "c-int", "--input", D / "own.csv",
                                                        "--out", "d")
    and refused_saying(ternq("export", s, "--format", "c-int", "--input", D / "own.csv", "--out", D / "d"),
                       "--format c"))


cases["predict on a teacher says what predict needs"] = lambda: (t := teacher_file()) is not None and (
    refused(res := ternq("predict", t)) and "exported," not in res[2] and "predict" in res[2])
for name, args in {"--hidden 100000": ["--hidden", 100000], "--batched-hidden 100000": ["--batched-hidden", 100000],
                   "--budget inf": ["--budget", "inf"]}.items():
    cases[f"bench {name}"] = lambda a=args: refused(ternq("bench", "-q", "--no-factorial", "--no-compile", *a))
for name, body in {"steps = 100000000": "[cs]\nsteps = 100000000\n",
                   "sequences = 100000": "[cs]\nsequences = 100000\n"}.items():
    cases[f"factorial config [cs] {name}"] = lambda b=body, n=name: refused(
        ternq("factorial", "-q", "--config", toml(f"cs-{n.split()[0]}.toml", b)))
    cases[f"cs config [cs] {name}"] = lambda b=body, n=name: refused(
        ternq("cs", "-q", "--config", toml(f"cs-{n.split()[0]}.toml", b), "--out", D / "c.npz"))
for value in ("1", "inf"):
    cases[f"teacher --lr 0.01 --lr-min {value}"] = lambda v=value: refused(
        ternq("teacher", "-q", "--lr", "0.01", "--lr-min", v, "--out", D / "t.npz"))


def cache_unusable(where):
    env = {**ENV, "TERNQ_CACHE": str(where)}
    return warned(ternq("student", "-q", "--hidden", 2, "--epochs", 2, "--out", D / "s2.npz", env=env), "cache")


(D / "cache-file").write_text("x")
cases["TERNQ_CACHE a regular file: warned"] = lambda: cache_unusable(D / "cache-file")
cases["TERNQ_CACHE=/proc: warned"] = lambda: cache_unusable("/proc")


def cs_out_first():
    env = {**ENV, "TERNQ_CACHE": str(D / "cache-cs")}
    return refused(ternq("cs", "-q", "--hidden", 3, "--out", D / "no" / "c.npz", env=env)) and not (
        D / "cache-cs").exists()


cases["cs --out into a missing folder refused before its teacher trains"] = cs_out_first


def bom_settings():
    path = D / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + QUICK.read_bytes())
    return ternq("factorial", "-q", "--config", path, "--no-gradcheck")[0] == 0


cases["factorial --config: TOML starting with a UTF-8 byte-order mark"] = bom_settings
cases["teacher: evaluation time shown apart from training"] = lambda: (
    (res := ternq("teacher", "--hidden", 3, "--epochs", 2, "-q", "--out", D / "t.npz"))[0] == 0
    and "evaluation time" in res[1])


def sweep_says_what_it_does():
    pairs = [[a, a + 1 + b] for a in range(1, 60) for b in range(40)][:2000]
    spec = toml("big-sweep.toml", f"[teacher]\nepochs = 2\n[student]\nepochs = 2\n[sweep]\nseeds = 1\n"
                                  f"widths = {pairs}\n")
    out = D / "big-sweep"
    p = subprocess.Popen([sys.executable, "-m", "ternq", "sweep", "--config", spec, "--out", out], env=ENV, cwd=D,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import threading

    timer = threading.Timer(30, p.kill)  # no first line within 30 s: not handled
    timer.start()
    try:
        first = p.stderr.readline()
    finally:
        timer.cancel()
        p.kill()
        p.wait()
    return "2000 cells" in first and out.is_dir()


cases["sweep of 2,000 width pairs says what it does and makes its folder at once"] = sweep_says_what_it_does


def interrupted_note(argv):
    p = subprocess.Popen([sys.executable, "-m", "ternq", *map(str, argv)], env=ENV, cwd=D,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import time

    time.sleep(5)
    p.send_signal(__import__("signal").SIGINT)
    try:
        err = p.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False
    return p.returncode == 130 and "Traceback" not in err and "resumes" not in err


cases["teacher interrupted: no false 'rerunning resumes'"] = lambda: interrupted_note(
    ["teacher", "-q", "--hidden", 4, "--epochs", 20000, "--out", D / "t.npz"])


def lost_scheduler():
    import shutil
    import socket
    import time

    dask = shutil.which("dask", path=str(Path(sys.executable).parent))
    if dask is None:
        return False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sched = subprocess.Popen([dask, "scheduler", "--port", str(port), "--no-dashboard"], env=ENV, cwd=D,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    worker = subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"],
                              env=ENV, cwd=D, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = D / "o-dask"
    run = subprocess.Popen([sys.executable, "-m", "ternq", "factorial", "-q", "--seeds", "30", "--config", QUICK,
                            "--scheduler", f"tcp://127.0.0.1:{port}", "--out", out], env=ENV, cwd=D,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while run.poll() is None and time.monotonic() < deadline and not list((out / "units").glob("*.npz")):
        time.sleep(0.1)
    sched.kill()
    try:
        err = run.communicate(timeout=120)[1]
    finally:
        for p in (sched, worker, run):
            if p.poll() is None:
                p.kill()
            p.wait()
    return run.returncode == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


cases["factorial --scheduler: the scheduler killed mid-run, one line"] = lost_scheduler

only = sys.argv[2] if len(sys.argv) > 2 else ""  # run only the cases whose names hold this text
cases = {name: fn for name, fn in cases.items() if only in name}
handled = 0
for name, fn in cases.items():
    ok = bool(fn())
    handled += ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}", flush=True)
print(f"handled {handled} of {len(cases)}")
