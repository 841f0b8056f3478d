import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_code_is_ruff_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "sklcc", "tests", "benchmarks", "examples"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_top_level_exports_resolve():
    import sklcc

    for name in sklcc.__all__:
        obj = getattr(sklcc, name)
        assert obj.__name__ == name and obj.__module__.startswith("sklcc.")
        assert name in getattr(sys.modules[obj.__module__], "__all__", [name])
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = sklcc.nope
