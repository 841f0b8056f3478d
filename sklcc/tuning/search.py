"""``LCCSearchCV``: a scikit-learn search estimator over an Optuna study."""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner, MedianPruner
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import Trial, TrialState
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import StratifiedKFold, check_cv
from sklearn.utils import get_tags, indexable
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from sklcc.compat import HasMethods, Interval, StrOptions
from sklcc.tuning.cv import FoldScore, iter_fold_scores
from sklcc.tuning.quota import TrialFailed, finished_trials, run_until_quota
from sklcc.tuning.results import CV_FOLDS, cv_results_from_trials
from sklcc.tuning.space import check_search_space, suggest
from sklcc.tuning.storage import open_storage

__all__ = ["LCCSearchCV"]


def _best_estimator_has(attr: str):
    """Delegate ``attr`` to the refit best estimator, or to the template before fit."""

    def check(self: LCCSearchCV) -> bool:
        if not self.refit:
            raise AttributeError(
                f"{attr} needs a refit best estimator, but refit=False; refit one yourself with "
                "clone(search.estimator).set_params(**search.best_params_)."
            )
        getattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator,
                attr)
        return True

    return check


class LCCSearchCV(MetaEstimatorMixin, BaseEstimator):
    r"""Tune an estimator's hyperparameters with an Optuna study scored by cross-validation.

    Each trial draws parameters from the search space, scores
    ``clone(estimator).set_params(**params)`` fold by fold, and reports the running mean of the
    fold scores to the pruner, which may stop it early. The study may live in a database or a
    journal file that several worker processes or machines share; ``n_trials`` is then the
    number of finished trials the whole study should hold, so extra workers split the work.
    After the search, the best parameters are refit on all the data, as in ``GridSearchCV``.

    Parameters
    ----------
    estimator : estimator object
        The estimator to tune: an ``LCCClassifier``, any skorch net or scikit-learn classifier.
    param_distributions : dict of str to optuna.distributions.BaseDistribution, default=None
        Parameter names, as ``set_params`` takes them (``lr``, ``n_neighbors``,
        ``module__hidden_units``...), and their distributions. ``None`` searches the LCC
        parameters: ``lcc_weight`` log-uniform on [1e-4, 1], ``louvain_resolution`` log-uniform
        on [0.1, 10] and ``n_representatives`` integer log-uniform on [1, 512].
    n_trials : int, default=20
        Number of finished (complete, pruned or failed by ``error_score``) trials the study
        should hold. Trials already in a stored study count, so a resumed search only runs the
        missing ones.
    timeout : float or None, default=None
        Seconds after which this ``fit`` starts no new trial, as in
        :meth:`optuna.Study.optimize`: a running trial is finished, not interrupted, then the
        best of the trials so far is refit. ``n_trials`` still caps the study; whichever limit
        comes first ends the search. Each worker of a shared study counts its own ``timeout``
        from its own start, and a later ``fit`` resumes towards ``n_trials``. ``None`` waits
        for ``n_trials``.
    cv : int, cross-validation generator or iterable, default=5
        Cross-validation splitting, as in ``GridSearchCV``: an int means ``StratifiedKFold``
        for classifiers.
    scoring : str, callable or None, default=None
        A scikit-learn scorer name or callable (greater is better); ``None`` uses the
        estimator's ``score`` method.
    refit : bool, default=True
        Refit the best parameters on the whole data set as ``best_estimator_``.
    error_score : 'raise' or float, default=np.nan
        What a trial whose ``fit`` or scoring raises on a fold gets, as in ``GridSearchCV``.
        ``'raise'`` re-raises the error (the trial is recorded as ``FAIL`` and does not count
        towards ``n_trials``). A number warns with a ``FitFailedWarning`` that names the
        parameters and the error, stops the trial, records it as ``FAIL`` with the error in
        its ``error`` user attribute, gives it this score on the failed fold and the folds it
        did not run, counts it towards ``n_trials``, and goes on with the next trial. A failed
        trial is never chosen as best, even with a number above every real score. The refit
        of the best parameters always raises.
    sampler : optuna.samplers.BaseSampler, default=None
        How trials draw parameters; ``None`` means
        ``TPESampler(seed=random_state, constant_liar=True)``: the constant liar treats trials
        that are still running as poor results, so that workers sharing a study do not draw
        the same point.
    pruner : optuna.pruners.BasePruner, default=None
        How hopeless trials are stopped between folds; ``None`` means ``MedianPruner()``. Use
        ``optuna.pruners.NopPruner()`` to never prune.
    random_state : int or None, default=None
        Seed of the default sampler. With one worker and a deterministic estimator, the same
        seed gives the same search. ``python -m sklcc.tuning worker`` drops it (and reseeds a
        given ``sampler``), so that workers made by one setup draw different parameters.
    storage : str, optuna.storages.BaseStorage or None, default=None
        Where the study lives: ``None`` in memory; ``"sqlite:///lcc.db"`` on one machine;
        ``"postgresql+psycopg://..."``, ``"mysql+pymysql://..."``, ``"redis://..."`` or a
        journal file path such as ``"lcc.log"`` on a shared file system, across machines.
    study_name : str or None, default=None
        Name of the study in ``storage``; required with a storage, so that other workers and a
        resumed search find it. An existing study of that name is continued.
    heartbeat_interval : int, default=10
        Seconds between a running trial's heartbeats, for database storage URLs. The trial of
        a killed worker is failed after ``grace_period`` seconds without one, and queued again.
    grace_period : int or None, default=None
        Seconds without a heartbeat before a trial counts as dead; ``None`` is twice
        ``heartbeat_interval``.
    show_progress_bar : bool, default=False
        Show a progress bar of the study's finished trials.

    Attributes
    ----------
    best_estimator_ : estimator object
        The estimator refit on all the data with ``best_params_``; only with ``refit=True``.
    best_params_ : dict
        Parameters of the best complete trial.
    best_score_ : float
        Mean cross-validated score of the best complete trial.
    best_index_ : int
        Row of the best trial in ``cv_results_``.
    cv_results_ : dict of str to ndarray or list
        One row per finished trial, in trial order, with the keys of ``GridSearchCV``'s
        ``cv_results_`` (``params``, ``param_<name>``, ``split<k>_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``, fit and score times)
        plus ``number`` and ``state`` (``"COMPLETE"``, ``"PRUNED"`` or ``"FAIL"``). A pruned
        trial's unscored folds and mean are NaN. A failed trial (see ``error_score``) keeps
        the folds it scored before failing and has ``error_score`` in the others. Pruned and
        failed trials rank below every complete trial.
    study_ : optuna.Study
        The study, with every trial of every worker.
    n_splits_ : int
        Number of cross-validation folds.
    scorer_ : callable
        The scorer used for the trials and by :meth:`score`.
    refit_time_ : float
        Seconds spent refitting the best estimator.

    See Also
    --------
    sklearn.model_selection.GridSearchCV : Exhaustive search over a grid.
    optuna_integration.OptunaSearchCV : Optuna's own search estimator, per-process trials.

    Notes
    -----
    To add workers to a stored study, run in other shells or on other hosts::

        python -m sklcc.tuning worker --setup my_search.py:make_search \
            --storage sqlite:///lcc.db --study digits

    where ``make_search()`` returns ``(search, X, y)``. A database storage records heartbeats,
    so the trial of a killed worker is retried; a journal storage does not, and such a trial
    stays ``RUNNING`` without counting as finished.

    Examples
    --------
    >>> from optuna.distributions import CategoricalDistribution, IntDistribution
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklcc.tuning import LCCSearchCV
    >>> X, y = load_digits(return_X_y=True)
    >>> search = LCCSearchCV(
    ...     KNeighborsClassifier(),
    ...     {"n_neighbors": IntDistribution(1, 30), "weights": CategoricalDistribution(
    ...         ["uniform", "distance"])},
    ...     n_trials=5, cv=3, scoring="accuracy", random_state=0,
    ... ).fit(X, y)
    >>> sorted(search.best_params_), len(search.cv_results_["params"])
    (['n_neighbors', 'weights'], 5)
    >>> bool(search.best_score_ > 0.9)
    True

    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "param_distributions": [Mapping, None],
        "n_trials": [Interval(numbers.Integral, 1, None, closed="left")],
        "timeout": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "refit": ["boolean"],
        "error_score": [StrOptions({"raise"}), numbers.Real],
        "sampler": [BaseSampler, None],
        "pruner": [BasePruner, None],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "storage": [str, BaseStorage, None],
        "study_name": [str, None],
        "heartbeat_interval": [Interval(numbers.Integral, 1, None, closed="left")],
        "grace_period": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "show_progress_bar": ["boolean"],
    }

    def __init__(
        self,
        estimator: Any,
        param_distributions: Mapping[str, BaseDistribution] | None = None,
        *,
        n_trials: int = 20,
        timeout: float | None = None,
        cv: Any = 5,
        scoring: Any = None,
        refit: bool = True,
        error_score: str | float = np.nan,
        sampler: BaseSampler | None = None,
        pruner: BasePruner | None = None,
        random_state: int | None = None,
        storage: str | BaseStorage | None = None,
        study_name: str | None = None,
        heartbeat_interval: int = 10,
        grace_period: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_trials = n_trials
        self.timeout = timeout
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.error_score = error_score
        self.sampler = sampler
        self.pruner = pruner
        self.random_state = random_state
        self.storage = storage
        self.study_name = study_name
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.show_progress_bar = show_progress_bar

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = deepcopy(inner.classifier_tags)
        tags.regressor_tags = deepcopy(inner.regressor_tags)
        return tags

    def fit(self, X: Any, y: Any, *, groups: Any = None, **fit_params: Any) -> LCCSearchCV:
        """Run the study's missing trials, then refit the best parameters on all the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, in the form the estimator's ``fit`` takes (``float32`` for skorch).
        y : array-like of shape (n_samples,)
            Target labels.
        groups : array-like of shape (n_samples,), default=None
            Group labels for group-aware splitters such as ``GroupKFold``.
        **fit_params : dict
            Extra arguments of the estimator's ``fit``; per-sample ones are split by fold.

        Returns
        -------
        self : LCCSearchCV
            The fitted search.

        """
        self._validate_params()
        space = check_search_space(self.estimator, self.param_distributions)
        if self.storage is not None and self.study_name is None:
            raise ValueError(
                f"storage={self.storage!r} needs a study_name, so that other workers and a "
                "resumed search can find the study; pass e.g. study_name='digits'."
            )
        X, y, groups = indexable(X, y, groups)
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        _check_folds_fit_classes(cv, y)
        n_splits = cv.get_n_splits(X, y, groups)
        scorer = check_scoring(self.estimator, scoring=self.scoring)

        storage = open_storage(self.storage, heartbeat_interval=self.heartbeat_interval,
                               grace_period=self.grace_period)
        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            # constant_liar keeps concurrent workers from drawing the same point.
            sampler=self.sampler or TPESampler(seed=self.random_state, constant_liar=True),
            pruner=self.pruner or MedianPruner(),
            direction="maximize",
            load_if_exists=True,
        )
        if study.directions != [StudyDirection.MAXIMIZE]:
            raise ValueError(
                f"Study {self.study_name!r} in {self.storage!r} minimizes or has several "
                "objectives, but scikit-learn scores are maximized; use another study_name."
            )

        def objective(trial: Trial) -> float:
            params = suggest(trial, space)
            folds = iter_fold_scores(self.estimator, params, X, y, cv=cv, scorer=scorer,
                                     groups=groups, fit_params=fit_params,
                                     error_score=self.error_score)
            return _score_trial(trial, folds, n_splits)

        poll = getattr(storage, "get_heartbeat_interval", lambda: None)()
        run_until_quota(study, objective, self.n_trials,
                        poll_interval=None if poll is None else min(poll / 2, 1.0),
                        timeout=self.timeout, show_progress_bar=self.show_progress_bar)

        self.study_ = study
        self.n_splits_ = n_splits
        self.scorer_ = scorer
        finished = finished_trials(study)
        self.cv_results_ = cv_results_from_trials(finished, n_splits)
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        if not complete:
            raise RuntimeError(_no_complete_trial(finished, self.n_trials, self.timeout))
        best = max(complete, key=lambda t: t.value)
        self.best_index_ = int(np.flatnonzero(self.cv_results_["number"] == best.number)[0])
        self.best_params_ = dict(best.params)
        self.best_score_ = float(best.value)
        if self.refit:
            start = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_)
            self.best_estimator_.fit(X, y, **fit_params)
            self.refit_time_ = time.perf_counter() - start
        return self

    def score(self, X: Any, y: Any) -> float:
        """Score the best estimator on ``X``, ``y`` with ``scoring`` (or its ``score`` method).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test data.
        y : array-like of shape (n_samples,)
            True labels.

        Returns
        -------
        float
            The score; greater is better.

        """
        _best_estimator_has("score")(self)
        check_is_fitted(self)
        return float(self.scorer_(self.best_estimator_, X, y))

    @available_if(_best_estimator_has("predict"))
    def predict(self, X: Any) -> np.ndarray:
        """Predict with the best estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (n_samples,)
            Predicted labels.

        """
        check_is_fitted(self)
        return self.best_estimator_.predict(X)

    @available_if(_best_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Predict class probabilities with the best estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Class probabilities, columns ordered as ``classes_``.

        """
        check_is_fitted(self)
        return self.best_estimator_.predict_proba(X)

    @property
    def classes_(self) -> np.ndarray:
        """Class labels of the best estimator."""
        _best_estimator_has("classes_")(self)
        return self.best_estimator_.classes_


