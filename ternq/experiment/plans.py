"""Settings -> a design -> the units of work.

A *run* of a design is one recipe: a width, the teacher's and the student's
settings. The notes' design (no factor given: the design notes the project
follows) is the 2^3 of shaped gradient (A), trajectory distillation (B) and
width (C), plus two coordinate-search rows; it is data (:data:`NOTES_WORDS` names
its units and results), not a branch.
Any other design names its factors by settings keys (``student.mask``,
``student.lr``, ``teacher.epochs``, ``hidden``, ...) with two levels each; its
base recipe is the notes' config 1 (no shaping, no distillation, the narrow
width) with the settings file's values.

For every seed each run gets a teacher (one per width and teacher settings:
shared by the runs that agree on them) and a student; units equal in content
share one digest and run once.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

from ..settings import (
    MAX_HIDDEN,
    RunSettings,
    SearchSettings,
    SettingsError,
    Spec,
    StudentSettings,
    TeacherSettings,
    check,
    coerce,
    setting,
    spec_of,
)
from ..tasks import TASK_HELP, TASKS
from ..train import StudentConfig, TeacherConfig
from .effects import LETTERS, Design, DesignError, choose
from .units import TaskSpec, Unit

WIDTH = "hidden"
WIDTH_SPEC = Spec("int", "The width of teacher and student.", lo=1, hi=MAX_HIDDEN)


@dataclass(frozen=True)
class Factor:
    """A two-level factor: a settings key and its low and high levels."""

    key: str
    low: object
    high: object
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.key


def _spec(key: str) -> Spec:
    """The :class:`ternq.settings.Spec` of a factor key; :class:`SettingsError` if no such key or not two-level."""
    if key == WIDTH:
        return WIDTH_SPEC
    sec, _, attr = key.partition(".")
    blocks = {"teacher": TeacherSettings, "student": StudentSettings}
    if sec not in blocks or not attr:
        raise SettingsError(key, "unknown factor key (a factor is 'hidden', 'teacher.KEY' or 'student.KEY')")
    if attr == "hidden":
        raise SettingsError(key, "the width is the factor 'hidden' (teacher and student share it)")
    known = {f.name: spec_of(f) for f in fields(blocks[sec])}
    if attr not in known:
        raise SettingsError(key, f"unknown key (known: {', '.join(sorted(known))})")
    if not known[attr].factor:
        raise SettingsError(key, "a pair setting cannot be a two-level factor")
    return known[attr]


def parse_level(key: str, value):
    """A level (from TOML, or text from the command line) read as the setting reads it."""
    spec = _spec(key)
    try:
        return coerce(key, value, spec)
    except SettingsError as exc:
        why = str(exc).split(": ", 1)[1]
        if why.startswith("expected"):
            raise SettingsError(key, f"level {value!r} is not a {spec.kind}") from None
        raise SettingsError(key, f"level {value!r}: {why}") from None


def make_factor(key: str, low, high, label: str = "") -> Factor:
    """A checked factor: the key exists, the levels have its type and differ."""
    lo, hi = parse_level(key, low), parse_level(key, high)
    if lo == hi:
        raise SettingsError(key, f"the two levels are equal ({lo!r})")
    return Factor(key, lo, hi, label)


def parse_factor(text: str) -> Factor:
    """``KEY=LOW,HIGH`` (the command line's ``--factor``) as a :class:`Factor`."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*=\s*([^,]+?)\s*,\s*([^,]+?)\s*", text)
    if not m:
        raise SettingsError("factor", f"{text!r} is not KEY=LOW,HIGH (e.g. student.lr=0.003,0.01)")
    return make_factor(*m.groups())


NOTES_LABELS = {"A": "shaped gradient", "B": "trajectory distillation", "C": "width",
                "AB": "shaped x distill", "AC": "shaped x width", "BC": "distill x width",
                "ABC": "shaped x distill x width"}


@dataclass(frozen=True)
class Words:
    """How a design's units and results are named: the notes' words or a general design's."""

    name: str  # results.json's design.name
    row: str  # a row's number field, and its label: "config 3", "run 3"
    rows: str  # the rows' key in each seed's results
    table: str  # the rows' key in the results document
    student_key: str  # a student unit's key: fields seed, index, hidden, S ("S"/"s": shaped), D ("D"/"d": distill)
    teacher: str  # a teacher's name in the results: fields hidden, key (its unit key without the seed)
    teacher_label: str  # a teacher's label in forecast tables and plots: field name
    order: int  # the highest interaction estimated
    labels: dict  # effect labels ({}: the factors' names joined)
    cs: bool  # the coordinate-search rows (PTQ+CS from the narrow teacher, 1+CS refining config 1)
    predictions: bool  # the notes' five predictions
    plots_per_width: bool  # predictions and learning curves, one plot per width


NOTES_WORDS = Words("notes", "config", "configs", "matrix", "s{seed}/student-{S}{D}-h{hidden}", "{hidden}",
                    "teacher H={name}", 3, NOTES_LABELS, cs=True, predictions=True, plots_per_width=True)
GENERAL_WORDS = Words("general", "run", "runs", "runs", "s{seed}/run{index:02d}-h{hidden}", "{key}", "{name}", 2, {},
                      cs=False, predictions=False, plots_per_width=False)


@dataclass(frozen=True)
class DesignSettings:
    """The ``[design]`` section: factors (none: the notes' design), an optional run count and generators.

    In TOML::

        [design]
        runs = 16                         # optional
        generators = ["E=ABC", "F=BCD"]   # optional
        [design.factors]                  # letters A, B, ... in this order
        shaped = { key = "student.shaped", levels = [false, true] }
        lr = { key = "student.lr", levels = [0.003, 0.01] }
    """

    factors: tuple[Factor, ...] = ()
    runs: int | None = None
    generators: tuple[str, ...] = ()
    words: Words = field(default=GENERAL_WORDS, compare=False)  # how its units and results are named

    @classmethod
    def from_dict(cls, body: dict) -> DesignSettings:
        """From a TOML table; :class:`SettingsError` naming the key on a mistake."""
        for key in body:
            if key not in ("factors", "runs", "generators"):
                raise SettingsError(key, "unknown key (known: factors, generators, runs)")
        raw = body.get("factors", {})
        if not isinstance(raw, dict):
            raise SettingsError("factors", "expected a table of name = { key = ..., levels = [low, high] }")
        factors = []
        for label, spec in raw.items():
            if not (isinstance(spec, dict) and set(spec) == {"key", "levels"} and isinstance(spec["key"], str)
                    and isinstance(spec["levels"], list) and len(spec["levels"]) == 2):
                raise SettingsError(f"factors.{label}", "expected { key = \"section.key\", levels = [low, high] }")
            try:
                factors.append(make_factor(spec["key"], *spec["levels"], label=label))
            except SettingsError as exc:
                raise SettingsError(f"factors.{label}", str(exc)) from None
        runs = body.get("runs")
        if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int)):
            raise SettingsError("runs", f"expected an integer, got {runs!r}")
        gens = body.get("generators", [])
        if not (isinstance(gens, list) and all(isinstance(g, str) for g in gens)):
            raise SettingsError("generators", "expected a list of strings such as \"E=ABC\"")
        return cls(tuple(factors), runs, tuple(g.replace(" ", "") for g in gens))

    def design(self) -> Design:
        """The design of these factors (:func:`ternq.experiment.effects.choose`)."""
        try:
            return choose(len(self.factors), self.runs, self.generators)
        except DesignError as exc:
            raise SettingsError("factors" if self.runs is None else "runs", str(exc)) from None

    def validate(self, settings: ExperimentSettings | None = None) -> None:
        """Raise :class:`SettingsError` for repeated keys, an impossible design, or runs whose settings fail."""
        if not self.factors:
            if self.runs is not None or self.generators:
                raise SettingsError("factors", "runs and generators need factors")
            return
        keys = [f.key for f in self.factors]
        if len(set(keys)) != len(keys):
            raise SettingsError("factors", "a key is given twice")
        self.design()
        if settings is not None:
            for run in runs_of(settings):
                try:
                    run.teacher.validate()
                    run.student.validate()
                except SettingsError as exc:
                    raise SettingsError("factors", f"run {run.index}: {exc}") from None

    def to_dict(self) -> dict:
        return {"factors": [{"letter": LETTERS[i], "key": f.key, "label": f.name, "levels": [f.low, f.high]}
                            for i, f in enumerate(self.factors)],
                "runs": self.runs, "generators": list(self.generators)}


