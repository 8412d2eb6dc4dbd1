import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def invoke(argv, capsys):
    """Run the ternq CLI in-process; return (exit code, stdout, stderr)."""
    import pytest

    from ternq.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


QUICK = str(Path(__file__).parent.parent / "configs" / "quick.toml")


def one_line_exit_2(argv, capsys, needle=""):
    """Run the CLI; assert it failed as bad input must: exit 2, one 'Error:' line, no traceback."""
    code, out, err = invoke(argv, capsys)
    assert code == 2, (code, out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error:"), err
    assert "Traceback" not in err and "Internal error" not in err
    assert needle in err, err
    return err
