"""ternq frontier: the Pareto front, the grid, the command's files, resuming and bad input."""

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import invoke, one_line_exit_2
from hypothesis import given, settings
from hypothesis import strategies as st

from ternq import formats
from ternq.cli import main
from ternq.config import ConfigError, read_toml
from ternq.frontier import (
    DEFAULT_WIDTHS,
    PTQ,
    PTQ_FT,
    QAT,
    RECIPE,
    load_frontier,
    pairs,
    pareto_front,
    parse_frontier,
    parse_grid,
    run_frontier,
)

ROOT = Path(__file__).parent.parent


def slow_front(costs, errors):
    """The definition, point by point: on the front unless another point is at most as costly and lower in
    error, or less costly and at most as high in error; points without a cost or a finite error never are."""
    def ok(i):
        return costs[i] is not None and math.isfinite(costs[i]) and math.isfinite(errors[i])

    out = []
    for i in range(len(costs)):
        if not ok(i):
            out.append(False)
            continue
        beaten = any(ok(j) and j != i and ((costs[j] <= costs[i] and errors[j] < errors[i])
                                           or (costs[j] < costs[i] and errors[j] <= errors[i]))
                     for j in range(len(costs)))
        out.append(not beaten)
    return out


@pytest.mark.parametrize("costs, errors, front", [
    ([], [], []),
    ([1], [1.0], [True]),
    ([1, 2, 3], [3.0, 2.0, 1.0], [True, True, True]),  # each more bytes, lower error
    ([1, 2, 3], [1.0, 2.0, 3.0], [True, False, False]),  # the cheapest is also the best
    ([2, 2], [1.0, 1.0], [True, True]),  # equal points are on it together
    ([2, 2], [1.0, 2.0], [True, False]),  # same cost: only the lower error
    ([1, 2], [1.0, 1.0], [True, False]),  # same error: only the lower cost
    ([1, 2, 2, 3], [5.0, 3.0, 3.0, 3.0], [True, True, True, False]),
    ([None, 2], [0.1, 1.0], [False, True]),  # not counted: never on it, and beats nothing
    ([1, 2], [float("nan"), 1.0], [False, True]),
    ([1, 2], [float("inf"), 1.0], [False, True]),
])
def test_front_hand_cases(costs, errors, front):
    assert pareto_front(costs, errors) == front
    assert slow_front(costs, errors) == front


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 6)), st.sampled_from([0.5, 1.0, 2.0, 3.0, math.nan])),
                max_size=12))
def test_front_equals_the_slow_definition(points):
    costs = [c for c, _ in points]
    errors = [e for _, e in points]
    assert pareto_front(costs, errors) == slow_front(costs, errors)


def test_recipe_is_best_toml():
    best = read_toml(ROOT / "configs" / "best.toml")
    assert RECIPE["student"] == best["student"]
    assert parse_frontier({}).base.student.total_epochs == 9000


def test_default_grid_overlaps_on_lorenz():
    """Four or more widths per format, and every format has a model within 15% of the study's 270, 480 and 750
    weight bytes on lorenz (3 in, 3 out)."""
    for fmt, widths in DEFAULT_WIDTHS.items():
        assert len(widths) >= 4
        sizes = [formats.weight_bytes(formats.get(fmt), 3, h, 3) for h in widths]
        for level in (270, 480, 750):
            assert min(abs(s / level - 1) for s in sizes) < 0.15, (fmt, level, sizes)


@pytest.mark.parametrize("task", ["lorenz", "sine", "ecg"])
def test_study_configs_load(task):
    f = load_frontier(ROOT / "configs" / f"frontier-{task}.toml")
    assert f.base.task == task and f.seeds == (0, 1, 2) and f.ptq
    assert f.base.student == parse_frontier({}).base.student
    assert set(f.widths) == {"ternary", "int4", "int8"}


def test_cells_share_units_and_set_the_format():
    f = parse_frontier({"frontier": {"widths": {"ternary": [16, 24, 32], "int8": [8]}, "ptq": True}})
    cells = f.cells()
    names = [c.cell.name for c in cells]
    assert names == ["ternary-h16-h24", "ternary-h32", "ternary-ptq-h16-h24", "ternary-ptq-h32",
                     "ternary-ptq-ft-h16-h24", "ternary-ptq-ft-h32", "int8-h8", "int8-ptq-h8", "int8-ptq-ft-h8"]
    by = {c.cell.name: c.cell.settings for c in cells}
    assert by["int8-h8"].student.weight_format == "int8"
    assert by["ternary-h16-h24"].student.total_epochs == 9000 and not by["ternary-h16-h24"].student.ptq
    ptq, ft = by["ternary-ptq-h16-h24"], by["ternary-ptq-ft-h16-h24"]
    assert ptq.student.ptq and ptq.student.finetune_epochs == 0
    assert ft.student.ptq and ft.student.finetune_epochs == 3000 and ft.student.progressive == 0
    # the PTQ cells quantize the equal-budget float: their teacher is the recipe cells' reference, one unit
    from ternq.experiment.plans import plan

    qat, quant = plan(by["ternary-h16-h24"]), plan(ptq)
    ref = {u.digest for u in qat.references.values()}
    assert {u.digest for u in quant.teachers.values()} <= ref
    assert not quant.references
    assert [c.method for c in cells[:6]] == [QAT, QAT, PTQ, PTQ, PTQ_FT, PTQ_FT]
    assert pairs((32, 8, 16, 12)) == [(8, 12), (16, 32)] and pairs((5, 3, 4)) == [(3, 4), (5, 5)]


