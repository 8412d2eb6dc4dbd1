"""The engine: designs against independent computations, the stored reference, Dask against local."""

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke as cli

from ternq.config import load
from ternq.experiment.effects import Design, choose, name, word
from ternq.experiment.plans import DesignSettings, parse_factor, plan
from ternq.experiment.run import run_experiment
from ternq.experiment.units import run_unit

ROOT = Path(__file__).parent.parent
QUICK = str(ROOT / "configs" / "quick.toml")
REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_factorial.json").read_text())


def test_fractional_effects_equal_least_squares():
    """On a 2^(6-2) design, each effect is twice the least-squares coefficient of its column."""
    d = choose(6)
    assert (d.k, d.runs, d.resolution) == (6, 16, 4)
    X = d.matrix().astype(float)
    rng = np.random.default_rng(0)
    est = d.estimable(2)
    cols = [np.prod(X[:, [i for i in range(6) if m >> i & 1]], axis=1) for m, _ in est]
    y = 0.3 + X @ rng.normal(size=6) + 0.5 * cols[7] + rng.normal(scale=0.1, size=16)
    A = np.column_stack([np.ones(16), *cols])
    beta = np.linalg.lstsq(A, y, rcond=None)[0]
    got = d.effects(y)
    assert list(got) == [name(m) for m, _ in est]
    np.testing.assert_allclose([got[name(m)] for m, _ in est], 2 * beta[1:], rtol=1e-10, atol=1e-12)


def test_alias_structure_of_the_textbook_2_6_2():
    """2^(6-2), E = ABC, F = BCD: I = ABCE = BCDF = ADEF (Montgomery, example 8.4)."""
    d = Design(6, ("E=ABC", "F=BCD"))
    assert sorted(name(w) for w in d.defining_relation()) == ["ABCE", "ADEF", "BCDF"]
    assert d.resolution == 4
    aliases = {name(m): {name(a) for a in al} for m, al in d.estimable(2)}
    assert aliases["A"] == {"BCE", "DEF"} and aliases["E"] == {"ABC", "ADF"}
    two = {frozenset([k, *v]) for k, v in aliases.items() if len(k) == 2}
    assert {frozenset({"AB", "CE"}), frozenset({"AC", "BE"}), frozenset({"AD", "EF"}),
            frozenset({"AE", "BC", "DF"}), frozenset({"AF", "DE"}), frozenset({"BD", "CF"}),
            frozenset({"BF", "CD"})} == two
    # every column is +-1, orthogonal to the others among the estimable effects
    cols = np.array([d.column(m) for m, _ in d.estimable(2)])
    assert (cols @ cols.T == 16 * np.eye(len(cols))).all()


def test_smallest_resolution_iv_fractions():
    for k, runs in [(3, 8), (5, 32), (6, 16), (7, 16), (8, 16), (9, 32), (10, 32)]:
        d = choose(k)
        assert d.runs == runs and (d.resolution or 99) >= 4, k
        # generators hold in the matrix
        m = d.matrix()
        for g in d.generators:
            t, rhs = g.split("=")
            assert (m[:, word(t, k).bit_length() - 1] == np.prod(m[:, [word(c, k).bit_length() - 1 for c in rhs]],
                                                                   axis=1)).all()


@pytest.mark.parametrize("k,runs,needle", [(4, 4, "need more than 4"), (3, 6, "power of two"), (3, 16, "more than")])
def test_bad_run_counts(k, runs, needle):
    from ternq.experiment.effects import DesignError

    with pytest.raises(DesignError, match=needle):
        choose(k, runs)