def _score_trial(trial: Trial, folds, n_splits: int) -> float:
    """Report each fold to the pruner, which may stop the trial, and record the fold scores."""
    record: dict[str, list[float]] = {"test_score": [], "fit_time": [], "score_time": []}
    for k, fold in enumerate(folds):
        record["test_score"].append(fold.test_score)
        record["fit_time"].append(fold.fit_time)
        record["score_time"].append(fold.score_time)
        if fold.error is not None:
            _fail_trial(trial, record, k, n_splits, fold)
        mean = float(np.mean(record["test_score"]))
        # The running mean estimates the same quantity as the final objective, so the pruner
        # compares like with like whatever fold a trial has reached.
        trial.report(mean, step=k)
        if k < n_splits - 1 and trial.should_prune():
            trial.set_user_attr(CV_FOLDS, record)
            raise optuna.TrialPruned(f"mean score {mean:.4g} after fold {k}")
    trial.set_user_attr(CV_FOLDS, record)
    return float(np.mean(record["test_score"]))


def _fail_trial(trial: Trial, record: dict[str, list[float]], k: int, n_splits: int,
                fold: FoldScore) -> None:
    """Give the folds after failed fold ``k`` its ``error_score`` too, warn, fail the trial."""
    # The later folds are not run: a failed trial is never the best, whatever they score.
    error_score = fold.test_score
    record["test_score"] += [error_score] * (n_splits - k - 1)
    record["fit_time"] += [np.nan] * (n_splits - k - 1)
    record["score_time"] += [np.nan] * (n_splits - k - 1)
    trial.set_user_attr(CV_FOLDS, record)
    warnings.warn(
        f"Trial {trial.number} with parameters {trial.params} failed on fold {k}: "
        f"{fold.error}. Its score is set to error_score={error_score} and the search goes on; "
        "the trial is recorded as FAIL and never chosen as best. Pass error_score='raise' to "
        "stop at the error and see its traceback.",
        FitFailedWarning,
        stacklevel=2,
    )
    raise TrialFailed(fold.error)


