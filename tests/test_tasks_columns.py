"""Data files' columns: selection by header name or 0-based index, header names as channel names, and the
one-line refusals (a text column, a header of the wrong width, a selection that names nothing)."""

import numpy as np
import pytest
from conftest import invoke as run

from ternq.tasks import from_file, get_task, task_of

T = np.arange(200) * 0.1
TEMP, HUM = np.sin(T), np.cos(1.3 * T)


def _pairs():
    return [(f"{a:.6f}", f"{b:.6f}") for a, b in zip(TEMP, HUM, strict=True)]


def _write(path, header, rows):
    path.write_text(header + "".join(",".join(r) + "\n" for r in rows))
    return path


@pytest.fixture
def stamped(tmp_path):
    """A CSV with a timestamp column first, then temp and hum."""
    rows = [(f"2024-03-01T{i % 24:02d}:00:00", *pair) for i, pair in enumerate(_pairs())]
    return _write(tmp_path / "ts.csv", "time,temp,hum\n", rows)


@pytest.fixture
def plain(tmp_path):
    """The same numbers with only the two numeric columns, no header."""
    return _write(tmp_path / "plain.csv", "", _pairs())


def test_a_timestamp_column_is_refused_naming_it_and_the_columns_to_choose(stamped):
    with pytest.raises(ValueError) as exc:
        from_file(stamped)
    msg = str(exc.value)
    assert "column 0 ('time')" in msg and "'2024-03-01T00:00:00'" in msg
    assert 'columns = ["temp", "hum"]' in msg and "--columns temp,hum" in msg and "\n" not in msg


