"""The README's layout lists the files that exist, and only those."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout() -> str:
    """The code block of the README's "## Layout" section."""
    section = (ROOT / "README.md").read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def _modules(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__"))


def _packages(folder: Path) -> list[str]:
    return sorted(p.parent.name for p in folder.glob("*/__init__.py"))


def test_layout_lists_every_module_and_package():
    block = _layout()
    listed = set(re.findall(r"([\w.]+)\.py\b", block))
    folders = set(re.findall(r"(\w+)/", block))
    words = set(re.findall(r"\w+", block))
    missing = []
    for root in ("sklcc", "benchmarks"):
        missing += [f"{root}/{m}.py" for m in _modules(ROOT / root) if m not in listed]
        for package in _packages(ROOT / root):
            if package not in folders:
                missing.append(f"{root}/{package}/")
            # A package's modules are named in words on its line(s).
            missing += [f"{root}/{package}/{m}.py" for m in _modules(ROOT / root / package)
                        if m not in words]
    assert not missing, f"README.md's layout does not list {missing}"


def test_layout_lists_no_missing_file():
    existing = {p.stem for p in [*ROOT.glob("sklcc/**/*.py"), *ROOT.glob("benchmarks/**/*.py")]}
    stale = sorted(set(re.findall(r"([\w.]+)\.py\b", _layout())) - existing)
    assert not stale, f"README.md's layout lists files that do not exist: {stale}"
