"""numpydoc validation of every public docstring, with the checks scikit-learn enforces.

The public objects are the API reference's (every name in the ``__all__`` of a public module,
see ``docs/tools/api_pages.py``), with the public methods and properties each class defines.
As in scikit-learn's ``sklearn/tests/test_docstrings.py``: every numpydoc check except RT02
(the Returns line may name the value), GL01 and GL02 (blank lines around the summary) and
GL03 (see ``IGNORED``); the extended summary, See Also and Examples sections (ES01, SA01, EX01)
are required of classes only, not of functions or methods (scikit-learn skips them whenever
it validates a method, and it validates functions as methods); properties need no Parameters
section.

GL03 stays unchecked because the house style leaves a blank line before the closing quotes,
which GL03 reports: ruff's pydocstyle rules (``select = ["D"]`` in ``pyproject.toml``) include
D413, which requires a blank line after the last section.
Summary wording (SS02, SS05) and return descriptions (RT03) are checked. The objects in
``KNOWN_FAILING`` still fail a check (documented parameters, Returns sections, summaries); they
are strict xfails, so fixing one fails the test until it leaves the list, and no new object may
join it.
"""

import importlib
import inspect
import sys
from pathlib import Path

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

DOCS_TOOLS = Path(__file__).resolve().parents[1] / "docs" / "tools"
IGNORED = {"RT02", "GL01", "GL02", "GL03"}
#: Required of class docstrings only: skipped for functions and methods, as in scikit-learn.
CLASS_ONLY = {"ES01", "SA01", "EX01"}


def _public_objects():
    sys.path.insert(0, str(DOCS_TOOLS))
    try:
        api_pages = importlib.import_module("api_pages")
    finally:
        sys.path.remove(str(DOCS_TOOLS))
    seen = {}
    for module_name in api_pages.public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isroutine(obj)) and id(obj) not in seen:
                seen[id(obj)] = (f"{obj.__module__}.{obj.__qualname__}", obj)
    return sorted(seen.values(), key=lambda item: item[0])


def _members(cls):
    """Public methods and properties the class itself defines (not sklearn's generated ones)."""
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        function = member.fget if isinstance(member, property) else getattr(cls, name)
        if not inspect.isroutine(function):
            continue
        if not getattr(function, "__module__", "").startswith("sklcc"):
            continue  # set_fit_request and the like, written by scikit-learn
        yield name, isinstance(member, property)


def _errors(qualname, *, method, is_property=False):
    """Failed checks of ``qualname``; ``method`` is true for functions, methods and properties."""
    for code, message in numpydoc_validate.validate(qualname)["errors"]:
        if code in IGNORED or (method and code in CLASS_ONLY):
            continue
        if is_property and code in {"PR02", "GL08"}:
            continue
        yield f"{qualname}: {code} {message}"


OBJECTS = _public_objects()
#: Objects whose docstrings still fail the checks above (to be emptied, not extended).
KNOWN_FAILING: set[str] = set()


@pytest.mark.parametrize("qualname, obj", OBJECTS, ids=[name for name, _ in OBJECTS])
def test_docstring(qualname, obj, request):
    if qualname in KNOWN_FAILING:
        request.applymarker(pytest.mark.xfail(strict=True, reason="listed in KNOWN_FAILING"))
    errors = list(_errors(qualname, method=not inspect.isclass(obj)))
    if inspect.isclass(obj):
        for name, is_property in _members(obj):
            errors.extend(_errors(f"{qualname}.{name}", method=True, is_property=is_property))
    assert not errors, "\n".join(errors)
