"""Release hygiene: the sdist and wheel build, pass ``twine check``, install and import.

Slow lane (a build takes a few seconds, plus pip's isolated build environment). The wheel is
installed with ``--no-deps`` into a fresh virtual environment that sees this environment's
packages through a ``.pth`` line, so torch and the rest are not downloaded again; the
editable install of the repository is not visible there (its finder is registered by a
``.pth`` file that a path line does not run), so the import is the wheel's.
"""

import re
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import sklcc

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_and_sdist_build_check_install_and_import(tmp_path):
    # tomllib is Python 3.11+; the project supports 3.10.
    version = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(),
                        re.MULTILINE).group(1)
    assert sklcc.__version__ == version, "pyproject.toml and sklcc.__version__ disagree"

    dist = tmp_path / "dist"
    # The wheel is built from the sdist, so this also checks that the sdist is complete.
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel = dist / f"sklcc-{version}-py3-none-any.whl"
    sdist = dist / f"sklcc-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel),
                            str(sdist)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    names = zipfile.ZipFile(wheel).namelist()
    for module in ["sklcc/__init__.py", "sklcc/images/__init__.py", "sklcc/tuning/__init__.py",
                   "sklcc/tuning/__main__.py"]:
        assert module in names
    assert not any(name.startswith(("tests/", "benchmarks/", "docs/")) for name in names)
    assert f"sklcc-{version}.dist-info/licenses/LICENSE" in names
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"README.md", "LICENSE", "pyproject.toml", "sklcc/__init__.py"} <= members

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "--quiet", str(wheel)], check=True,
                   capture_output=True)
    probe = ("import sklcc, sklcc.images, sklcc.tuning, sklcc.evaluation; "
             "from sklcc import LCCClassifier; from importlib.metadata import version; "
             "print(sklcc.__version__, version('sklcc'), sklcc.__file__)")
    out = subprocess.run([str(python), "-c", probe], check=True, capture_output=True,
                         text=True, cwd=tmp_path).stdout.split()
    assert out[:2] == [version, version]
    assert Path(out[2]).is_relative_to(env), f"imported {out[2]}, not the installed wheel"