@dataclass(frozen=True)
class ExperimentSettings:
    """Everything an experiment reads: seeds, widths, task and one block per section."""

    seeds: tuple[int, ...] = setting((0,), "Seeds: a count N (0..N-1), a list, or a range A:B.", kind="seeds",
                                     flag="--seeds")
    widths: tuple[int, int] = setting((16, 32), "The narrow and the wide width (factor C of the notes' design).",
                                      kind="widths")
    task: str = setting("sine", f"Task: {TASK_HELP}.", flag="--task")
    data: str = setting("", "A CSV or .npy series (replaces task when set).", flag="--data")
    columns: tuple = setting((), "The data file's columns to use, by name or index from 0 [all].",
                             kind="columns")
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    student: StudentSettings = field(default_factory=StudentSettings)
    cs: SearchSettings = field(default_factory=SearchSettings)
    run: RunSettings = field(default_factory=RunSettings)
    design: DesignSettings = field(default_factory=DesignSettings)

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first setting (``section.key``) that cannot be used."""
        try:
            check(self)
        except SettingsError as exc:
            raise SettingsError(f"experiment.{exc.key}", str(exc).split(": ", 1)[1]) from None
        if self.widths[0] == self.widths[1] or min(self.widths) <= 0:
            raise SettingsError("experiment.widths", f"two different positive widths, not {list(self.widths)}")
        if self.widths[0] > self.widths[1]:  # else the width effect (wide minus narrow) would change sign
            raise SettingsError("experiment.widths", f"give the narrow width first, [{self.widths[1]}, "
                                f"{self.widths[0]}], not {list(self.widths)}")
        if self.widths[1] > MAX_HIDDEN:
            raise SettingsError("experiment.widths",
                                f"{self.widths[1]} is more than the most allowed, {MAX_HIDDEN:,}")
        if not self.data and self.task not in TASKS:
            raise SettingsError("experiment.task",
                                f"unknown task {self.task!r}; choose from {', '.join(sorted(TASKS))}")
        if self.columns and not self.data:
            raise SettingsError("experiment.columns", "columns choose from a data file; give data too")
        for sec in SECTIONS:
            try:
                block = getattr(self, sec)
                block.validate(self) if sec == "design" else block.validate()
            except SettingsError as exc:
                raise SettingsError(f"{sec}.{exc.key}", str(exc).split(": ", 1)[1]) from None

    def to_dict(self) -> dict:
        """JSON-ready (tuples as lists), as written in results.json."""
        d = asdict(self)
        del d["run"]["workers"]  # how fast, not what: results are identical for any value
        if not self.design.factors:
            del d["design"]  # the notes' design is named by the results' own "design" entry
        else:
            d["design"] = self.design.to_dict()
        return _lists(d)


def _lists(x):
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


SECTIONS = [f.name for f in fields(ExperimentSettings) if f.default_factory is not MISSING]  # the blocks
def notes_design(settings: ExperimentSettings) -> DesignSettings:
    """The notes' 2^3: shaped gradient (A), trajectory distillation (B), width (C)."""
    lo, hi = settings.widths
    return DesignSettings((Factor("student.shaped", False, True, "shaped gradient"),
                           Factor("student.distill", False, True, "trajectory distillation"),
                           Factor(WIDTH, lo, hi, "width")), words=NOTES_WORDS)


