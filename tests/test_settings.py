"""Every setting is defined once and reads the same from TOML, its flag and ``--factor``."""

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import invoke as cli

from ternq import settings as S
from ternq.config import ConfigError, from_dict
from ternq.experiment.plans import ExperimentSettings, parse_factor

ROOT = Path(__file__).parent.parent
QUICK = str(ROOT / "configs" / "quick.toml")


def every_setting():
    """(section, name, field) of every setting: [experiment]'s keys and each section's."""
    out = [("experiment", f.name, f) for f in fields(ExperimentSettings) if S.spec_of(f) is not None]
    for sec, block in S.SECTIONS.items():
        out += [(sec, f.name, f) for f in fields(block)]
    return out


SETTINGS = every_setting()
IDS = [f"{sec}.{name}" for sec, name, _ in SETTINGS]
# a value of the right type that the setting refuses, and one it takes (other than the default)
BAD = {"bool": "maybe", "seeds": "a:b", "widths": [16], "columns": [-1], "pair": [1.0]}
FREE_TEXT = {"experiment.task": ("lorenz", "nope"), "experiment.data": (None, None),
             "experiment.columns": (None, [-1]), "run.response": ("rollout:5", "bogus")}


def _values(key: str, f):
    """(a valid value other than the default, an invalid one) for setting ``key``."""
    if key in FREE_TEXT:
        return FREE_TEXT[key]
    spec, d = S.spec_of(f), f.default
    if spec.choices:
        return next(c for c in spec.choices if c != d), "bogus"
    if spec.kind == "bool":
        return not d, BAD["bool"]
    if spec.kind == "int":
        good = 3 if d is None else (d + 1 if spec.hi is None or d + 1 <= spec.hi else d - 1)
        bad = -1 if spec.lo is not None else None
        return good, bad
    if spec.kind == "float":
        lo = spec.lo if spec.lo is not None else 0.0
        hi = spec.hi if spec.hi is not None else max(2 * d, 1.0)
        good = next(x for x in (d / 2, (lo + hi) / 2, hi) if x != d and x > lo)
        return good, -1.0 if spec.lo is not None else float("nan")
    if spec.kind == "pair":
        return (d[0] / 2, d[1] / 2), BAD["pair"]
    if spec.kind == "seeds":
        return (0, 1), BAD["seeds"]
    if spec.kind == "widths":
        return (8, 16), BAD["widths"]
    raise AssertionError(key)


def test_every_section_field_is_a_setting_with_help():
    for key, (_, _, f) in zip(IDS, SETTINGS, strict=True):
        spec = S.spec_of(f)
        assert spec is not None and spec.help.strip(), key
        if spec.kind in ("int", "float") and not spec.optional:
            assert spec.lo is not None, f"{key}: a number without a range"


@pytest.mark.parametrize("sec,name,f", SETTINGS, ids=IDS)
def test_toml_reads_each_setting(sec, name, f):
    good, bad = _values(f"{sec}.{name}", f)
    base = ExperimentSettings()
    holder = base if sec == "experiment" else getattr(base, sec)
    assert getattr(holder, name) == f.default  # the default is the field's own
    if good is not None:
        s = from_dict({sec: {name: good}})
        got = getattr(s if sec == "experiment" else getattr(s, sec), name)
        assert got == (tuple(good) if isinstance(good, list) else good)
    if bad is not None:
        with pytest.raises(ConfigError, match=re.escape(f"{sec}.{name}")):
            from_dict({sec: {name: bad}})


def _flagged():
    from ternq.cli import cli as group

    out = []
    for cmd_name, cmd in sorted(group.commands.items()):
        for p in cmd.params:
            if getattr(p, "setting", None):
                out.append((cmd_name, p))
    return out


FLAGGED = _flagged()


def test_flags_cover_the_settings_the_commands_read():
    named = {p.setting for _, p in FLAGGED}
    assert {"teacher.epochs", "teacher.lr", "teacher.lr_min", "student.shaped", "student.distill", "student.mask",
            "student.beta", "student.alpha", "cs.sweeps", "run.horizon", "run.warmup", "run.period",
            "run.response", "run.workers"} <= named


@pytest.mark.parametrize("cmd,param", FLAGGED, ids=[f"{c}:{p.opts[0]}" for c, p in FLAGGED])
def test_each_flag_reads_its_setting_as_toml_does(cmd, param, capsys):
    """Not given: None, so the settings file's value (or the default) stands; its help shows the default; a
    value the setting refuses is refused by the flag with the same reason, in one line, exit 2."""
    sec, name = param.setting.split(".")
    f = next(f for f in fields(S.SECTIONS[sec]) if f.name == name)
    assert param.default is None
    shown = S.default_text(f.default)
    assert not shown or f"[{shown}]" in param.help
    _, bad = _values(param.setting, f)
    if bad is None or S.spec_of(f).kind == "bool":
        return
    try:
        from_dict({sec: {name: bad}})
    except ConfigError as exc:
        reason = str(exc).split(": ", 1)[1]
    else:  # horizon, warm-up and period: checked against the task when the run starts
        reason = f"{name} must be"
    argv = [cmd, param.opts[0], *(map(str, bad) if isinstance(bad, list) else [str(bad)]), "-q"]
    if S.spec_of(f).kind == "pair" and len(bad) == 1:
        argv = [cmd, param.opts[0], "1", "nan", "-q"]
        reason = "must be two finite numbers"
    code, _, err = cli(argv, capsys)
    assert code == 2 and reason in err and len(err.strip().splitlines()) == 1, (argv, err)


FACTORS = [(sec, name, f) for sec, name, f in SETTINGS if sec in ("teacher", "student")]


