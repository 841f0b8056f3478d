"""Command line: add a worker to a stored study, or plot one.

Run ``python -m sklcc.tuning worker --help`` for the options.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from sklcc.tuning.plot import plot_optimization_history
from sklcc.tuning.quota import finished_trials
from sklcc.tuning.search import LCCSearchCV
from sklcc.tuning.storage import open_storage


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``worker`` or ``plot`` command.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments after ``python -m sklcc.tuning``; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        The exit status.

    """
    parser = argparse.ArgumentParser(prog="python -m sklcc.tuning", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker",
        help="run trials of a stored study until it holds its n_trials finished trials",
        description="Run trials of a stored study until it holds its n_trials finished trials. "
        "Start as many as you like, on any host that reaches the storage.",
    )
    worker.add_argument(
        "--setup", required=True, metavar="FILE.py:FUNCTION",
        help="a function (in a Python file or an importable module, 'pkg.mod:function') that "
        "takes no argument and returns (search, X, y) or (search, X, y, fit_kwargs), where "
        "search is an LCCSearchCV; the same function the main script uses",
    )
    worker.add_argument("--storage", help="storage URL; default: the setup's search.storage")
    worker.add_argument("--study", help="study name; default: the setup's search.study_name")
    worker.add_argument("--n-trials", type=int, help="default: the setup's search.n_trials")
    worker.add_argument(
        "--timeout", type=float, metavar="SECONDS",
        help="start no new trial after this many seconds; default: the setup's search.timeout",
    )
    plot = commands.add_parser("plot", help="write a stored study's optimization history PNG")
    plot.add_argument("--storage", required=True, help="storage URL")
    plot.add_argument("--study", required=True, help="study name")
    plot.add_argument("--out", required=True, help="the PNG file to write")
    args = parser.parse_args(argv)

    if args.command == "plot":
        study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage))
        print(plot_optimization_history(study, args.out))
        return 0

    search, X, y, fit_kwargs = _call_setup(args.setup)
    overrides: dict[str, Any] = {"refit": False}  # the study is the result; no need to refit
    for name, value in (("storage", args.storage), ("study_name", args.study),
                        ("n_trials", args.n_trials), ("timeout", args.timeout)):
        if value is not None:
            overrides[name] = value
    # Workers built by one setup share its seed, and would all draw the same parameters;
    # as Study.optimize(n_jobs>1) does for its threads, give each its own random stream.
    overrides["random_state"] = None
    if search.sampler is not None:
        search.sampler.reseed_rng()
    search.set_params(**overrides)
    if search.storage is None:
        parser.error("a worker needs a shared study: pass --storage URL --study NAME")
    search.fit(X, y, **fit_kwargs)
    study = search.study_
    finished = finished_trials(study)
    n_pruned, n_failed = (sum(t.state == state for t in finished)
                          for state in (optuna.trial.TrialState.PRUNED,
                                        optuna.trial.TrialState.FAIL))
    print(
        f"study {study.study_name!r}: {len(finished)} finished trials ({n_pruned} pruned, "
        f"{n_failed} failed); best CV score {search.best_score_:.4f} with {search.best_params_}"
    )
    return 0


def _call_setup(spec: str) -> tuple[LCCSearchCV, Any, Any, dict[str, Any]]:
    function = _load_function(spec)
    result = function()
    if not isinstance(result, tuple) or len(result) not in (3, 4):
        raise SystemExit(f"--setup {spec}: expected (search, X, y) or (search, X, y, fit_kwargs),"
                         f" got {type(result).__name__}")
    search, X, y, *rest = result
    if not isinstance(search, LCCSearchCV):
        raise SystemExit(f"--setup {spec}: the first item must be an LCCSearchCV, got "
                         f"{type(search).__name__}")
    return search, X, y, dict(rest[0]) if rest else {}


def _load_function(spec: str) -> Callable[[], Any]:
    location, _, name = spec.rpartition(":")
    if not location or not name:
        raise SystemExit(f"--setup {spec!r}: expected FILE.py:FUNCTION or package.module:FUNCTION")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise SystemExit(f"--setup {spec!r}: no file {str(path)!r}")
        module_name = f"_sklcc_setup_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # lets classes defined there be pickled and cloned
        loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    if not callable(getattr(module, name, None)):
        raise SystemExit(f"--setup {spec!r}: {location} has no function {name!r}")
    return getattr(module, name)


if __name__ == "__main__":
    sys.exit(main())