def design_of(settings: ExperimentSettings) -> DesignSettings:
    """The design the settings run: their own factors, or the notes' design when they name none."""
    return settings.design if settings.design.factors else notes_design(settings)


@dataclass(frozen=True)
class Run:
    """One recipe of a design: its levels (-1/+1 per factor) and the teacher and student it trains."""

    index: int  # 1-based, design order (the config number of the notes' design)
    levels: tuple[int, ...]
    teacher: TeacherConfig
    student: StudentConfig


def _apply(run_teacher: TeacherConfig, run_student: StudentConfig, factor: Factor, value):
    if factor.key == WIDTH:
        return replace(run_teacher, hidden=value), replace(run_student, hidden=value)
    sec, _, attr = factor.key.partition(".")
    if sec == "teacher":
        return replace(run_teacher, **{attr: value}), run_student
    return run_teacher, replace(run_student, **{attr: value})


def runs_of(settings: ExperimentSettings) -> list[Run]:
    """Every run of the settings' design (the notes' when it names no factor), in design order."""
    spec = design_of(settings)
    matrix = spec.design().matrix()
    base_t = TeacherConfig(hidden=settings.widths[0], **vars(settings.teacher))
    base_s = StudentConfig(hidden=settings.widths[0], **vars(settings.student))
    out = []
    for i, row in enumerate(matrix):
        t, s = base_t, base_s
        for f, level in zip(spec.factors, row, strict=True):
            t, s = _apply(t, s, f, f.high if level > 0 else f.low)
        out.append(Run(i + 1, tuple(int(x) for x in row), t, s))
    return out


