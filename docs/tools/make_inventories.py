"""Write the intersphinx inventories under ``docs/inventories/`` from the installed packages.

The documentation links to scikit-learn, skorch, PyTorch, Optuna, NumPy and Python, but the
build must pass with no network (CI has none), and none of these projects ships its
``objects.inv`` in its wheel. So each inventory is written here from the installed package:
every public class and function (and the public methods of those classes) found by import,
at the address where that project's site documents it. Commit the result; rerun after
upgrading a dependency::

    python docs/tools/make_inventories.py

Only names that import are written, so a link to a name that does not exist stays broken.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path

import sphobjinv as soi

OUT = Path(__file__).resolve().parents[1] / "inventories"


def _public(module_name: str) -> Iterable[tuple[str, object]]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:  # no __all__: what the module defines, not what it imports
        names = [name for name in dir(module) if not name.startswith("_")
                 and getattr(getattr(module, name), "__module__", "") == module_name]
    for name in names:
        try:
            obj = getattr(module, name)
        except (AttributeError, ImportError):  # experimental or optional names
            continue
        if inspect.isclass(obj) or inspect.isroutine(obj):
            yield name, obj


class Inventory:
    """The entries of one project's inventory, deduplicated by (name, role)."""

    def __init__(self, project: str, version: str):
        self.inv = soi.Inventory()
        self.inv.project, self.inv.version = project, version
        self.seen: set[tuple[str, str]] = set()

    def add(self, name: str, role: str, uri: str, domain: str = "py") -> None:
        if (name, role) in self.seen:
            return
        self.seen.add((name, role))
        # sphobjinv abbreviates a uri ending in the name with '$'.
        if uri.endswith("#" + name):
            uri = uri[: -len(name)] + "$"
        self.inv.objects.append(soi.DataObjStr(name=name, domain=domain, role=role,
                                               priority="1", uri=uri, dispname="-"))

    def add_api(self, module_names: Iterable[str], page: Callable[[str, str], str],
                methods: bool = True, alias_of: Callable[[str, object], str] | None = None,
                ) -> None:
        """Every public class/function of the modules; ``page(module, name)`` is its uri."""
        for module_name in module_names:
            self.add(module_name, "module", page(module_name, "").split("#")[0] + "#module-"
                     + module_name)
            for name, obj in _public(module_name):
                home = alias_of(module_name, obj) if alias_of else module_name
                full = f"{home}.{name}"
                uri = page(home, name) + "#" + full
                role = "class" if inspect.isclass(obj) else "function"
                self.add(full, role, uri)
                if home != module_name:
                    self.add(f"{module_name}.{name}", role, uri)
                if methods and inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if attr.startswith("_") or not inspect.isroutine(member):
                            continue
                        self.add(f"{full}.{attr}", "method",
                                 page(home, name) + f"#{full}.{attr}")
                        if home != module_name:
                            self.add(f"{module_name}.{name}.{attr}", "method",
                                     page(home, name) + f"#{full}.{attr}")

    def write(self, path: Path) -> None:
        soi.writebytes(path, soi.compress(self.inv.data_file(contract=True)))


def sklearn_inventory() -> Inventory:
    import sklearn

    inv = Inventory("scikit-learn", sklearn.__version__)
    modules = ["sklearn." + name for name in sklearn.__all__
               if not name.startswith("_") and name not in {"clone", "config_context",
                                                            "get_config", "set_config",
                                                            "show_versions"}]
    modules += ["sklearn.utils.validation", "sklearn.utils.estimator_checks",
                "sklearn.utils.multiclass"]
    inv.add_api(["sklearn"], lambda m, n: f"modules/generated/{m}.{n}.html", methods=False)
    inv.add_api(modules, lambda m, n: (f"modules/generated/{m}.{n}.html" if n
                                       else f"api/{m}.html"))
    inv.add("estimator", "term", "glossary.html#term-estimator", domain="std")
    inv.add("random_state", "term", "glossary.html#term-random_state", domain="std")
    inv.add("cross-validation estimator", "term",
            "glossary.html#term-cross-validation-estimator", domain="std")
    return inv


def numpy_inventory() -> Inventory:
    import numpy

    inv = Inventory("NumPy", numpy.__version__)
    inv.add_api(["numpy"], lambda m, n: f"reference/generated/{m}.{n}.html" if n
                else "reference/index.html", methods=False)
    inv.add_api(["numpy.random"], lambda m, n: f"reference/random/generated/{m}.{n}.html" if n
                else "reference/random/index.html", methods=False)
    inv.add("numpy.random.Generator", "class",
            "reference/random/generator.html#numpy.random.Generator")
    inv.add("numpy.random.RandomState", "class",
            "reference/random/legacy.html#numpy.random.RandomState")
    inv.add("numpy.ndarray", "class", "reference/generated/numpy.ndarray.html#numpy.ndarray")
    return inv


