"""C99 export and integer-only inference: bit-identity on the host, on emulated Cortex-M4F / M3 boards, and
against a plain-Python oracle; the export's refusals and reports.

Board tests need gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (.ci/run installs them) and
skip with a one-line reason where they are absent.
"""

import json
import re
import shutil
import struct
from fractions import Fraction

import numpy as np
import oracle_int
import pytest
from conftest import invoke as run
from hypothesis import given, settings
from hypothesis import strategies as st

from ternq import StudentConfig, TeacherConfig, evaluate, train_student, train_teacher
from ternq.deploy import MAGIC, Deployable
from ternq.device import c99, toolchain
from ternq.device.export import board_sizes, write_c
from ternq.device.fixed import IntModel, scale_parts, sigmoid_table
from ternq.kernels import infer_int
from ternq.kernels.cell import sigmoid, tanh
from ternq.model import Model, init_teacher, student_from
from ternq.tasks import get_task

HOST = pytest.mark.skipif(bool(toolchain.missing()), reason="no host C compiler (cc)")


def board(target):
    gone = toolchain.missing(target)
    return pytest.mark.skipif(bool(gone), reason=f"{', '.join(gone)} not installed (see .ci/run)")


CASES = [("sine", 16), ("sine", 32), ("lorenz", 16), ("lorenz", 32)]


@pytest.fixture(scope="module")
def students():
    """Tiny trained students (few epochs: bit-identity is the point, not accuracy), keyed by (task, H)."""
    out = {}
    for name, H in CASES:
        task = get_task(name)
        teacher, _ = train_teacher(task, TeacherConfig(hidden=H, epochs=40), seed=0)
        s, _ = train_student(teacher, task, StudentConfig(hidden=H, epochs=40, shaped=True), seed=0)
        s.meta["figures"] = evaluate(s, task)
        out[name, H] = s
    return out


def _export(student, tmp_path, fmt, layout="sparse"):
    dep = Deployable.from_model(student)
    X, _ = get_task(student.meta["task"]["name"]).eval_set()
    out = tmp_path / f"{fmt}-{layout}"
    write_c(dep, out, X, fmt, layout)
    _, Y = c99.golden_outputs(dep, fmt, X)
    return dep, out, c99.csv_lines(Y)


# ---------------------------------------------------------------- host


@HOST
@pytest.mark.parametrize("layout", c99.LAYOUTS)
@pytest.mark.parametrize("fmt", c99.FORMATS)
@pytest.mark.parametrize("case", CASES)
def test_c_is_bit_identical_to_predict_on_the_host(students, case, fmt, layout, tmp_path):
    dep, out, expected = _export(students[case], tmp_path, fmt, layout)
    exe = toolchain.build_host(out, tmp_path / "m")
    code, stdout = toolchain.run(exe)
    assert code == 0
    assert stdout == expected  # every value printed with %.9g (float) / %ld (int), in order
    X, _ = get_task(case[0]).eval_set()
    if fmt == "c":  # and the printed values are those of the training forward itself
        ys0, _ = dep.predict(X)
        ys_train, _ = __import__("ternq").predict(students[case], X)
        assert ys0.tobytes() == ys_train.tobytes()


@HOST
@pytest.mark.skipif(shutil.which("nm") is None, reason="nm (binutils) not installed")
@pytest.mark.parametrize("fmt", c99.FORMATS)
def test_library_needs_nothing_and_has_no_writable_globals(students, fmt, tmp_path):
    """No libm, no malloc, nothing from libc but the memcpy/memset GCC may emit for plain loops (as it may in any
    freestanding program); no data or bss symbols."""
    import subprocess

    dep, out, _ = _export(students["lorenz", 32], tmp_path, fmt)
    obj = tmp_path / "m.o"
    subprocess.run([toolchain.host_cc(), *toolchain.HOST_FLAGS, "-c", str(out / "ternq_model.c"), "-o", str(obj)],
                   check=True)
    syms = [line.split() for line in subprocess.run(["nm", str(obj)], capture_output=True, text=True,
                                                    check=True).stdout.splitlines()]
    assert {s[1] for s in syms if s[0] == "U"} <= {"memcpy", "memset", "memmove"}
    assert [s for s in syms if len(s) == 3 and s[1] in "DdBbCG"] == []
    units = {"ternq_step_units"} if fmt == "c" and dep.units is not None else set()  # lorenz is normalised
    assert dep.units is not None
    assert {s[2] for s in syms if len(s) == 3 and s[1] == "T"} == {"ternq_reset", "ternq_step"} | units


