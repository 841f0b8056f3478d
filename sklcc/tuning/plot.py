"""Draw a study's optimization history to a PNG file, with matplotlib and no display."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

__all__ = ["plot_optimization_history"]


def plot_optimization_history(search_or_study: Any, path: str | Path) -> Path:
    r"""Write a PNG of each trial's CV score and the best score so far.

    Complete trials are dots, with the running best as a step line; pruned trials are crosses
    at the mean score they had when stopped.

    Parameters
    ----------
    search_or_study : LCCSearchCV or optuna.Study
        A fitted search (its ``study_`` is drawn) or a maximizing study.
    path : str or pathlib.Path
        The PNG file to write; its folder must exist.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import optuna, tempfile, pathlib
    >>> from sklcc.tuning import plot_optimization_history
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(direction="maximize")
    >>> study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=5)
    >>> png = plot_optimization_history(study, pathlib.Path(tempfile.mkdtemp()) / "history.png")
    >>> png.read_bytes()[:4] == b"\x89PNG"
    True

    """
    study = getattr(search_or_study, "study_", search_or_study)
    if not isinstance(study, optuna.Study):
        raise TypeError(
            f"Expected a fitted LCCSearchCV or an optuna.Study, got "
            f"{type(search_or_study).__name__}; fit the search first."
        )
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
              if t.intermediate_values]

    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    if complete:
        numbers = [t.number for t in complete]
        values = [t.value for t in complete]
        axes.plot(numbers, values, "o", color="tab:blue", label="complete trial")
        axes.step(numbers, np.maximum.accumulate(values), where="post", color="tab:red",
                  label="best so far")
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        axes.plot([t.number for t in pruned], last, "x", color="tab:gray",
                  label="pruned trial (score when stopped)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel("mean CV score")
    named = not study.study_name.startswith("no-name-")  # Optuna's name for unnamed studies
    axes.set_title(f"Optimization history of study {study.study_name!r}" if named
                   else "Optimization history")
    if complete or pruned:
        axes.legend(loc="lower right")
    path = Path(path)
    FigureCanvasAgg(figure).print_png(path)
    return path
