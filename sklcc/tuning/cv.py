"""Score one parameter setting by cross-validation, one fold at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

from sklcc.compat import safe_indexing

__all__ = ["FoldScore", "iter_fold_scores"]


@dataclass(frozen=True)
class FoldScore:
    """The outcome of one cross-validation fold.

    Each parameter is kept as the attribute of the same name.

    Parameters
    ----------
    test_score : float
        The scorer's value on the held-out part of the fold.
    fit_time : float
        Seconds spent fitting.
    score_time : float
        Seconds spent scoring.
    error : str or None
        ``"ValueError: ..."`` when fitting or scoring raised and ``test_score`` is the
        ``error_score`` given in its place; ``None`` when the fold was scored.

    See Also
    --------
    sklcc.tuning.cv.iter_fold_scores : Yields one per fold.
    sklearn.model_selection.cross_validate : The same scores and times, all folds at once.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.metrics import check_scoring
    >>> from sklearn.model_selection import StratifiedKFold
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklcc.tuning.cv import iter_fold_scores
    >>> X, y = load_iris(return_X_y=True)
    >>> knn = KNeighborsClassifier()
    >>> kwargs = dict(cv=StratifiedKFold(3), scorer=check_scoring(knn, "accuracy"))
    >>> fold = next(iter_fold_scores(knn, {"n_neighbors": 5}, X, y, **kwargs))
    >>> round(fold.test_score, 2), fold.error
    (0.98, None)
    >>> fold = next(iter_fold_scores(knn, {"n_neighbors": 500}, X, y, error_score=0.0, **kwargs))
    >>> fold.test_score, fold.error.split(":")[0]
    (0.0, 'ValueError')

    """

    test_score: float
    fit_time: float
    score_time: float
    error: str | None = None


def iter_fold_scores(
    estimator: Any,
    params: Mapping[str, Any],
    X: Any,
    y: Any,
    *,
    cv: Any,
    scorer: Callable[[Any, Any, Any], float],
    groups: Any = None,
    fit_params: Mapping[str, Any] | None = None,
    error_score: str | float = "raise",
) -> Iterator[FoldScore]:
    """Fit ``clone(estimator).set_params(**params)`` on each training fold and score it.

    The scores come one fold at a time so that a caller can stop early (prune) between folds.

    Parameters
    ----------
    estimator : estimator object
        The unfitted template; it is cloned for every fold and never modified.
    params : mapping of str to object
        Parameters for ``set_params``.
    X : array-like of shape (n_samples, n_features)
        Training data.
    y : array-like of shape (n_samples,)
        Targets.
    cv : cross-validation splitter
        An object with ``split(X, y, groups)``, as returned by
        :func:`sklearn.model_selection.check_cv`.
    scorer : callable
        ``scorer(fitted_estimator, X_test, y_test) -> float``, as returned by
        :func:`sklearn.metrics.check_scoring`.
    groups : array-like of shape (n_samples,), default=None
        Group labels, passed to ``cv.split``.
    fit_params : mapping of str to object, default=None
        Extra ``fit`` arguments; those with one entry per sample are split with ``X``.
    error_score : 'raise' or float, default='raise'
        What a fold whose ``fit`` or scoring raises gets, as in
        :func:`sklearn.model_selection.cross_validate`: ``'raise'`` re-raises; a number is
        yielded as its ``test_score``, with the error in ``FoldScore.error``. Errors of
        ``cv.split`` itself always raise.

    Yields
    ------
    FoldScore
        The test score and timings of each fold, in the splitter's order.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.metrics import check_scoring
    >>> from sklearn.model_selection import StratifiedKFold
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklcc.tuning.cv import iter_fold_scores
    >>> X, y = load_iris(return_X_y=True)
    >>> knn = KNeighborsClassifier()
    >>> folds = iter_fold_scores(knn, {"n_neighbors": 5}, X, y, cv=StratifiedKFold(3),
    ...                          scorer=check_scoring(knn, "accuracy"))
    >>> [round(fold.test_score, 2) for fold in folds]
    [0.98, 0.98, 0.98]

    """
    fit_params = dict(fit_params or {})
    n_samples = len(X)
    for train, test in cv.split(X, y, groups):
        model = clone(estimator).set_params(**params)
        fold_fit_params = {
            key: safe_indexing(value, train) if _is_per_sample(value, n_samples) else value
            for key, value in fit_params.items()
        }
        start = time.perf_counter()
        try:
            model.fit(safe_indexing(X, train), safe_indexing(y, train), **fold_fit_params)
        except Exception as err:
            if isinstance(error_score, str):  # "raise"
                raise
            # As cross_validate: a failed fit's time is kept, its scoring time is zero.
            yield FoldScore(float(error_score), time.perf_counter() - start, 0.0, _name(err))
            continue
        fitted = time.perf_counter()
        try:
            score = scorer(model, safe_indexing(X, test), safe_indexing(y, test))
        except Exception as err:
            if isinstance(error_score, str):
                raise
            yield FoldScore(float(error_score), fitted - start, time.perf_counter() - fitted,
                            _name(err))
            continue
        yield FoldScore(float(score), fitted - start, time.perf_counter() - fitted)


def _name(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


def _is_per_sample(value: Any, n_samples: int) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, str | bytes | Mapping) and (
        len(value) == n_samples and np.ndim(value) >= 1
    )