@HOST
def test_harness_fails_when_an_output_differs(students, tmp_path):
    _, out, _ = _export(students["sine", 16], tmp_path, "c")
    g = (out / "golden.h").read_text()
    i = g.index("ternq_golden_y")
    j = g.index("0x", i)
    word = g[j : j + 10]
    flipped = f"0x{int(word, 16) ^ 1:08x}"  # one ulp off
    (out / "golden.h").write_text(g[:j] + flipped + g[j + 10:])
    code, _ = toolchain.run(toolchain.build_host(out, tmp_path / "m"))
    assert code == 1


ACT_PROBE = """#include <stdio.h>
#include "ternq_model.c"
int main(void)
{
    union { float f; uint32_t u; } v, g, c;
    while (scanf("%x", &v.u) == 1) {
        g.f = ternq_act(v.f, 1.0f);
        c.f = ternq_act(v.f, 2.0f);
        printf("%08x %08x\\n", (unsigned)g.u, (unsigned)c.u);
    }
    return 0;
}
"""


@HOST
def test_c_sigmoid_tanh_equal_the_training_kernels_bit_for_bit(students, tmp_path):
    """ternq_act against ternq.kernels.cell.sigmoid/tanh on edge values and a wide random sample."""
    _, out, _ = _export(students["sine", 16], tmp_path, "c")
    (out / "probe.c").write_text(ACT_PROBE)
    exe = tmp_path / "probe"
    toolchain._check(toolchain._run([toolchain.host_cc(), *toolchain.HOST_FLAGS, "-Wno-unused-function",
                                     str(out / "probe.c"), "-o", str(exe)]), "probe")
    rng = np.random.default_rng(0)
    edges = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-38, 0.5, -0.5, 40.0, -40.0, 80.0, -80.0, 87.0, 1e30, -1e30,
                      3.4e38, -3.4e38], np.float32)
    xs = np.concatenate([edges, rng.normal(0, 3, 4000).astype(np.float32),
                         (rng.uniform(-1, 1, 2000) * 10.0 ** rng.uniform(-8, 2, 2000)).astype(np.float32)])
    import subprocess

    proc = subprocess.run([str(exe)], input="".join(f"{v:08x}\n" for v in xs.view(np.uint32)),
                          capture_output=True, text=True, check=True)
    got = np.array([[int(w, 16) for w in line.split()] for line in proc.stdout.splitlines()], np.uint32)
    want_g = np.array([sigmoid(x) for x in xs], np.float32).view(np.uint32)
    want_c = np.array([tanh(x) for x in xs], np.float32).view(np.uint32)
    assert np.array_equal(got[:, 0], want_g) and np.array_equal(got[:, 1], want_c)


def test_hex_float_literals_are_exact():
    rng = np.random.default_rng(1)
    vals = np.concatenate([np.array([0.0, -0.0, 1.0, -2.5, 1e-45, 3.4028235e38], np.float32),
                           rng.normal(0, 1e3, 500).astype(np.float32)])
    for v in vals:
        lit = c99.hex_float(v)
        assert lit.endswith("f") and np.float32(float.fromhex(lit[:-1])).tobytes() == v.tobytes()
    with pytest.raises(ValueError):
        c99.hex_float(np.float32("nan"))


# ---------------------------------------------------------------- boards


@board("m4")
@pytest.mark.parametrize("case", CASES)
def test_float_c_is_bit_identical_on_an_emulated_cortex_m4f(students, case, tmp_path):
    _, out, expected = _export(students[case], tmp_path, "c")
    elf = toolchain.build_board(out, "m4", tmp_path)
    code, stdout = toolchain.run_board(elf, "m4")
    assert code == 0 and stdout == expected


@board("m3")
@pytest.mark.parametrize("case", CASES)
def test_integer_c_is_bit_identical_on_an_emulated_cortex_m3(students, case, tmp_path):
    _, out, expected = _export(students[case], tmp_path, "c-int")
    elf = toolchain.build_board(out, "m3", tmp_path)
    code, stdout = toolchain.run_board(elf, "m3")
    assert code == 0 and stdout == expected


@board("m0")
@pytest.mark.parametrize("layout", c99.LAYOUTS)
def test_integer_c_is_bit_identical_on_an_emulated_cortex_m0(students, layout, tmp_path):
    """16 KB of RAM, no divide instruction (the packed layout's base-3 decoding), no FPU."""
    _, out, expected = _export(students["lorenz", 32], tmp_path, "c-int", layout)
    elf = toolchain.build_board(out, "m0", tmp_path)
    code, stdout = toolchain.run_board(elf, "m0")
    assert code == 0 and stdout == expected