def test_a_timestamp_column_through_the_cli_is_one_line_exit_2(stamped, tmp_path, capsys):
    out = tmp_path / "t.npz"
    code, _, err = run(["teacher", "--hidden", "2", "--epochs", "2", "--quiet", "--out", str(out),
                        "--data", str(stamped)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'time'" in err and "--columns temp,hum" in err, err
    assert "Traceback" not in err and not out.exists()


def test_columns_flag_selects_the_channels_and_the_model_keeps_them(stamped, plain, tmp_path, capsys):
    """--columns on the command line trains on exactly the numbers of a file of those columns."""
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    code, _, err = run(["teacher", "--hidden", "2", "--epochs", "3", "--quiet", "--out", str(a),
                        "--data", str(stamped), "--columns", "temp,2"], capsys)
    assert code == 0, err
    code, _, err = run(["teacher", "--hidden", "2", "--epochs", "3", "--quiet", "--out", str(b),
                        "--data", str(plain)], capsys)
    assert code == 0, err
    from ternq.model import Model

    assert np.array_equal(Model.load(a).theta, Model.load(b).theta)
    assert task_of(Model.load(a).meta["task"]).channels == ["temp", "hum"]


@pytest.mark.parametrize("args, needle", [(["--columns", "temp"], "give --data too"),
                                          (["--data", "STAMPED", "--columns", "nope"], "no column 'nope'"),
                                          (["--data", "STAMPED", "--columns", ""], "columns")])
def test_columns_flag_refusals_are_one_line(stamped, capsys, args, needle):
    args = [str(stamped) if a == "STAMPED" else a for a in args]
    code, _, err = run(["teacher", "--hidden", "2", "--epochs", "2", "--quiet", *args], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("columns", [["temp", "hum"], [1, 2], ["temp", 2], (np.int64(1), "hum")])
def test_selection_by_name_or_index_reads_the_same_numbers_as_a_file_of_those_columns(stamped, plain, columns):
    task, want = from_file(stamped, columns), from_file(plain)
    assert task.data.tobytes() == want.data.tobytes() and task.n_in == task.n_out == 2
    assert task.channels == ["temp", "hum"] and want.channels == ["channel 0", "channel 1"]
    assert task.describe()["columns"] == [c if isinstance(c, str) else int(c) for c in columns]


def test_selection_order_is_the_channel_order(stamped):
    a, b = from_file(stamped, ["temp", "hum"]), from_file(stamped, ["hum", "temp"])
    assert b.channels == ["hum", "temp"]
    assert b.data.tobytes() == np.ascontiguousarray(a.data[:, ::-1]).tobytes()
    one = from_file(stamped, ["hum"])
    assert one.n_in == 1 and one.data[:, 0].tobytes() == a.data[:, 1].tobytes()


def test_header_names_are_the_channels_without_a_selection(tmp_path):
    path = _write(tmp_path / "h.csv", "\ufefftemp, hum\n", _pairs())
    assert from_file(path).channels == ["temp", "hum"]  # the byte-order mark and spaces are not part of a name
    blank = _write(tmp_path / "b.csv", ",hum\n", _pairs())
    assert from_file(blank).channels == ["channel 0", "hum"]


def test_default_description_has_no_columns_key(plain):
    assert "columns" not in from_file(plain).describe()  # models trained without a selection keep their digest


@pytest.mark.parametrize("name", ["sine", "multisine", "lorenz", "ecg"])
def test_built_in_tasks_name_their_channels_by_number(name):
    task = get_task(name)
    assert task.channels == [f"channel {k}" for k in range(task.n_out)]


def test_task_of_reapplies_the_selection(stamped):
    task = from_file(stamped, ["hum", "temp"])
    again = task_of(task.describe())
    assert again.channels == ["hum", "temp"] and again.data.tobytes() == task.data.tobytes()


@pytest.mark.parametrize("columns,needle", [
    (["nope"], "has no column 'nope'; its header names 'time', 'temp', 'hum'"),
    ([3], "ts.csv has 3 columns, 0 .. 2"),
    ([-1], "column index -1 is out of range"),
    ([1, "temp"], "is selected twice"),
    ([], "columns is empty"),
    ("temp", "must be a list"),
    ([True], "columns holds True"),
    ([1.0], "columns holds 1.0"),
    ([0, 1], "column 0 ('time') holds text"),
])
def test_bad_selections_are_refused_in_one_line(stamped, columns, needle):
    with pytest.raises(ValueError) as exc:
        from_file(stamped, columns)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_names_need_a_header(plain, tmp_path):
    with pytest.raises(ValueError, match="does not name its columns"):
        from_file(plain, ["temp"])
    np.save(tmp_path / "a.npy", np.stack([TEMP, HUM], 1))
    with pytest.raises(ValueError, match="does not name its columns"):
        from_file(tmp_path / "a.npy", ["temp"])
    npy = from_file(tmp_path / "a.npy", [1])
    assert npy.n_in == 1 and npy.channels == ["channel 0"]


def test_a_text_column_without_a_header_is_suggested_by_index(tmp_path):
    path = _write(tmp_path / "n.csv", "", [("mon", *pair) for pair in _pairs()])
    with pytest.raises(ValueError, match=r"column 0 holds text such as 'mon' \(line 1\).*columns = \[1, 2\]"):
        from_file(path)
    assert from_file(path, [1, 2]).n_in == 2


def test_a_stray_cell_in_a_numeric_column_names_its_line(tmp_path):
    rows = _pairs()
    rows[5] = ("abc", rows[5][1])
    with pytest.raises(ValueError, match="line 6, column 1: 'abc' is not a number"):
        from_file(_write(tmp_path / "s.csv", "", rows))


def test_a_header_of_another_width_is_refused(tmp_path, capsys):
    path = _write(tmp_path / "w.csv", "a,b,c\n", _pairs())
    with pytest.raises(ValueError, match=r"its header \(line 1\) names 3 columns, the first data row has 2"):
        from_file(path)
    code, _, err = run(["gradcheck", "--hidden", "2", "--data", str(path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "header" in err, err


def test_normalisation_errors_name_the_channel(tmp_path):
    rows = [(f"{a:.6f}", "3.0") for a in TEMP]
    with pytest.raises(ValueError, match=r"channel 1 \('hum'\), is constant"):
        from_file(_write(tmp_path / "c.csv", "temp,hum\n", rows))