@pytest.mark.parametrize("argv,needle", [
    (["--factor", "student.bogus=1,2"], "student.bogus: unknown key"),
    (["--factor", "student.lr=0.01,0.01"], "levels are equal"),
    (["--factor", "student.epochs=ten,20"], "not a int"),
    (["--factor", "student.shaped=maybe,true"], "not a bool"),
    (["--factor", "nothing"], "KEY=LOW,HIGH"),
    (["--factor", "student.lr=0.01,0.02", "--factor", "hidden=4,8", "--runs", "2"], "need more than 2"),
    (["--factor", "student.lr=0.01,0.02", "--factor", "student.lr=0.1,0.2"], "given twice"),
])
def test_bad_designs_one_line(argv, needle, capsys):
    code, _, err = cli(["factorial", "--config", QUICK, "-q", *argv], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_design_section_in_toml(tmp_path):
    p = tmp_path / "d.toml"
    p.write_text(Path(QUICK).read_text() + '\n[design]\nruns = 4\n[design.factors]\n'
                 'shaped = { key = "student.shaped", levels = [false, true] }\n'
                 'lr = { key = "student.lr", levels = [0.003, 0.01] }\n'
                 'width = { key = "hidden", levels = [4, 8] }\n')
    s = load(p)
    assert [f.name for f in s.design.factors] == ["shaped", "lr", "width"] and s.design.design().runs == 4
    pl = plan(s)
    assert len(pl.runs) == 4 and {r.student.hidden for r in pl.runs} == {4, 8}
    # a teacher per width and seed, each student with the teacher of its own width
    for run in pl.runs:
        assert pl.teachers[run.index, 0].config.hidden == run.student.hidden
    assert len({u.digest for u in pl.teachers.values()}) == 2


@pytest.mark.parametrize("which", ["quick", "default"])
def test_default_design_reproduces_the_stored_reference(which):
    """Every unit's eval MSE is that of the code before the engine, exactly, on the notes' whole-sequence
    metric; the effects, computed from those MSEs through numpy's log10 (whose last bit depends on the
    machine's SIMD paths), agree to 1e-13."""
    ref = REFERENCE[which]
    s = load(ROOT / ref["config"])
    a, b = ref["seeds"].split(":")
    s = replace(s, seeds=tuple(range(int(a), int(b))), run=replace(s.run, float_reference=False, metric="whole"))
    doc, _, _ = run_experiment(s, workers=2, check_gradients=False, check_reproducible=False)
    got = {}
    for ps in doc["per_seed"]:
        for r in [*ps["teachers"].values(), *ps["configs"], *ps["cs"]]:
            got[r["key"]] = {k: r[k] for k in ("eval_mse", "ref_mse", "train_mse")}
        assert ps["effects"] == pytest.approx(ref["per_seed_effects"][str(ps["seed"])], rel=1e-13, abs=1e-15)
    assert got == ref["units"]
    for k, e in ref["effects"].items():
        for x in ("mean", "lo", "hi"):
            v = doc["effects"][k][x]
            assert (e[x] is None and np.isnan(v)) or v == pytest.approx(e[x], rel=1e-13, abs=1e-15), (k, x)
    assert len(doc["predictions"]) == 5


def test_five_factor_fraction_same_locally_and_on_dask():
    distributed = pytest.importorskip("distributed")
    factors = tuple(parse_factor(f) for f in ("student.shaped=false,true", "student.distill=false,true",
                                              "hidden=4,8", "student.mask=reference,seed", "student.lr=0.003,0.01"))
    s = replace(load(QUICK), seeds=(0, 1), design=DesignSettings(factors, runs=16))
    s.validate()
    assert plan(s).design.generators == ("E=ABCD",)
    local, _, lres = run_experiment(s, workers=2, check_gradients=False, check_reproducible=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        remote, _, rres = run_experiment(s, client=client, check_gradients=False, check_reproducible=False)
    assert lres.keys() == rres.keys()
    for d in lres:
        assert lres[d][1].theta.tobytes() == rres[d][1].theta.tobytes()
    strip = lambda doc: json.dumps({k: v for k, v in doc.items() if k != "timing"}, sort_keys=True,  # noqa: E731
                                   default=str).replace("NaN", "null")

    no_seconds = lambda t: re.sub(r'"seconds": [0-9.e-]+', "", t)  # noqa: E731
    assert no_seconds(strip(local)) == no_seconds(strip(remote))
    assert set(local["effects"]) >= {"A", "B", "C", "D", "E", "AB", "DE"}


def test_baselines_made_beside_the_trainings_give_the_same_document(monkeypatch):
    """With cores to spare the baselines are fitted, and each finished model scored against them, while the
    models train; otherwise after them: the same document either way."""
    import ternq.experiment.run as run_mod

    s = replace(load(QUICK), seeds=(0,))
    docs, beside = [], []

    def spy(p, results, *args):
        beside.append(set(args[-1] or ()))
        return summarize(p, results, *args)

    summarize = run_mod.summarize
    monkeypatch.setattr(run_mod, "summarize", spy)
    for cores in (1, 64):
        monkeypatch.setattr(run_mod, "local_workers", lambda w, cores=cores: cores if w is None else w)
        doc, p, _ = run_experiment(s, workers=1, check_gradients=False, check_reproducible=False)
        text = json.dumps({k: v for k, v in doc.items() if k != "timing"}, sort_keys=True, default=str)
        docs.append(re.sub(r'"seconds": [0-9.e-]+', "", text))
    assert docs[0] == docs[1] and '"vs_naive"' in docs[0]
    assert beside == [set(), {u.digest for u in p.units}]  # after: scored in the document; beside: all of them


def test_gradient_check_apart_where_a_core_is_free_and_the_rerun_beside_it(monkeypatch):
    """With a core to spare, the gradient check runs in a child process (this process's threads would hold it up);
    without one, here. Either way the reproducibility rerun runs while the check does. The same document."""
    import threading

    import ternq.experiment.run as run_mod

    s = replace(load(QUICK), seeds=(0,))
    gradient_error = run_mod.gradient_error
    docs = []
    for cores in (1, 64):
        apart, overlapped = [], []
        in_check, rerun_started = threading.Event(), threading.Event()

        def check(settings, widths, apart_=False, apart=apart, overlapped=overlapped, in_check=in_check,
                  rerun_started=rerun_started):
            apart.append(apart_)
            in_check.set()
            overlapped.append(rerun_started.wait(30))  # False if the rerun waits for this check to return
            return gradient_error(settings, widths)

        def rerun(u, deps, progress=None, in_check=in_check, rerun_started=rerun_started):
            in_check.wait(30)
            rerun_started.set()
            return run_unit(u, deps, progress)

        monkeypatch.setattr(run_mod, "local_workers", lambda w, cores=cores: cores if w is None else w)
        monkeypatch.setattr(run_mod, "gradient_error", check)
        monkeypatch.setattr(run_mod, "run_unit", rerun)
        doc, _, _ = run_experiment(s, workers=1)
        assert apart == [cores > 2] and overlapped == [True]
        checks = {c["item"].split(" (")[0]: c["ok"] for c in doc["checklist"]}
        assert checks["gradient check passes"] is True and checks["reproducible"] is True
        docs.append(re.sub(r'"seconds": [0-9.e-]+', "", json.dumps({k: v for k, v in doc.items() if k != "timing"},
                                                                   sort_keys=True, default=str)))
    assert docs[0] == docs[1]


def test_general_design_cli_writes_aliases_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    argv = ["factorial", "--config", QUICK, "--seeds", "0:2", "-q", "--out", str(tmp_path / "o"), "--plot",
            str(tmp_path / "p"), "--no-gradcheck"]
    argv += [x for f in ("student.shaped=false,true", "student.lr=0.003,0.01", "hidden=4,8", "student.epochs=40,80")
             for x in ("--factor", f)] + ["--runs", "8"]
    code, out, _ = cli(argv, capsys)
    assert code == 0
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["design"]["generators"] == ["D=ABC"] and doc["design"]["resolution"] == 4
    assert doc["effects"]["AB"]["aliases"] == ["CD"] and "AB" in out and "CD" in out
    assert len(doc["runs"]) == 8 and all(e["verdict"] for e in doc["effects"].values())
    assert (tmp_path / "p" / "effects-half-normal.png").stat().st_size > 0


def test_every_key_combination_of_2_3_matches_yates():
    """The notes' 2^3 through the general design equals the textbook contrasts."""
    d = Design(3)
    y = np.arange(8.0) ** 1.5
    for r in range(1, 4):
        for combo in itertools.combinations("ABC", r):
            col = np.prod([d.matrix()[:, "ABC".index(c)] for c in combo], axis=0)
            assert d.effects(y, 3)["".join(combo)] == pytest.approx(col @ y / 4)