COUNTED_S = """    .syntax unified
    .thumb
    .text
    .global ternq_mark_begin
    .thumb_func
ternq_mark_begin:
    bx lr
    .global ternq_mark_end
    .thumb_func
ternq_mark_end:
    bx lr
    .global main
    .thumb_func
main:
    push {r4, lr}
    bl ternq_mark_begin
    movs r1, #%(n)d
    movs r2, #3
1:  muls r2, r2, r2
    ldr r3, [sp]
    subs r1, #1
    bne 1b
    push {r1, r2, r3}
    pop {r1, r2, r3}
    bl ternq_mark_end
    movs r0, #0
    pop {r4, pc}
"""


@board("m0")
@pytest.mark.parametrize("n", [1, 4])
def test_the_board_counts_instructions_and_cycles_by_class(n, tmp_path):
    """A hand-written program between the markers: BX LR of ternq_mark_begin, two MOVS, n turns of a loop of
    MULS, LDR, SUBS, BNE (taken n - 1 times), a PUSH and a POP of three registers, the BL to ternq_mark_end."""
    (tmp_path / "counted.s").write_text(COUNTED_S % {"n": n})
    elf = toolchain.link_board([str(tmp_path / "counted.s")], "m0", tmp_path, tmp_path / "counted.elf")
    res = toolchain.profile(elf, "m0")
    assert res["instructions"] == 1 + 2 + 4 * n + 2 + 1 and res["muls"] == n
    assert res["by_class"] == {"bx": 1, "alu": 2 + n, "mul": n, "load_store": n, "branch_taken": n - 1,
                               "branch_not_taken": 1, "multiple": 2, "bl": 1}
    rest = 3 + 2 + n * (2 + 1) + 3 * (n - 1) + 1 + 2 * (1 + 3) + 4  # Cortex-M0 TRM table 3-1
    assert res["cycles"] == {"mul1": rest + n, "mul32": rest + 32 * n}


@board("m3")
def test_integer_c_needs_no_floating_point(students, tmp_path):
    """Compiled with -mfloat-abi=soft, any float or double operation would call a libgcc helper."""
    _, out_int, _ = _export(students["lorenz", 16], tmp_path, "c-int", "sparse")
    assert toolchain.float_symbols(out_int) == []
    _, out_dense, _ = _export(students["lorenz", 16], tmp_path, "c-int", "dense")
    assert toolchain.float_symbols(out_dense) == []
    _, out_float, _ = _export(students["lorenz", 16], tmp_path, "c")
    assert any(s.startswith("__aeabi_f") for s in toolchain.float_symbols(out_float))  # the check sees floats
    for name in ("ternq_model.c", "ternq_model.h", "main.c"):
        code = (out_int / name).read_text()
        assert not re.search(r"\b(float|double)\b", code), name


@board("m4")
def test_board_sizes(students, tmp_path):
    dep, out, _ = _export(students["sine", 32], tmp_path, "c")
    s = board_sizes(out, dep, "c")["m4"]
    assert s["state"] == 4 * 32 and s["ram"] == s["data"] + s["bss"] + s["state"] and s["data"] + s["bss"] == 0
    assert s["flash"] == s["text"] + s["rodata"]
    # the constants hold at least the float32 scales, biases and decays and the sparse column lists
    nnz = int(np.count_nonzero(dep.levels_W) + np.count_nonzero(dep.levels_out))
    assert s["rodata"] >= 4 * (dep.scales.size + dep.b.size + dep.hidden + dep.n_out) + nnz
    _, dense, _ = _export(students["sine", 32], tmp_path, "c", "dense")
    assert board_sizes(dense, dep, "c")["m4"]["rodata"] >= dep.n_weights  # one byte per trit


# ---------------------------------------------------------------- the integer model


def _random_int_model(rng, I, H, O, scale_exp=(-6, 1)):
    s = student_from(init_teacher(H, rng, I, O))
    n = s.n_cell
    s.theta[:n] = rng.normal(0, 1, n).astype(np.float32)
    s.theta[2 * H * (I + H) : 2 * H * (I + H) + 2 * H] = rng.normal(0, 2, 2 * H).astype(np.float32)  # biases
    s.theta[n:] = (2.0 ** rng.uniform(*scale_exp, s.theta.size - n) * rng.choice([1, 1, 1, -1],
                                                                                 s.theta.size - n)).astype(np.float32)
    return IntModel.from_deployable(Deployable.from_model(s))


@given(seed=st.integers(0, 2**32 - 1), I=st.integers(1, 3), H=st.integers(1, 6), O=st.integers(1, 3),
       big=st.booleans())
