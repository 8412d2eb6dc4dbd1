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
