"""The documentation site builds with no warning, every public name has its page, and the
gallery ran.

Slow lane: the build executes the gallery (about 1.5 minutes on 2 cores). It runs exactly the
README's command plus ``-E`` (no cached environment) and ``-n`` is set in ``docs/conf.py``
(every reference must resolve), with ``--keep-going`` so a failure lists every warning.
"""

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

#: Examples that must have run, each with the figure it draws (None: prints only).
EXECUTED = {"quickstart": None, "pipeline_grid_search": None, "search_with_optuna": 1,
            "fine_tune_backbone": 1, "does_lcc_help": None}


@pytest.mark.slow
def test_site_builds_without_warnings(tmp_path):
    # Build outputs kept in docs/ (gitignored): without them the gallery runs again rather
    # than reusing the outputs of a previous build.
    for folder in ("auto_examples", "generated"):
        shutil.rmtree(DOCS / folder, ignore_errors=True)
    out = tmp_path / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-b", "html", str(DOCS),
         str(out)], capture_output=True, text=True, cwd=REPO)
    warnings = [line for line in build.stderr.splitlines() if "WARNING" in line
                or "ERROR" in line]
    assert build.returncode == 0, "\n".join(warnings) or build.stderr[-4000:]

    # Every public name of every public module has a page (written from __all__).
    sys.path.insert(0, str(DOCS / "tools"))
    try:
        api_pages = importlib.import_module("api_pages")
    finally:
        sys.path.remove(str(DOCS / "tools"))
    pages = {path.stem for path in (out / "generated").glob("*.html")}
    missing = []
    for module_name in api_pages.public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not any(page.rsplit(".", 1)[-1] == name and _same(page, obj) for page in pages):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"no API page for {missing}"
    # Parameters are rendered (numpydoc's field list), on the main estimator at least.
    estimator = (out / "generated" / "sklcc.LCCClassifier.html").read_text()
    for parameter in ["lcc_layers", "lcc_weight", "n_neighbors", "louvain_resolution"]:
        assert f"<strong>{parameter}</strong>" in estimator, parameter

    gallery = out / "auto_examples"
    for example, figures in EXECUTED.items():
        page = (gallery / f"{example}.html").read_text()
        assert "sphx-glr-script-out" in page, f"{example} shows no output: it did not run"
        if figures:
            # Sphinx copies the gallery's figures to _images/ and the page shows them.
            image = f"sphx_glr_{example}_001.png"
            assert (out / "_images" / image).is_file() and image in page, example
    assert "sphx-glr-script-out" not in (gallery / "distributed.html").read_text()


def _same(page: str, obj) -> bool:
    """Whether the page's dotted name imports to ``obj``."""
    module_name, _, name = page.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name) is obj
    except (ImportError, AttributeError):
        return False


def test_stale_api_stubs_are_removed(tmp_path):
    """A stub left by a renamed name would fail the build; conf.py prunes it before the build."""
    sys.path.insert(0, str(DOCS / "tools"))
    try:
        api_pages = importlib.import_module("api_pages")
    finally:
        sys.path.remove(str(DOCS / "tools"))
    for name in ["sklcc.LCCClassifier", "sklcc.penalty.FitState", "sklcc.base.FitState"]:
        (tmp_path / f"{name}.rst").write_text(name)
    (tmp_path / "notes.txt").write_text("not a stub")
    removed = api_pages.remove_stale_stubs(tmp_path, ["sklcc.LCCClassifier", "sklcc.base.FitState"])
    assert removed == ["sklcc.penalty.FitState"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "sklcc.LCCClassifier.rst", "sklcc.base.FitState.rst"]
    assert "remove_stale_stubs" in (DOCS / "conf.py").read_text()
