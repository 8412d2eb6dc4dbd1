"""The command line: results, one-line errors with exit code 2, nothing half-written."""

import json

import numpy as np
import pytest
from conftest import invoke as run

from ternq.cli import main
from ternq.model import FORMAT_VERSION, Model


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "t.npz"
    with pytest.raises(SystemExit) as exc:
        main(["teacher", "--hidden", "8", "--epochs", "50", "--quiet", "--out", str(path)])
    assert exc.value.code == 0
    return path


def test_teacher_json_and_saved_model(tmp_path, capsys):
    out = tmp_path / "t.npz"
    code, stdout, _ = run(["teacher", "--hidden", "8", "--epochs", "40", "--quiet", "--json", "--out", str(out)],
                          capsys)
    assert code == 0
    res = json.loads(stdout)
    model = Model.load(out)
    assert model.hidden == 8 and model.meta["seed"] == 0 and model.meta["config"]["epochs"] == 40
    assert res["eval_mse"] == model.meta["figures"]["eval_mse"] > 0
    assert "ref_mse" in res


def test_gradcheck_exit_zero_and_table(capsys):
    code, stdout, _ = run(["gradcheck", "--hidden", "4"], capsys)
    assert code == 0
    assert "W_gate" in stdout and "PASS" in stdout


@pytest.mark.parametrize("argv,needle", [
    (["teacher", "--hidden", "0"], "--hidden"),
    (["teacher", "--hidden", "-3"], "--hidden"),
    (["teacher", "--epochs", "0"], "--epochs"),
    (["teacher", "--lr", "nan"], "--lr"),
    (["teacher", "--lr", "inf"], "--lr"),
    (["teacher", "--lr", "-1e-3"], "--lr"),
    (["teacher", "--lr", "0"], "--lr"),
    (["teacher", "--task", "nope"], "unknown task"),
    (["teacher", "--out", "/nonexistent-dir/x.npz"], "does not exist"),
    (["teacher", "--bogus"], "bogus"),
])
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    code, stdout, err = run(argv, capsys)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unwritable_output_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    import os
    if os.access(ro, os.W_OK):  # root ignores permissions
        pytest.skip("running as root: permissions are not enforced")
    code, _, err = run(["teacher", "--out", str(ro / "x.npz")], capsys)
    assert code == 2 and "not writable" in err


def test_divergence_is_a_clear_message(tmp_path, capsys):
    out = tmp_path / "t.npz"
    code, _, err = run(["teacher", "--hidden", "4", "--epochs", "30", "--lr", "1e30", "--quiet", "--out", str(out)],
                       capsys)
    assert code == 1 and "epoch" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"not a zip at all", None, "version", "kind"])
def test_bad_model_files_are_refused(tmp_path, content, teacher_file):
    from ternq.model import ModelFileError

    path = tmp_path / "m.npz"
    if content is None:
        path = tmp_path / "missing.npz"
    elif content == "version":
        m = Model.load(teacher_file)
        m.save(path)
        with np.load(path) as z:
            header = json.loads(str(z["header"]))
        header["version"] = FORMAT_VERSION + 1
        np.savez(path, theta=m.theta, header=np.array(json.dumps(header)))
    elif content == "kind":
        m = Model.load(teacher_file)
        np.savez(path, theta=m.theta[:-3], header=np.array(json.dumps(
            {"format": "ternq-model", "version": FORMAT_VERSION, "kind": "teacher", "n_in": 1, "hidden": 8,
             "n_out": 1})))
    else:
        path.write_bytes(content)
    with pytest.raises(ModelFileError):
        Model.load(path)


def test_save_is_atomic(tmp_path, teacher_file, monkeypatch):
    """A failure while writing leaves the old file intact and no temporary behind."""
    m = Model.load(teacher_file)
    path = tmp_path / "m.npz"
    m.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        m.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_student_file_carries_its_trits(tmp_path, teacher_file):
    from ternq.model import student_from

    s = student_from(Model.load(teacher_file))
    path = tmp_path / "s.npz"
    s.save(path)
    with np.load(path) as z:
        trits = z["trits"]
    assert trits.dtype == np.int8 and set(np.unique(trits)) <= {-1, 0, 1}
    np.testing.assert_array_equal(trits, s.trits())
    assert Model.load(path).theta.tobytes() == s.theta.tobytes()


def test_written_files_get_the_usual_permissions(tmp_path, teacher_file):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    path = tmp_path / "m.npz"
    Model.load(teacher_file).save(path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


class _Exited(Exception):
    pass


@pytest.mark.parametrize("argv,code", [(["--version"], 0), (["teacher", "--hidden", "0"], 2)])
def test_the_program_leaves_at_once_after_using_the_gpu(monkeypatch, capsys, argv, code):
    """The console entry: in a process that used the GPU, os._exit with main's exit code once the output is
    flushed (skipping the interpreter's teardown of numba-cuda); otherwise main's SystemExit as it is."""
    import os
    import sys

    from ternq import cli, gpu

    left = []

    def leave(status):
        left.append((status, capsys.readouterr()))
        raise _Exited

    monkeypatch.setattr(sys, "argv", ["ternq", *argv])
    monkeypatch.setattr(os, "_exit", leave)
    with pytest.raises(SystemExit) as exc:
        cli.console()
    assert exc.value.code == code and not left
    capsys.readouterr()
    monkeypatch.setattr(gpu, "used", lambda: True)
    with pytest.raises(_Exited):
        cli.console()
    (status, out), = left
    assert status == code and (out.out if code == 0 else out.err).strip()


def test_leaving_after_the_gpu_survives_a_closed_output(monkeypatch):
    """A reader that went away (``ternq ... | head``) leaves stdout unflushable: the exit still happens, with
    main's code and no traceback."""
    import io
    import os
    import sys

    from ternq import cli, gpu

    class Gone(io.StringIO):
        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    def main():  # main's own handling of the output is not the point here: it ended with code 0
        raise SystemExit(0)

    left = []
    monkeypatch.setattr(cli, "main", main)
    monkeypatch.setattr(sys, "stdout", Gone())
    monkeypatch.setattr(gpu, "used", lambda: True)
    monkeypatch.setattr(os, "_exit", lambda status: left.append(status))
    cli.console()
    assert left == [0]


def test_a_closed_stdout_prints_nothing_and_the_command_still_runs(tmp_path):
    """Started with stdout closed (``ternq ... >&-``), a command writes its files, says nothing and exits 0."""
    import os
    import subprocess
    import sys

    out = tmp_path / "t.npz"
    proc = subprocess.run([sys.executable, "-c", "from ternq.cli import main; main()", "teacher", "--hidden", "4",
                           "--epochs", "3", "--out", str(out)], preexec_fn=lambda: os.close(1),
                          stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and out.stat().st_size > 0


def test_a_reader_that_leaves_ends_the_command_quietly(monkeypatch, capsys):
    """``ternq ... | head``: once the reader is gone, writing the output fails; the command ends with exit 1 and
    says nothing (no "Internal error", no traceback)."""
    import io
    import sys

    class Gone(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

        flush = write

    monkeypatch.setattr(sys, "stdout", Gone())
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "--hidden", "4", "--json"])
    assert exc.value.code == 1 and not capsys.readouterr().err