def _no_complete_trial(finished: list, n_trials: int, timeout: float | None) -> str:
    counts = {state: sum(t.state == state for t in finished)
              for state in (TrialState.PRUNED, TrialState.FAIL)}
    message = (f"None of the study's {len(finished)} finished trials completed "
               f"({counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed), so "
               "there are no best parameters.")
    if counts[TrialState.FAIL]:
        message += (" The failed trials' errors are in the FitFailedWarnings and in each "
                    "trial's 'error' user attribute; pass error_score='raise' to see the "
                    "first traceback.")
    if counts[TrialState.PRUNED]:
        message += (" Against pruning, use a more patient pruner, e.g. "
                    "MedianPruner(n_startup_trials=5).")
    if len(finished) < n_trials and timeout is not None:
        message += (f" timeout={timeout} s ended the search before n_trials={n_trials}; "
                    "raise timeout, or fit again to resume a stored study.")
    return message


def _check_folds_fit_classes(cv: Any, y: Any) -> None:
    """Fail early when a stratified split has more folds than the smallest class has samples."""
    if not isinstance(cv, StratifiedKFold):
        return
    labels, counts = np.unique(np.asarray(y), return_counts=True)
    if cv.n_splits > counts.min():
        smallest = labels[counts.argmin()].item()
        raise ValueError(
            f"cv={cv.n_splits} folds need at least {cv.n_splits} samples of every class, but "
            f"class {smallest!r} has only {counts.min()}. Lower cv to {max(counts.min(), 2)} or "
            "fewer, or gather more samples of that class."
        )