@settings(max_examples=40, deadline=None)
def test_integer_kernel_equals_the_python_oracle(seed, I, H, O, big):
    """Random models (negative scales, large pre-activations that saturate) and inputs (some beyond x_max)."""
    rng = np.random.default_rng(seed)
    im = _random_int_model(rng, I, H, O, (-4, 4) if big else (-8, 0))
    Xq = rng.integers(-4 * 65536, 4 * 65536, size=(2, 7, I)).astype(np.int32)
    if big:
        Xq[0, 0] = 2**31 - 1  # clamped to x_max
        Xq[1, 1] = -(2**31)
    ys, hs = im.predict_q(Xq)
    ys0, hs0 = oracle_int.forward(im, Xq)
    assert ys.tolist() == ys0 and hs.tolist() == hs0


def test_integer_activations_equal_the_oracle_everywhere():
    tab = sigmoid_table()
    assert tab.tolist() == oracle_int.table()
    ps = np.concatenate([np.arange(-20 * 65536, 20 * 65536, 97), [-2**30, 2**30, 0, 1, -1, 16 * 65536 - 1,
                                                                    8 * 65536 - 1, 16 * 65536, 8 * 65536]])
    for p in ps.tolist():
        assert infer_int.sigmoid_q(p, tab) == oracle_int.sigmoid(p, oracle_int.table())
        assert infer_int.tanh_q(p, tab) == oracle_int.tanh(p, oracle_int.table())
    x = ps / 65536.0
    err_s = np.abs(np.array([infer_int.sigmoid_q(p, tab) for p in ps.tolist()]) / 65536.0 - 0.5 * (1 + np.tanh(x / 2)))
    err_t = np.abs(np.array([infer_int.tanh_q(p, tab) for p in ps.tolist()]) / 65536.0 - np.tanh(x))
    assert err_s.max() < 3 / 65536 and err_t.max() < 6 / 65536  # interpolation + rounding, a few Q16 steps


def test_scale_parts_are_exact():
    rng = np.random.default_rng(2)
    for s in np.concatenate([rng.normal(0, 1, 200), [1.0, -1.0, 2**-31, 1e3]]).astype(np.float32):
        m, k = scale_parts(s)
        assert 2**30 <= abs(m) < 2**31 and 1 <= k <= 62
        assert Fraction(m, 2**k) == Fraction(float(s))
    assert scale_parts(0.0) == (0, 1) and scale_parts(1e-12) == (0, 1)
    with pytest.raises(ValueError):
        scale_parts(2.0**31)


@pytest.mark.parametrize("case", CASES)
def test_integer_model_is_within_1_1x_of_float32(students, case):
    dep = Deployable.from_model(students[case])
    X, Y = get_task(case[0]).eval_set()
    f32, _ = dep.mse(X, Y)
    q, _ = IntModel.from_deployable(dep).mse(X, Y)
    assert q <= 1.1 * f32


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def student_file(students, tmp_path_factory):
    path = tmp_path_factory.mktemp("dev") / "s.npz"
    students["lorenz", 16].save(path)
    return path


