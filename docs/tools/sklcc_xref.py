"""Resolve references to any public path of a sklcc object, not only the documented one.

Each object has one page, under its shortest public path (``sklcc.images.split_backbone``),
but docstrings also name it where it is defined (``sklcc.images.backbones.split_backbone``)
or relative to their own module (``split_backbone``). Sphinx's Python domain knows only the
documented path (and, for classes, autodoc's ``:canonical:`` one), so a reference that it
cannot resolve is imported here and sent to the page of the object it names. A name that does
not import stays unresolved, and ``-n -W`` reports it.
"""

from __future__ import annotations

import importlib
import inspect

from sphinx.util import logging

logger = logging.getLogger(__name__)


def _import(name: str):
    """Import a dotted name; None if it does not import."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _candidates(target: str, node) -> list[str]:
    """Full names the target may mean: as written, under the current module and class."""
    names = [target]
    module, cls = node.get("py:module"), node.get("py:class")
    # The module that defines the documented object of this page (a docstring's relative
    # names are relative to its own module, not to the shorter path it is documented under).
    page = _import(node.get("refdoc", "").rpartition("/")[2])
    home = getattr(page, "__module__", None)
    if isinstance(home, str) and home != module:
        names.append(f"{home}.{target}")
    if module and cls:
        names.append(f"{module}.{cls}.{target}")
    if module:
        parts = module.split(".")
        names.extend(".".join(parts[:cut] + [target]) for cut in range(len(parts), 0, -1))
    return [name for name in names if name.split(".")[0] == "sklcc"]


def resolve(app, env, node, contnode):
    """``missing-reference`` handler: retry under the documented path of the object."""
    if node.get("refdomain") != "py":
        return None
    documented = app.config.sklcc_documented
    for name in _candidates(node["reftarget"], node):
        obj = _import(name)
        if obj is None:
            continue
        owner, member = obj, None
        if documented.get(id(obj)) is None and "." in name:
            # A method or attribute: find its class's page and keep the member name.
            parent = _import(name.rsplit(".", 1)[0])
            if inspect.isclass(parent) and id(parent) in documented:
                owner, member = parent, name.rsplit(".", 1)[1]
        full = documented.get(id(owner))
        if full is None and inspect.ismodule(obj):
            full = obj.__name__
        if full is None:
            continue
        if member:
            full = f"{full}.{member}"
        domain = env.get_domain("py")
        for role in (node["reftype"], "obj"):
            found = domain.resolve_xref(env, node["refdoc"], app.builder, role, full, node,
                                        contnode)
            if found is not None:
                return found
    return None


def setup(app):
    """Register the handler; ``sklcc_documented`` maps id(object) to its documented name."""
    app.add_config_value("sklcc_documented", {}, "", types=(dict,))
    app.connect("missing-reference", resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