def torch_inventory() -> Inventory:
    import torch

    inv = Inventory("PyTorch", torch.__version__.split("+")[0])
    for special, page in [("torch.Tensor", "tensors.html"),
                          ("torch.device", "tensor_attributes.html"),
                          ("torch.dtype", "tensor_attributes.html"),
                          ("torch.Generator", "generated/torch.Generator.html")]:
        inv.add(special, "class", f"{page}#{special}")
    inv.add_api(["torch.utils.data"], lambda m, n: "data.html", methods=False)
    inv.add_api(["torch.nn", "torch.optim", "torch.optim.lr_scheduler"],
                lambda m, n: f"generated/{m}.{n}.html" if n else f"{m.split('.', 1)[1]}.html")
    inv.add_api(["torch"], lambda m, n: f"generated/{m}.{n}.html" if n else "torch.html",
                methods=False)
    return inv


def skorch_inventory() -> Inventory:
    import skorch

    inv = Inventory("skorch", skorch.__version__)
    modules = ["skorch.net", "skorch.classifier", "skorch.regressor", "skorch.callbacks",
               "skorch.dataset", "skorch.history", "skorch.helper", "skorch.hf",
               "skorch.utils", "skorch.probabilistic" if _importable("skorch.probabilistic")
               else "skorch.net"]

    def page(module: str, name: str) -> str:
        return f"{module.split('.', 1)[1]}.html" if "." in module else "index.html"

    inv.add_api(modules, page)

    def home(module: str, obj: object) -> str:
        # skorch's site documents each class in the module that defines it (callbacks
        # are documented as skorch.callbacks.X).
        defined = getattr(obj, "__module__", module)
        return "skorch.callbacks" if defined.startswith("skorch.callbacks") else defined

    inv.add_api(["skorch"], page, alias_of=home)
    return inv


def optuna_inventory() -> Inventory:
    import optuna

    inv = Inventory("Optuna", optuna.__version__)
    modules = ["optuna.study", "optuna.trial", "optuna.samplers", "optuna.pruners",
               "optuna.storages", "optuna.visualization", "optuna.distributions",
               "optuna.exceptions", "optuna.logging"]
    inv.add_api([m for m in modules if _importable(m)],
                lambda m, n: f"reference/generated/{m}.{n}.html" if n
                else f"reference/{m.split('.', 1)[1]}.html")
    inv.add_api(["optuna"], lambda m, n: f"reference/generated/{m}.{n}.html" if n
                else "reference/optuna.html",
                # optuna.Study is documented as optuna.study.Study, and so on.
                alias_of=lambda m, obj: m if inspect.isroutine(obj)
                else ".".join(obj.__module__.split(".")[:2]))
    return inv


def optuna_integration_inventory() -> Inventory:
    import optuna_integration

    inv = Inventory("Optuna-Integration", optuna_integration.__version__)
    inv.add_api(["optuna_integration"], lambda m, n: f"reference/generated/{m}.{n}.html" if n
                else "reference/index.html")
    return inv


def networkx_inventory() -> Inventory:
    import networkx

    inv = Inventory("NetworkX", networkx.__version__)
    # networkx documents each function under the module that defines it; docstrings name
    # them through the networkx.community alias of networkx.algorithms.community.
    community = importlib.import_module("networkx.algorithms.community")
    for name in dir(community):
        obj = getattr(community, name)
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)) \
                or not getattr(obj, "__module__", "").startswith(community.__name__):
            continue
        full = f"{obj.__module__}.{name}"
        uri = f"reference/algorithms/generated/{full}.html#{full}"
        role = "class" if inspect.isclass(obj) else "function"
        for alias in (full, f"networkx.algorithms.community.{name}", f"networkx.community.{name}"):
            inv.add(alias, role, uri)
    return inv


def python_inventory() -> Inventory:
    import sys

    inv = Inventory("Python", ".".join(map(str, sys.version_info[:2])))
    for name in dir(builtins):
        obj = getattr(builtins, name)
        if name.startswith("_"):
            continue
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            inv.add(name, "exception", f"library/exceptions.html#{name}")
        elif inspect.isclass(obj) and name in {"int", "float", "str", "list", "dict", "tuple",
                                               "set", "frozenset", "bytes", "bool", "complex",
                                               "range", "memoryview", "bytearray"}:
            inv.add(name, "class", f"library/stdtypes.html#{name}")
        elif inspect.isclass(obj) or inspect.isroutine(obj):
            inv.add(name, "class" if inspect.isclass(obj) else "function",
                    f"library/functions.html#{name}")
    inv.add("None", "data", "library/constants.html#None")
    inv.add("True", "data", "library/constants.html#True")
    inv.add("False", "data", "library/constants.html#False")
    for module in ["pathlib", "dataclasses", "contextlib", "collections.abc", "typing",
                   "concurrent.futures", "multiprocessing"]:
        inv.add_api([module], lambda m, n: f"library/{m}.html", methods=False)
    return inv


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # any import failure means: not in this environment
        return False
    return True


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, make in [("python", python_inventory), ("numpy", numpy_inventory),
                       ("sklearn", sklearn_inventory), ("skorch", skorch_inventory),
                       ("torch", torch_inventory), ("optuna", optuna_inventory),
                       ("optuna_integration", optuna_integration_inventory),
                       ("networkx", networkx_inventory)]:
        inv = make()
        inv.write(OUT / f"{name}.inv")
        print(f"{name}: {len(inv.inv.objects)} objects ({inv.inv.project} {inv.inv.version})")


if __name__ == "__main__":
    main()
