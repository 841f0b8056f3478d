"""Turn a study's trials into scikit-learn's ``cv_results_`` table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial
from scipy.stats import rankdata

__all__ = ["cv_results_from_trials"]

#: The trial user attribute holding per-fold lists: ``{"test_score": [...], "fit_time": [...],
#: "score_time": [...]}`` (one attribute, so one storage write per trial).
CV_FOLDS = "cv_folds"


def cv_results_from_trials(trials: Sequence[FrozenTrial], n_splits: int) -> dict[str, Any]:
    """Build a ``GridSearchCV``-style ``cv_results_`` dict, one row per trial.

    Parameters
    ----------
    trials : sequence of optuna.trial.FrozenTrial
        Finished trials (complete, pruned or failed) whose user attribute ``CV_FOLDS`` holds
        their per-fold scores and times.
    n_splits : int
        Number of cross-validation folds.

    Returns
    -------
    dict of str to ndarray or list
        ``params``, ``param_<name>`` (masked where a trial lacks it), ``split<k>_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``, ``mean_fit_time``,
        ``std_fit_time``, ``mean_score_time``, ``std_score_time``, plus ``number`` and ``state``
        of each trial. Folds a pruned trial never ran are NaN, so its mean is NaN. Only
        complete trials are ranked by their mean; pruned and failed ones tie below them all, as
        a fit that failed with ``error_score=np.nan`` does in ``GridSearchCV``.

    Examples
    --------
    >>> import optuna
    >>> from optuna.distributions import FloatDistribution
    >>> from sklcc.tuning.results import cv_results_from_trials
    >>> trial = optuna.trial.create_trial(
    ...     params={"C": 1.0}, distributions={"C": FloatDistribution(0.1, 10)}, value=0.75,
    ...     user_attrs={"cv_folds": {"test_score": [0.5, 1.0], "fit_time": [0.1, 0.1],
    ...                              "score_time": [0.0, 0.0]}})
    >>> results = cv_results_from_trials([trial], n_splits=2)
    >>> results["mean_test_score"], results["rank_test_score"], results["state"]
    (array([0.75]), array([1], dtype=int32), array(['COMPLETE'], dtype='<U8'))

    """
    results: dict[str, Any] = {
        "number": np.array([t.number for t in trials], dtype=int),
        "state": np.array([t.state.name for t in trials]),
    }
    for key in ("fit_time", "score_time"):
        times = _per_fold(trials, key, n_splits)
        results[f"mean_{key}"] = np.nanmean(times, axis=1) if len(trials) else np.empty(0)
        results[f"std_{key}"] = np.nanstd(times, axis=1) if len(trials) else np.empty(0)

    names = sorted({name for t in trials for name in t.params})
    for name in names:
        column = np.ma.MaskedArray(np.empty(len(trials), dtype=object),
                                   mask=[name not in t.params for t in trials])
        for row, t in enumerate(trials):
            if name in t.params:
                column[row] = t.params[name]
        results[f"param_{name}"] = column
    results["params"] = [dict(t.params) for t in trials]

    scores = _per_fold(trials, "test_score", n_splits)
    for k in range(n_splits):
        results[f"split{k}_test_score"] = scores[:, k]
    means = scores.mean(axis=1)
    results["mean_test_score"] = means
    results["std_test_score"] = scores.std(axis=1)
    complete = results["state"] == "COMPLETE"
    results["rank_test_score"] = _rank(np.where(complete, means, np.nan))
    return results


def _per_fold(trials: Sequence[FrozenTrial], key: str, n_splits: int) -> np.ndarray:
    table = np.full((len(trials), n_splits), np.nan)
    for row, t in enumerate(trials):
        values = t.user_attrs.get(CV_FOLDS, {}).get(key, [])[:n_splits]
        table[row, : len(values)] = values
    return table


def _rank(means: np.ndarray) -> np.ndarray:
    # As GridSearchCV: NaN means tie with one another below the worst real score.
    if means.size == 0 or np.isnan(means).all():
        return np.ones_like(means, dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32)
