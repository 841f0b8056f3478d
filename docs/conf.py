"""Sphinx configuration of the sklcc documentation.

Build the site with ``python -m sphinx -W -b html docs docs/_build/html`` (the README's
command). The API reference (``api.rst``) is written at build time from the ``__all__`` of
every public module, so a module renamed, added or made private shows up without editing
this file. Intersphinx reads inventories committed under ``docs/inventories/`` (see
``docs/tools/make_inventories.py``), so the build needs no network.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "tools"))

import api_pages  # noqa: E402

import sklcc  # noqa: E402

project = "sklcc"
author = "the sklcc developers"
copyright = "the sklcc developers"  # noqa: A001
release = sklcc.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "results_links",
    "sklcc_xref",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# results/ holds the raw benchmark reports (linked from benchmarks.md, not pages of the site).
exclude_patterns = ["_build", "results", "tools", "inventories", "Thumbs.db", ".DS_Store",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json"]
templates_path = ["_templates"]

# -- API reference --------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_typehints = "none"  # numpydoc's Parameters section already states each type
autoclass_content = "class"
add_module_names = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Markdown pages ---------------------------------------------------------------------------
myst_heading_anchors = 4
myst_enable_extensions = ["dollarmath", "colon_fence"]

# -- Cross-project links, offline -------------------------------------------------------------
# Each pair is (where the links point, the inventory read at build time). The inventories
# are committed (docs/tools/make_inventories.py writes them from the installed packages), so
# `sphinx-build -W` passes without network. SKLCC_DOCS_ONLINE=1 reads the projects' own
# inventories first and falls back to the committed ones.
_INVENTORIES = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "sklearn": "https://scikit-learn.org/stable/",
    "skorch": "https://skorch.readthedocs.io/en/stable/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "optuna": "https://optuna.readthedocs.io/en/stable/",
    "optuna_integration": "https://optuna-integration.readthedocs.io/en/stable/",
    "networkx": "https://networkx.org/documentation/stable/",
}
_online = os.environ.get("SKLCC_DOCS_ONLINE") == "1"
intersphinx_mapping = {
    name: (url, ((None, str(DOCS / "inventories" / f"{name}.inv")) if _online
                 else str(DOCS / "inventories" / f"{name}.inv")))
    for name, url in _INVENTORIES.items()
}
intersphinx_timeout = 5

# -- Gallery ------------------------------------------------------------------------------------
# Executed: every example but distributed.py, which needs several processes (shown with its
# command, not run). tune_digits.py is a longer command-line run of search_with_optuna.py's
# recipe, linked from the tuning guide, not a gallery page.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/(?!distributed)[^/]+\.py$",
    "ignore_pattern": r"(__init__|tune_digits)\.py",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "remove_config_comments": True,
    "reference_url": {"sklcc": None},
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
}

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklcc {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_static_path = []
html_show_sourcelink = False


# Every reference must resolve (-n): a misspelt name in a docstring fails the build.
nitpicky = True
# A name that several pages define (``classes_`` of two estimators) links to the first: not a
# broken reference.
suppress_warnings = ["ref.python"]
# Written here (not in setup) so Sphinx sees a plain config value; docs/tools/sklcc_xref.py
# sends a reference to any public path of an object to the page of its documented path.
sklcc_documented = api_pages.write_api_page(DOCS / "api.rst")
# autosummary writes a stub per documented name into generated/ but never removes one: a
# renamed or removed name would leave a stub that fails the build (an import error and an
# orphan page) until the folder is cleared by hand, so stale stubs go here.
api_pages.remove_stale_stubs(DOCS / "generated", sklcc_documented.values())


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out members that other libraries generate (``set_fit_request``, ...)."""
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and callable(obj) and not module.startswith("sklcc"):
        return True
    return None


def setup(app):
    """Connect the member filter."""
    app.connect("autodoc-skip-member", _skip_foreign_members)
