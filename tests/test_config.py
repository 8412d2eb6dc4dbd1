import pytest

from ternq.config import ConfigError, from_dict, load, override, parse_seeds


def test_defaults_are_the_reference_size():
    s = load(None)
    assert s.teacher.epochs == 2000 and s.student.epochs == 1500 and s.widths == (16, 32)
    assert s.student.beta == (1.0, 20.0) and s.student.alpha == (0.3, 0.8) and s.cs.sweeps == 5


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).parent.parent / "configs"
    files = sorted(root.glob("*.toml"))
    assert {"default.toml", "quick.toml"} <= {f.name for f in files}
    from ternq.frontier import load_frontier

    for f in files:
        if "\n[frontier]" in "\n" + f.read_text():
            load_frontier(f)
        elif not f.name.startswith("sweep"):
            load(f)
    assert load(root / "default.toml") == load(None)


@pytest.mark.parametrize("data,needle", [
    ({"teacher": {"epoch": 3}}, "teacher.epoch: unknown key"),
    ({"teacher": {"epochs": "many"}}, "teacher.epochs: expected int"),
    ({"teacher": {"epochs": 2.5}}, "teacher.epochs: expected int"),
    ({"student": {"beta": [1.0]}}, "student.beta"),
    ({"student": {"mask": "other"}}, "student.mask"),
    ({"student": {"alpha": [0.3, 1.5]}}, "student.alpha"),
    ({"students": {}}, "students: unknown section"),
    ({"experiment": {"seeds": "a:b"}}, "seeds"),
    ({"experiment": {"widths": [16]}}, "widths"),
    ({"cs": {"sweeps": 0}}, "cs.sweeps"),
    ({"teacher": {"lr": -1.0}}, "teacher.lr"),
])
def test_bad_settings_name_the_key(data, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        from_dict(data)


def test_bad_toml_file(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[teacher\nepochs = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(p)
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "missing.toml")


def test_flags_override_file(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[teacher]\nepochs = 30\nlr = 0.5\n")
    s = override(load(p), teacher__epochs=7, student__mask=None)
    assert s.teacher.epochs == 7 and s.teacher.lr == 0.5 and s.student.mask == "seed"


def test_seed_forms():
    assert parse_seeds("0:3") == (0, 1, 2)
    assert parse_seeds("5") == (0, 1, 2, 3, 4)
    assert parse_seeds([3, 9]) == (3, 9)
    for bad in ("3:1", 0, [1, 1], True, "x"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