@HOST
def test_cli_export_c_then_cmp_with_predict_csv(student_file, tmp_path, capsys):
    out = tmp_path / "d"
    code, stdout, err = run(["export", str(student_file), "--format", "c", "--out", str(out), "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert sorted(res["files"]) == sorted(c99.FILES) and res["golden"] == {"sequences": 32, "steps": 100}
    if not toolchain.missing("m4", emulator=False):
        assert res["boards"]["m4"]["flash"] > 0 and res["boards"]["m4"]["state"] == 4 * 16
    code, harness = toolchain.run(toolchain.build_host(out, tmp_path / "m"))
    assert code == 0
    code, _, err = run(["predict", str(student_file), "--out", str(tmp_path / "p.csv")], capsys)
    assert code == 0, err
    assert (tmp_path / "p.csv").read_text() == harness
    # the integer export and predict --int agree the same way
    out_i = tmp_path / "di"
    assert run(["export", str(student_file), "--format", "c-int", "--out", str(out_i)], capsys)[0] == 0
    code, harness_i = toolchain.run(toolchain.build_host(out_i, tmp_path / "mi"))
    assert code == 0
    code, stdout, err = run(["predict", str(student_file), "--int", "--json", "--out", str(tmp_path / "q.csv")],
                            capsys)
    assert code == 0, err
    assert (tmp_path / "q.csv").read_text() == harness_i
    res = json.loads(stdout)
    assert res["integer"] and res["int_vs_float32"] == res["eval_mse"] / res["float32_eval_mse"]


def _one_line_exit_2(code, err, needle):
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_export_refusals(student_file, tmp_path, capsys):
    out = tmp_path / "d"
    assert run(["export", str(student_file), "--format", "c", "--out", str(out)], capsys)[0] == 0
    code, _, err = run(["export", str(student_file), "--format", "c", "--out", str(out)], capsys)
    _one_line_exit_2(code, err, "not empty")
    before = (out / "ternq_model.c").stat().st_mtime_ns
    assert run(["export", str(student_file), "--format", "c-int", "--out", str(out), "--force"], capsys)[0] == 0
    assert "int32_t" in (out / "ternq_model.c").read_text() and (out / "ternq_model.c").stat().st_mtime_ns >= before
    # never overwrite the trained model, whatever the format
    model_bytes = student_file.read_bytes()
    for fmt in ("tqd", "c", "c-int"):
        code, _, err = run(["export", str(student_file), "--format", fmt, "--out", str(student_file)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    code, _, err = run(["predict", str(student_file), "--out", str(student_file)], capsys)
    assert code == 2
    assert student_file.read_bytes() == model_bytes
    # a teacher, unsupported versions
    t = init_teacher(4, np.random.default_rng(0))
    t.save(tmp_path / "t.npz")
    code, _, err = run(["export", str(tmp_path / "t.npz"), "--format", "c", "--out", str(tmp_path / "e")], capsys)
    _one_line_exit_2(code, err, "only a quantized student")
    assert not (tmp_path / "e").exists()
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(student_file) as z, zipfile.ZipFile(buf, "w") as w:
        for name in z.namelist():
            data = z.read(name)
            if name == "header.npy":
                arr = np.load(io.BytesIO(data))
                hdr = json.loads(str(arr))
                hdr["version"] = 99
                b = io.BytesIO()
                np.save(b, np.array(json.dumps(hdr)))
                data = b.getvalue()
            w.writestr(name, data)
    (tmp_path / "v99.npz").write_bytes(buf.getvalue())
    code, _, err = run(["export", str(tmp_path / "v99.npz"), "--format", "c", "--out", str(tmp_path / "e")], capsys)
    _one_line_exit_2(code, err, "version 99")
    good = Deployable.from_model(Model.load(student_file)).to_bytes()
    (m,) = struct.unpack("<I", good[8:12])
    man = json.loads(good[12 : 12 + m])
    man["version"] = 2
    head = json.dumps(man).encode()
    (tmp_path / "v2.tqd").write_bytes(MAGIC + struct.pack("<I", len(head)) + head + good[12 + m:])
    code, _, err = run(["export", str(tmp_path / "v2.tqd"), "--format", "c", "--out", str(tmp_path / "e")], capsys)
    _one_line_exit_2(code, err, "version 2")
    code, _, err = run(["predict", str(student_file), "--int", "--factored"], capsys)
    _one_line_exit_2(code, err, "cannot be combined")
    code, _, err = run(["export", str(student_file), "--layout", "dense"], capsys)
    _one_line_exit_2(code, err, "--format c")


def test_export_from_a_tqd_equals_export_from_the_npz(student_file, tmp_path, capsys):
    assert run(["export", str(student_file), "--out", str(tmp_path / "s.tqd")], capsys)[0] == 0
    for src, name in ((student_file, "a"), (tmp_path / "s.tqd", "b")):
        assert run(["export", str(src), "--format", "c", "--out", str(tmp_path / name)], capsys)[0] == 0
    for f in ("ternq_model.c", "golden.h", "main.c"):
        assert (tmp_path / "a" / f).read_text() == (tmp_path / "b" / f).read_text()


# ---------------------------------------------------------------- every weight format

FORMAT_CASES = ["binary", "int2", "int3", "int4", "int8"]


@pytest.fixture(scope="module")
def format_deployables():
    """Deployables of each format on lorenz's dims, from random levels and scales (not trained: bit-identity is
    the point), with a 16-wide and an odd 7-wide model (int4 rows of odd length end in half a byte)."""
    from deployables import random_deployable

    rng = np.random.default_rng(23)
    return {(name, H): random_deployable(rng, name, 3, H, 3) for name in FORMAT_CASES for H in (7, 16)}


def _export_dep(dep, tmp_path, fmt, layout):
    X, _ = get_task("lorenz").eval_set()
    X = X[:4, :40]
    out = tmp_path / f"{dep.weight_format}-{fmt}-{layout}"
    write_c(dep, out, X, fmt, layout)
    _, Y = c99.golden_outputs(dep, fmt, X)
    return out, c99.csv_lines(Y), X


@HOST
@pytest.mark.parametrize("H", [7, 16])
@pytest.mark.parametrize("fmt", c99.FORMATS)
@pytest.mark.parametrize("name", FORMAT_CASES)
def test_every_format_c_is_bit_identical_to_predict_on_the_host(format_deployables, name, H, fmt, tmp_path):
    from deployables import training_forward

    dep = format_deployables[name, H]
    for layout in c99.layouts(dep):
        out, expected, X = _export_dep(dep, tmp_path, fmt, layout)
        code, stdout = toolchain.run(toolchain.build_host(out, tmp_path / f"m-{layout}"))
        assert code == 0 and stdout == expected, layout
    if fmt == "c":  # and ternq predict is the training forward on s * level
        assert dep.predict(X)[0].tobytes() == training_forward(dep.params(), X, dep.dims)[0].tobytes()
    else:  # and predict --int is the plain-Python oracle
        im = IntModel.from_deployable(dep)
        Xq = im.quantize_inputs(X)
        assert im.predict_q(Xq)[0].tolist() == oracle_int.forward(im, Xq)[0]


def test_wide_levels_are_multiplied_from_packed_rows(format_deployables):
    """int4: two levels a byte, each row from a byte boundary, low nibble first; int8: one int8 a level."""
    dep = format_deployables["int4", 7]
    src = c99.model_sources(dep, "c-int", "packed")["ternq_model.c"]
    assert c99.layouts(dep) == ("packed", "dense") and "TERNQ_LO" in src and "* v[j]" in src
    row = dep.levels_W[0]  # 10 levels: 5 bytes
    pairs = zip(row[0::2], row[1::2], strict=True)
    first = ", ".join(f"0x{(int(a) & 15) | ((int(b) & 15) << 4):02x}" for a, b in pairs)
    assert f"ternq_levels[{2 * 7 * 5 + 3 * 4}] = {{\n    {first}" in src  # W rows of 5 bytes, W_out rows of 4
    dep8 = format_deployables["int8", 7]
    src8 = c99.model_sources(dep8, "c", "packed")["ternq_model.c"]
    assert f"static const int8_t ternq_levels[{dep8.n_weights}]" in src8
    assert c99.model_sources(dep8, "c", "dense")["ternq_model.c"] == src8.replace("layout packed", "layout dense")
    with pytest.raises(ValueError, match="layout is packed or dense"):
        c99.model_sources(dep8, "c", "sparse")


@pytest.mark.parametrize("board_name", ["m4", "m3"])
@pytest.mark.parametrize("fmt", c99.FORMATS)
@pytest.mark.parametrize("name", ["binary", "int4", "int8"])
def test_every_format_c_is_bit_identical_on_both_emulated_boards(format_deployables, name, fmt, board_name,
                                                                 tmp_path):
    """The float library on the Cortex-M4F (hardware float) and the Cortex-M3 (software float), the integer one
    on both."""
    gone = toolchain.missing(board_name)
    if gone:
        pytest.skip(f"{', '.join(gone)} not installed (see .ci/run)")
    dep = format_deployables[name, 7]
    out, expected, _ = _export_dep(dep, tmp_path, fmt, c99.layouts(dep)[0])
    code, stdout = toolchain.run_board(toolchain.build_board(out, board_name, tmp_path), board_name)
    assert code == 0 and stdout == expected


@board("m3")
@pytest.mark.parametrize("name", ["int4", "int8"])
def test_wide_integer_c_needs_no_floating_point(format_deployables, name, tmp_path):
    out, _, _ = _export_dep(format_deployables[name, 16], tmp_path, "c-int", "packed")
    assert toolchain.float_symbols(out) == []
    assert not re.search(r"\b(float|double)\b", (out / "ternq_model.c").read_text())


@board("m4")
def test_board_sizes_hold_the_packed_levels(format_deployables, tmp_path):
    sizes = {}
    for name in ("int4", "int8"):
        dep = format_deployables[name, 16]
        out, _, _ = _export_dep(dep, tmp_path, "c", "packed")
        sizes[name] = board_sizes(out, dep, "c")["m4"]
        assert sizes[name]["rodata"] >= dep.format.packed_bytes(dep.n_weights) + 4 * (dep.scales.size + dep.b.size)
    dep = format_deployables["int4", 16]
    n = dep.n_weights
    saved = n - (2 * 16 * 10 + 3 * 8)  # int4 rows take 10 B (19 levels) or 8 B
    assert abs(sizes["int8"]["rodata"] - sizes["int4"]["rodata"] - saved) <= 16  # the rest: alignment, constants


def _budget_inputs(n_seq):
    from ternq.rng import stream

    x = stream(0, "test-budget").standard_normal((1, 6, 3)).astype(np.float32)
    return np.repeat(x, n_seq, axis=0)


@board("m3")
@pytest.mark.parametrize("name", ["ternary", "int4", "int8"])
def test_instructions_are_counted_on_the_board_step_by_step(format_deployables, name, tmp_path):
    """Identical sequences run identical instructions: the counts of 1, 2 and 3 copies differ by one sequence's
    exactly, and a step runs at least one instruction per weight it multiplies or adds."""
    from deployables import random_deployable

    from ternq.device.export import budget

    dep = (format_deployables[name, 16] if name != "ternary"
           else random_deployable(np.random.default_rng(29), "ternary", 3, 16, 3))
    counts = [budget(dep, "m3", X=_budget_inputs(k))["instructions"] for k in (1, 2, 3)]
    assert counts[2] - counts[1] == counts[1] - counts[0] > 0
    per_step = (counts[1] - counts[0]) / 6
    assert per_step >= np.count_nonzero(dep.levels())
    res = budget(dep, "m3", X=_budget_inputs(1))
    assert res == budget(dep, "m3", X=_budget_inputs(1))  # deterministic
    assert res["library"] == "c-int" and res["weight_format"] == name and "singlestep" in res["counted_on"]
    assert res["ram"] == 4 * 16 and res["flash"] > dep.format.packed_bytes(dep.n_weights)


@board("m0")
def test_budget_on_the_m0_counts_multiplies_and_cycles(format_deployables):
    """The integer library by default; a ternary step multiplies by no weight (adds and subtracts), an int8 step
    of the same shape by each one once, the rest (row scales, gates, the state update) alike; the 32-cycle
    multiplier costs 31 cycles more per MULS."""
    from deployables import random_deployable

    from ternq.device.export import budget

    res = {"int8": budget(format_deployables["int8", 16], "m0", X=_budget_inputs(1)),
           "ternary": budget(random_deployable(np.random.default_rng(29), "ternary", 3, 16, 3), "m0",
                             X=_budget_inputs(1))}
    for r in res.values():
        assert r["library"] == "c-int" and r["board"] == "m0"
        assert r["cycles_per_step"]["mul32"] - r["cycles_per_step"]["mul1"] == 31 * r["muls_per_step"]
        assert r["cycles_per_step"]["mul1"] > r["instructions_per_step"]
    assert res["int8"]["muls_per_step"] - res["ternary"]["muls_per_step"] == format_deployables["int8", 16].n_weights


@board("m4")
def test_budget_on_the_m4_counts_the_float_library(format_deployables):
    from ternq.device.export import budget

    dep = format_deployables["int8", 7]
    res = budget(dep, "m4")
    assert res["library"] == "c" and res["steps"] == 16 and res["instructions_per_step"] > dep.n_weights
    assert budget(dep, "m4", "c-int")["instructions_per_step"] != res["instructions_per_step"]
    with pytest.raises(ValueError, match="board"):
        budget(dep, "m7")


@HOST
def test_cli_export_of_an_int4_file(format_deployables, tmp_path, capsys):
    dep = format_deployables["int4", 16]
    path = tmp_path / "m.tqd"
    dep.save(path)
    out = tmp_path / "c"
    code, stdout, err = run(["export", str(path), "--format", "c-int", "--task", "lorenz", "--out", str(out),
                             "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["layout"] == "packed"
    code, harness = toolchain.run(toolchain.build_host(out, tmp_path / "m"))
    assert code == 0
    code, _, err = run(["predict", str(path), "--task", "lorenz", "--int", "--out", str(tmp_path / "q.csv")], capsys)
    assert code == 0, err
    assert (tmp_path / "q.csv").read_text() == harness
    code, _, err = run(["export", str(path), "--format", "c", "--task", "lorenz", "--layout", "sparse", "--out",
                        str(tmp_path / "s")], capsys)
    _one_line_exit_2(code, err, "layout is packed or dense")


@board("m4")
def test_packed_ternary_takes_the_files_bytes_on_the_board(students, tmp_path):
    """Five trits a byte in flash (row-aligned), decoded in C: less flash than a byte per trit or per non-zero
    trit, bit-identical on the boards."""
    dep = Deployable.from_model(students["lorenz", 32])
    flash = {}
    for layout in c99.LAYOUTS:
        _, out, expected = _export(students["lorenz", 32], tmp_path, "c", layout)
        flash[layout] = board_sizes(out, dep, "c")["m4"]["rodata"]
    rows = 2 * 32 * dep.format.packed_bytes(35) + 3 * dep.format.packed_bytes(32)
    assert flash["packed"] - rows < flash["sparse"] - np.count_nonzero(dep.levels()) + 64
    assert flash["packed"] < flash["sparse"] < flash["dense"]
    for target, fmt in (("m4", "c"), ("m3", "c-int")):
        if toolchain.missing(target):
            continue
        (tmp_path / target).mkdir()
        _, out, expected = _export(students["lorenz", 32], tmp_path / target, fmt, "packed")
        code, stdout = toolchain.run_board(toolchain.build_board(out, target, out), target)
        assert code == 0 and stdout == expected


@board("m3")
@pytest.mark.parametrize("name", ["ternary", "binary", "int4", "int8"])
def test_packed_integer_libraries_need_no_library_function_on_the_m3(name, tmp_path):
    """Decoding the packed levels (base 3, bits, nibbles) compiles to plain instructions: no division routine."""
    import subprocess

    from deployables import random_deployable

    dep = random_deployable(np.random.default_rng(31), name, 3, 16, 3)
    out, _, _ = _export_dep(dep, tmp_path, "c-int", "packed")
    obj = toolchain._object(out, "m3", tmp_path)
    needed = subprocess.run([toolchain.ARM_NM, "-u", str(obj)], capture_output=True, text=True, check=True).stdout
    assert {line.split()[-1] for line in needed.splitlines() if line.strip()} <= {"memcpy", "memset", "memmove"}


@pytest.fixture(scope="module")
def format_students():
    """Tiny trained lorenz students, int4 and int8, from one teacher."""
    task = get_task("lorenz")
    teacher, _ = train_teacher(task, TeacherConfig(hidden=16, epochs=40), seed=0)
    return {name: train_student(teacher, task, StudentConfig(hidden=16, epochs=40, shaped=True,
                                                             weight_format=name), seed=0)[0]
            for name in ("int4", "int8")}


@pytest.mark.parametrize("fmt", c99.FORMATS)
@pytest.mark.parametrize("name", ["int4", "int8"])
def test_trained_int4_and_int8_students_are_bit_identical_on_host_and_boards(format_students, name, fmt, tmp_path):
    student = format_students[name]
    X, _ = get_task("lorenz").eval_set()
    if fmt == "c":  # ternq predict is the training forward
        dep = Deployable.from_model(student)
        assert dep.predict(X)[0].tobytes() == __import__("ternq").predict(student, X)[0].tobytes()
    ran = 0
    for target in (None, "m4", "m3"):
        if toolchain.missing(target):
            continue
        (tmp_path / str(target)).mkdir()
        _, out, expected = _export(student, tmp_path / str(target), fmt, "packed")
        exe = (toolchain.build_host(out, out / "m") if target is None else
               toolchain.build_board(out, target, out))
        code, stdout = toolchain.run(exe) if target is None else toolchain.run_board(exe, target)
        assert code == 0 and stdout == expected, target
        ran += 1
    if not ran:
        pytest.skip("no C compiler")


def test_the_trit_table_decodes_the_files_ternary_bytes():
    """Every byte of five trits packed as the .tqd file packs them decodes through the table to those trits."""
    import itertools

    from ternq.deploy import pack_levels
    from ternq.formats import get as get_format

    table = c99.trit_table()
    fmt = get_format("ternary")
    for trits in itertools.product((-1, 0, 1), repeat=5):
        (b,) = pack_levels(np.array(trits, np.int8), fmt)
        assert [((table[b] >> (2 * k)) & 3) - 1 for k in range(5)] == list(trits)


@board("m0")
def test_the_trit_table_takes_the_division_out_of_packed_ternary_on_the_m0():
    from deployables import random_deployable

    from ternq.device.export import budget

    dep = random_deployable(np.random.default_rng(29), "ternary", 3, 16, 3)
    packed, table = budget(dep, "m0", layout="packed"), budget(dep, "m0", layout="packed-table")
    assert table["instructions_per_step"] < packed["instructions_per_step"] / 2
    assert table["flash"] > packed["flash"]  # the 486-byte table, less the decoding it replaces
    with pytest.raises(ValueError, match="not in base 3"):
        budget(random_deployable(np.random.default_rng(29), "binary", 3, 16, 3), "m0", layout="packed-table")


def test_a_tools_version_is_its_first_line_or_absent(tmp_path):
    import sys

    assert toolchain.version([sys.executable, "--version"]).startswith("Python 3.")
    missing = str(tmp_path / "no-such-tool")
    assert toolchain.version([missing, "--version"]) == f"{missing} absent"