@dataclass
class Plan:
    """The units of an experiment and where each figure comes from.

    ``students[(run, seed)]`` and ``teachers[(run, seed)]`` are the units of a
    run, ``references[(run, seed)]`` its equal-budget float (:func:`reference_config`; none when
    ``settings.run.float_reference`` is off); ``cs[(source, seed)]`` the coordinate-search rows of a
    design that has them
    (source "teacher": PTQ+CS; "config1": CS refining config 1).
    """

    settings: ExperimentSettings
    factors: tuple[Factor, ...]
    design: Design
    runs: list[Run]
    words: Words
    students: dict[tuple[int, int], Unit] = field(default_factory=dict)
    teachers: dict[tuple[int, int], Unit] = field(default_factory=dict)
    cs: dict[tuple[str, int], Unit] = field(default_factory=dict)
    references: dict[tuple[int, int], Unit] = field(default_factory=dict)

    @property
    def units(self) -> list[Unit]:
        """Every unit once (by digest), dependencies before dependants."""
        out, seen = [], set()

        def add(u: Unit) -> None:
            for d in u.deps:
                add(d)
            if u.digest not in seen:
                seen.add(u.digest)
                out.append(u)

        for seed in self.settings.seeds:
            for run in self.runs:
                add(self.teachers[run.index, seed])
            for run in self.runs:
                add(self.students[run.index, seed])
            for run in self.runs:
                if (run.index, seed) in self.references:
                    add(self.references[run.index, seed])
            for source in ("teacher", "config1"):
                if (source, seed) in self.cs:
                    add(self.cs[source, seed])
        return out


def reference_config(teacher: TeacherConfig, student: StudentConfig) -> TeacherConfig:
    """The equal-budget float reference of a run: the teacher's optimiser settings at the student's width,
    trained for the student's whole budget (main epochs and fine-tune) with the student's schedule kind.

    Its seed streams are the teacher's, so where the budgets and schedules agree it is the teacher
    itself (one unit, one digest).
    """
    # post-training quantization's budget is the float it quantizes and its fine-tune
    epochs = student.total_epochs + (teacher.epochs if student.ptq else 0)
    return replace(teacher, hidden=student.hidden, epochs=epochs, schedule=student.schedule)


def plan(settings: ExperimentSettings) -> Plan:
    """The plan of ``settings``: its design's runs for every seed (and the CS rows where the design has them)."""
    spec = design_of(settings)
    words = spec.words
    runs = runs_of(settings)
    task = TaskSpec.of(settings)
    base_teacher = TeacherConfig(hidden=0, **vars(settings.teacher))
    p = Plan(settings, spec.factors, spec.design(), runs, words)
    if words.cs and any(run.student.weight_format != "ternary" for run in runs):
        raise SettingsError("weight_format", "this design's coordinate-search rows refine ternary students; "
                            "run other weight formats in a design without them")
    for seed in settings.seeds:
        for run in runs:
            t = run.teacher
            key = f"s{seed}/teacher-h{t.hidden}"
            if replace(t, hidden=0) != base_teacher:  # runs that vary the teacher's settings
                key += "-" + "-".join(f"{k}{getattr(t, k)}" for k in vars(t)
                                      if k != "hidden" and getattr(t, k) != getattr(base_teacher, k))
            teacher = Unit("teacher", key, seed, task, t)
            p.teachers[run.index, seed] = teacher
            sk = words.student_key.format(seed=seed, index=run.index, hidden=run.student.hidden,
                                          S="S" if run.student.shaped else "s", D="D" if run.student.distill else "d")
            p.students[run.index, seed] = Unit("student", sk, seed, task, run.student, (teacher,))
            if settings.run.float_reference:
                ref = reference_config(t, run.student)
                p.references[run.index, seed] = Unit("teacher", f"s{seed}/float-h{ref.hidden}-e{ref.epochs}"
                                                     f"-{ref.schedule}", seed, task, ref)
        if words.cs:
            lo = settings.widths[0]
            cs: SearchSettings = settings.cs
            p.cs["teacher", seed] = Unit("cs", f"s{seed}/cs-teacher-h{lo}", seed, task, cs,
                                         (p.teachers[1, seed],), source="teacher")
            p.cs["config1", seed] = Unit("cs", f"s{seed}/cs-config1-h{lo}", seed, task, cs,
                                         (p.students[1, seed],), source="student")
    return p