@pytest.mark.parametrize("part", ["cand", "recurrent"])
def test_a_student_with_float_weights_is_no_frontier_point(part):
    with pytest.raises(ConfigError, match="^student.float_matrices: a frontier counts"):
        parse_frontier({"student": {"float_matrices": part}})


@pytest.mark.parametrize("items, needle", [
    (["int9=8,12"], "unknown weight format"),
    (["int4=0,8"], "widths are integers from 1"),
    (["int4=8,8"], "repeats a width"),
    (["int4=a,8"], "positive integers"),
    (["int4="], "positive integers"),
    (["int4 8,12"], "is not FORMAT="),
    (["int4=8", "int4=12"], "given twice"),
    (["ternary+cand:int9=8"], "unknown weight format"),
    (["ternary+core:int8=8"], "matrix one of"),
])
def test_bad_grid(items, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_grid(items)


TINY = """
[experiment]
task = "lorenz"
[teacher]
epochs = 12
[student]
epochs = 8
finetune_epochs = 4
[frontier]
seeds = "0:1"
ptq = true  # plain PTQ has no training MSE: the resume must read that back
[frontier.widths]
ternary = [4, 6]
int8 = [3, 4]
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The command on a tiny grid (2 formats x 2 widths x 1 seed), and its output folder."""
    d = tmp_path_factory.mktemp("frontier")
    (d / "tiny.toml").write_text(TINY)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(["frontier", "--config", str(d / "tiny.toml"), "--out", str(d / "out"), "-q", "--workers", "1"])
    return exc.value.code, out.getvalue(), err.getvalue(), d


def test_command_writes_table_files_and_plots(tiny_run):
    code, out, err, d = tiny_run
    assert code == 0, err
    assert "Frontier on lorenz" in out and "int8" in out and "ternary" in out
    assert "not counted" in " ".join(out.split()) or "counted on" in " ".join(out.split())
    assert all(len(line) <= 80 for line in out.splitlines()[:-1])  # the table; the last line is the wall time
    doc = json.loads((d / "out" / "results.json").read_text())
    assert [(p["format"], p["method"], p["hidden"]) for p in doc["points"]] == [
        (f, m, h) for f, hs in (("ternary", (4, 6)), ("int8", (3, 4))) for m in ("qat", "ptq", "ptq+ft") for h in hs]
    for p in doc["points"]:
        assert p["weight_bytes"] == formats.weight_bytes(formats.get(p["format"]), 3, p["hidden"], 3)
        assert len(p["per_seed"]) == 1
        assert p["eval_mse_scored"]["geo_mean"] == pytest.approx(p["per_seed"][0]["eval_mse_scored"], rel=1e-12)
    errors = [p["eval_mse_scored"]["geo_mean"] for p in doc["points"]]
    assert [p["front_bytes"] for p in doc["points"]] == slow_front([p["weight_bytes"] for p in doc["points"]], errors)
    assert [r["hidden"] for r in doc["float_reference"]["models"]] == [3, 4, 6]
    assert all(r["epochs"] == 12 for r in doc["float_reference"]["models"])  # the student's 8 + 4
    assert doc["metric"]["name"] == "scored"
    rows = (d / "out" / "results.csv").read_text().splitlines()
    assert rows[0].startswith("label,format,method,hidden,seed,weight_bytes")
    assert len(rows) == 1 + 2 * (12 + 3)  # a row per seed and one over seeds, for 12 models and 3 floats
    assert (d / "out" / "frontier.md").read_text().startswith("### Frontier on lorenz")
    pytest.importorskip("matplotlib")
    for name in ("error-vs-bytes.png", "error-vs-instructions.png"):
        assert (d / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_trains_nothing(tiny_run):
    """The same grid into the same folder: every training is found in its store, none starts."""
    _, _, _, d = tiny_run
    assert tiny_run[0] == 0
    spec = load_frontier(d / "tiny.toml")
    started = []
    doc, outcome = run_frontier(spec, d / "out", workers=1, check_gradients=False, check_reproducible=False,
                                on_start=lambda u: started.append(u.key))
    assert started == [] and outcome.resumed == outcome.units > 0
    first = json.loads((d / "out" / "results.json").read_text())
    assert [p["per_seed"] for p in doc["points"]] == [p["per_seed"] for p in first["points"]]


@pytest.mark.parametrize("argv, needle", [
    (["--widths", "int9=8,12"], "unknown weight format"),
    (["--widths", "int4=0,8"], "widths are integers from 1"),
    (["--widths", "int4=8,8"], "repeats a width"),
    (["--widths", "int4"], "is not FORMAT="),
    (["--seeds", "3:1"], "empty"),
    (["--task", "nosuch"], "nosuch"),
])
def test_bad_input_one_line(argv, needle, capsys, tmp_path):
    one_line_exit_2(["frontier", "--out", str(tmp_path / "o"), *argv], capsys, needle)


@pytest.mark.parametrize("body, needle", [
    ("[frontier.widths]\n", "the grid is empty"),
    ("[frontier]\nwidths = 3\n", "expected a table"),
    ("[frontier.widths]\nint4 = 8\n", "expected a list of widths"),
    ("[frontier.widths]\nint4 = []\n", "no widths"),
    ("[frontier.widths]\nint4 = [8, true]\n", "widths are integers"),
    ("[frontier]\nboard = \"m7\"\n", "frontier.board"),
    ("[frontier]\nptq = 1\n", "frontier.ptq"),
    ("[frontier]\ncolour = 1\n", "unknown key"),
    ("[design]\nruns = 4\n", "grid"),
    ("[experiment]\nseeds = 3\n", "[frontier]"),
    ("[student]\nepochs = 0\n", "student.epochs"),
])
def test_bad_file_one_line(body, needle, capsys, tmp_path):
    (tmp_path / "f.toml").write_text(body)
    one_line_exit_2(["frontier", "--config", str(tmp_path / "f.toml"), "--out", str(tmp_path / "o")], capsys, needle)


def test_plain_invoke_help(capsys):
    code, out, _ = invoke(["frontier", "--help"], capsys)
    assert code == 0 and "--widths FORMAT=W1,W2,..." in out


def test_instructions_axis_from_a_counter(tiny_run, tmp_path):
    """With a counter the instructions axis is filled (mean over seeds), its front marked and both plots drawn;
    the counter here counts the nonzero parameters, so the figures are known."""
    import numpy as np

    from ternq.frontier import InstructionCounter, save
    from ternq.report.frontier import frontier_table, markdown, plot_files, save_plots

    _, _, _, d = tiny_run
    seen = []

    def count(model):
        n = int(np.count_nonzero(model.theta))
        seen.append(n)
        return {"instructions_per_step": 10.0 * n, "flash": 100 + n, "ram": 4 * model.hidden,
                "counted_on": "a test board"}

    doc, _ = run_frontier(load_frontier(d / "tiny.toml"), d / "out", workers=1, check_gradients=False,
                          check_reproducible=False, counter=InstructionCounter("m4", "counted on a test", count))
    instr = [p["instructions_per_step"] for p in doc["points"]]
    assert all(x is not None and x > 0 for x in instr)
    assert sorted(x / 10 for x in instr) == sorted(seen)  # one seed: each point's one count
    errors = [p["eval_mse_scored"]["geo_mean"] for p in doc["points"]]
    assert [p["front_instructions"] for p in doc["points"]] == slow_front(instr, errors)
    assert doc["instructions"] == {"counted": True, "board": "m4", "note": "counted on a test board",
                                   "what": "instructions per step: the mean over seeds; flash and RAM: the largest"}
    from rich.console import Console

    console = Console(width=80, record=True, file=io.StringIO())
    console.print(frontier_table(doc, 80))
    text = console.export_text()
    assert f"{instr[0]:,.0f}" in text and "counted on a test board" in " ".join(text.split())
    assert max(len(line) for line in text.splitlines()) <= 80
    md = markdown(doc)
    assert f"{instr[0]:,.0f}" in md and "counted on a test board" in md
    pytest.importorskip("matplotlib")
    save(doc, tmp_path)
    assert save_plots(doc, tmp_path) == plot_files(tmp_path)


def test_no_toolchain_says_so(monkeypatch):
    from ternq.device import toolchain
    from ternq.frontier import instruction_counter

    monkeypatch.setattr(toolchain, "missing", lambda target=None, emulator=True: ["qemu-system-arm"])
    c = instruction_counter("m4")
    assert not c.available and c.note == "not counted (no toolchain: qemu-system-arm missing)"


def test_mixed_points_name_their_settings_and_bytes():
    from ternq import formats
    from ternq.frontier import format_changes, label_bytes, parse_grid

    assert format_changes("ternary+cand:int8") == {"student": {"weight_format": "ternary",
                                                               "weight_format_cand": "int8"}}
    assert parse_grid(["ternary+cand:int8=16,24"]) == {"ternary+cand:int8": (16, 24)}
    t, i8 = formats.get("ternary"), formats.get("int8")
    assert label_bytes("ternary+cand:int8", 3, 16, 3) == formats.weight_bytes_mixed((t, i8, t), 3, 16, 3)
    assert label_bytes("int8", 3, 16, 3) == formats.weight_bytes(i8, 3, 16, 3)