@pytest.mark.parametrize("sec,name,f", FACTORS, ids=[f"{s}.{n}" for s, n, _ in FACTORS])
def test_factor_levels_read_as_toml_does(sec, name, f):
    """Every teacher and student setting of a single value is a factor; its levels are checked as TOML's."""
    spec = S.spec_of(f)
    good, bad = _values(f"{sec}.{name}", f)
    key = f"{sec}.{name}"
    if not spec.factor:
        with pytest.raises(S.SettingsError, match="pair setting"):
            parse_factor(f"{key}=1,2")
        return
    text = lambda v: str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    low = f.default if f.default != "" else spec.choices[-1]  # "" (a matrix's "same as weight_format") has no text
    factor = parse_factor(f"{key}={text(low)},{text(good)}")
    assert (factor.low, factor.high) == (low, good)
    with pytest.raises(S.SettingsError) as exc:
        parse_factor(f"{key}={text(bad)},{text(good)}")
    with pytest.raises(ConfigError) as toml:
        from_dict({sec: {name: bad}})
    reason = str(toml.value).split(": ", 1)[1]
    assert key in str(exc.value)
    assert reason in str(exc.value) or f"is not a {spec.kind}" in str(exc.value)


def _literals(x) -> set[str]:
    if isinstance(x, float):
        e = f"{x:.0e}"
        return {repr(x), f"{x:g}", e, e.replace("e-0", "e-")}
    return {repr(x)}


OTHER_QUANTITY = {("experiment.widths", "ternq/gradcheck.py"),  # the widths the gradient check runs at
                  ("cs.steps", "ternq/tasks/")}  # a task's sequence length
# Modules allowed to restate a default (none: every default comes from ternq.settings).
LOOP_MODULES: set[str] = set()


def test_each_default_is_written_once():
    """No module restates a setting's default as a keyword default or a field default of the same name."""
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "ternq").rglob("*.py")
               if p.name != "settings.py" and str(p.relative_to(ROOT)) not in LOOP_MODULES}
    found = []
    for key, (_, name, f) in zip(IDS, SETTINGS, strict=True):
        d = f.default
        if d is None or isinstance(d, bool) or d in ("", ()):
            continue
        for lit in _literals(d):
            pattern = re.compile(rf"\b{name}\s*(?::[^=\n]*)?=\s*{re.escape(lit)}(?![\w.])")
            found += [f"{key} = {lit} in {path}" for path, text in sources.items()
                      if pattern.search(text) and not any(key == k and path.startswith(where)
                                                          for k, where in OTHER_QUANTITY)]
    assert not found, "defaults restated: " + "; ".join(found)


def test_lr_min_above_lr_is_refused_from_flags_and_toml(tmp_path, capsys):
    with pytest.raises(ConfigError, match="lr_min"):
        from_dict({"teacher": {"lr": 1e-5}})
    code, _, err = cli(["teacher", "--lr", "1e-5", "--epochs", "1", "-q", "--out", str(tmp_path / "t.npz")], capsys)
    assert code == 2 and "lr_min" in err and not (tmp_path / "t.npz").exists()
    p = tmp_path / "c.toml"
    p.write_text("[teacher]\nlr = 1e-5\nlr_min = 1e-6\n")
    code, _, err = cli(["teacher", "--config", str(p), "--epochs", "1", "-q", "--json", "--out",
                        str(tmp_path / "t.npz")], capsys)
    assert code == 0, err


def test_run_section_reaches_the_factorial(tmp_path, capsys):
    """[run] in a settings file sets what only flags could: the horizon reaches the results."""
    p = tmp_path / "c.toml"
    p.write_text(Path(QUICK).read_text() + "\n[run]\nhorizon = 3\nworkers = 1\n")
    code, _, err = cli(["factorial", "--config", str(p), "-q", "--no-gradcheck", "--out", str(tmp_path / "o"),
                        "--factor", "student.lr=0.003,0.01", "--runs", "2"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["settings"]["run"]["horizon"] == 3 and "workers" not in doc["settings"]["run"]
    assert doc["forecast"]["baselines"]["horizon"]["horizon"] == 3


def test_workers_default_to_one_per_cpu_this_process_may_use(monkeypatch, tmp_path):
    """Unset, workers is the CPUs this process may run on (its affinity, else the machine's count, within a
    container's CPU quota); a value given is kept."""
    import os

    assert S.RunSettings().workers is None
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(S, "CPU_QUOTA", str(quota))  # none yet: this machine's own limit is not the test's
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 5, 7}, raising=False)
    assert S.local_workers(None) == 4 and S.local_workers(3) == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert S.local_workers(None) == 12
    monkeypatch.setattr(os, "cpu_count", lambda: 100_000)
    assert S.local_workers(None) == S.MAX_WORKERS
    for text, n in (("250000 100000\n", 3), ("max 100000\n", S.MAX_WORKERS), ("garbage\n", S.MAX_WORKERS)):
        quota.write_text(text)  # a container limited to 2.5 CPUs gets 3 workers; no limit, or an unreadable one, none
        assert S.local_workers(None) == n


def test_columns_choose_the_data_files_channels(tmp_path):
    """experiment.columns reaches the task every unit is built from (and needs a data file)."""
    from ternq.experiment.plans import plan

    csv = tmp_path / "s.csv"
    csv.write_text("a,b,c\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 3}\n" for i in range(400)))
    s = from_dict({"experiment": {"data": str(csv), "columns": ["c", 0]}})
    task = plan(s).teachers[1, 0].task.make()
    assert (task.n_in, task.n_out) == (2, 2) and s.columns == ("c", 0)
    with pytest.raises(ConfigError, match="experiment.columns"):
        from_dict({"experiment": {"columns": ["c"]}})
