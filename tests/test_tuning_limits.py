"""LCCSearchCV's error_score (fits that raise) and timeout (searches that stop early)."""

import textwrap
import time
import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import check_cv

from sklcc.tuning import LCCSearchCV
from sklcc.tuning.__main__ import main as cli_main
from sklcc.tuning.cv import iter_fold_scores
from sklcc.tuning.quota import is_finished

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are logged with tracebacks
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

X = np.zeros((30, 2))
Y = np.arange(30) % 3
GRID = {"x": CategoricalDistribution([0.0, 0.3, 0.7, 1.0])}


class Picky(ClassifierMixin, BaseEstimator):
    """Refuses ``x == refused`` when fitted on ``refused_n`` samples (any number if None)."""

    def __init__(self, x=0.0, refused=0.7, refused_n=None, sleep=0.0):
        self.x = x
        self.refused = refused
        self.refused_n = refused_n
        self.sleep = sleep

    def fit(self, X, y):
        time.sleep(self.sleep)
        if self.x == self.refused and self.refused_n in (None, len(X)):
            raise ValueError(f"x={self.x} is refused")
        self.classes_ = np.unique(y)
        return self


def neg_square(estimator, X, y):
    return -((estimator.x - 0.3) ** 2)


def grid_search(estimator, **params):
    return LCCSearchCV(estimator, GRID, n_trials=4, cv=3, scoring=neg_square,
                       sampler=optuna.samplers.BruteForceSampler(seed=0),
                       pruner=optuna.pruners.NopPruner(), **params)


def row_of(results, x):
    (row,) = [i for i, params in enumerate(results["params"]) if params["x"] == x]
    return row


# --------------------------------------------------------------------------- error_score


def test_a_failing_fit_scores_nan_counts_as_a_trial_and_the_search_goes_on():
    search = grid_search(Picky(), storage=optuna.storages.InMemoryStorage(), study_name="nan")
    with pytest.warns(FitFailedWarning, match=r"Trial \d with parameters \{'x': 0\.7\} failed "
                      r"on fold 0: ValueError: x=0\.7 is refused\. .*error_score=nan"):
        search.fit(X, Y)

    results = search.cv_results_
    assert len(results["params"]) == 4  # n_trials, the failed one included
    failed = row_of(results, 0.7)
    assert results["state"][failed] == "FAIL"
    for key in ("split0_test_score", "split2_test_score", "mean_test_score", "std_test_score"):
        assert np.isnan(results[key][failed]), key
    assert results["mean_fit_time"][failed] >= 0  # the failed fit's time; later folds not run
    assert list(np.sort(results["rank_test_score"])) == [1, 2, 3, 4]
    assert results["rank_test_score"][failed] == 4
    assert search.best_params_ == {"x": 0.3} and search.best_score_ == 0.0

    # In the study: FAIL, with the error kept, counted towards n_trials, so no extra trial.
    trials = search.study_.trials
    assert len(trials) == 4
    (trial,) = [t for t in trials if t.params["x"] == 0.7]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["error"] == "ValueError: x=0.7 is refused"
    assert is_finished(trial)
    # A second fit of the same study finds its n_trials there and runs nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitFailedWarning)
        search.fit(X, Y)
    assert len(search.study_.trials) == 4


def test_a_numeric_error_score_fills_the_failed_folds_and_never_wins():
    # Two folds of 20 and 25 training samples; x=0.7 fails only on the second.
    cv = [(np.arange(20), np.arange(20, 30)), (np.arange(25), np.arange(25, 30))]
    search = grid_search(Picky(refused_n=25), error_score=1.0).set_params(cv=cv)
    with pytest.warns(FitFailedWarning, match=r"failed on fold 1: .*error_score=1\.0"):
        search.fit(X, Y)

    results = search.cv_results_
    failed = row_of(results, 0.7)
    assert results["state"][failed] == "FAIL"
    assert results["split0_test_score"][failed] == pytest.approx(-0.16)  # scored before failing
    assert results["split1_test_score"][failed] == 1.0
    assert results["mean_test_score"][failed] == pytest.approx(0.42)  # above every real score
    assert results["rank_test_score"][failed] == 4  # yet ranked after every complete trial
    assert search.best_params_ == {"x": 0.3}
    assert results["rank_test_score"][search.best_index_] == 1


def test_iter_fold_scores_gives_error_score_to_failed_fits_and_scorings():
    def refuse_half(estimator, X, y):
        if estimator.x == 0.5:
            raise ZeroDivisionError("no score")
        return 1.0

    cv = check_cv([(np.arange(20), np.arange(20, 30))] * 2)
    folds = list(iter_fold_scores(Picky(x=0.5), {}, X, Y, cv=cv, scorer=refuse_half,
                                  error_score=-1.0))
    assert [(f.test_score, f.error) for f in folds] == [(-1.0, "ZeroDivisionError: no score")] * 2
    folds = iter_fold_scores(Picky(x=0.7), {}, X, Y, cv=cv, scorer=neg_square, error_score=0)
    assert next(folds).error == "ValueError: x=0.7 is refused"
    with pytest.raises(ValueError, match="refused"):  # error_score='raise' by default
        next(iter_fold_scores(Picky(x=0.7), {}, X, Y, cv=cv, scorer=neg_square))


def test_error_score_raise_reraises_and_the_trial_does_not_count():
    storage = optuna.storages.InMemoryStorage()
    search = grid_search(Picky(), error_score="raise", storage=storage, study_name="raise")
    with pytest.raises(ValueError, match=r"x=0\.7 is refused"):
        search.fit(X, Y)
    assert not hasattr(search, "study_")
    trials = optuna.load_study(study_name="raise", storage=storage).trials
    assert trials[-1].params == {"x": 0.7} and trials[-1].state == TrialState.FAIL
    assert "error" not in trials[-1].user_attrs and not is_finished(trials[-1])


def test_all_trials_failing_is_an_error_that_says_how_to_debug():
    search = grid_search(Picky(refused=0.3)).set_params(
        param_distributions={"x": CategoricalDistribution([0.3])}, n_trials=2,
        sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.warns(FitFailedWarning), pytest.raises(
            RuntimeError, match=r"None of the study's 2 finished trials completed \(0 pruned, "
                                r"2 failed\).*error_score='raise'"):
        search.fit(X, Y)


# --------------------------------------------------------------------------- timeout


def test_timeout_stops_starting_trials_and_refits_the_best_so_far():
    search = LCCSearchCV(Picky(refused=None, sleep=0.1), {"x": FloatDistribution(0, 1)},
                         n_trials=50, cv=2, scoring=neg_square, timeout=0.5, random_state=0)
    start = time.perf_counter()
    search.fit(X, Y)
    elapsed = time.perf_counter() - start

    n_trials = len(search.study_.trials)
    # Each trial fits twice for 0.1 s; trials start until 0.5 s have passed, none is cut short.
    assert 1 <= n_trials <= 4, n_trials
    assert all(t.state == TrialState.COMPLETE for t in search.study_.trials)
    assert len(search.cv_results_["params"]) == n_trials
    assert search.best_estimator_.x == search.best_params_["x"]
    assert elapsed < 10


def test_a_timeout_before_any_trial_says_so():
    search = LCCSearchCV(Picky(refused=None), {"x": FloatDistribution(0, 1)}, n_trials=5,
                         cv=2, scoring=neg_square, timeout=1e-9)
    with pytest.raises(RuntimeError, match=r"timeout=1e-09 s ended the search before "
                                           r"n_trials=5"):
        search.fit(X, Y)
    assert search.study_.trials == []


def test_worker_cli_timeout(tmp_path, capsys):
    setup = tmp_path / "setup.py"
    setup.write_text(textwrap.dedent("""
        import numpy as np
        from optuna.distributions import CategoricalDistribution
        from sklearn.dummy import DummyClassifier
        from sklcc.tuning import LCCSearchCV

        def make_search():
            search = LCCSearchCV(DummyClassifier(), {"strategy": CategoricalDistribution(
                ["prior", "uniform"])}, n_trials=10_000, cv=2)
            return search, np.zeros((20, 1)), np.arange(20) % 2
    """))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli_main(["worker", "--setup", f"{setup}:make_search", "--storage", url,
                     "--study", "cli", "--timeout", "0.5"]) == 0
    output = capsys.readouterr().out
    n_finished = int(output.split("'cli': ")[1].split()[0])
    assert 1 <= n_finished < 10_000, output


def test_workers_from_one_seeded_setup_draw_different_parameters(tmp_path, capsys):
    setup = tmp_path / "setup.py"
    setup.write_text(textwrap.dedent("""
        import numpy as np
        from optuna.distributions import FloatDistribution
        from sklearn.linear_model import LogisticRegression
        from sklcc.tuning import LCCSearchCV

        def make_search():
            search = LCCSearchCV(LogisticRegression(), {"C": FloatDistribution(0.1, 10)},
                                 cv=2, random_state=0)
            return search, np.arange(20.0)[:, None], np.arange(20) % 2
    """))
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    for n_trials in ("1", "2"):  # a second worker, started after the first
        assert cli_main(["worker", "--setup", f"{setup}:make_search", "--storage", url,
                         "--study", "seed", "--n-trials", n_trials]) == 0
    first, second = (t.params["C"] for t in optuna.load_study(study_name="seed",
                                                               storage=url).trials)
    assert first != second


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"timeout": 0}, r"'timeout' parameter of LCCSearchCV must be a float in the range "
                         r"\(0\.0, inf\) or None\. Got 0 instead"),
        ({"timeout": "1h"}, r"'timeout' parameter .* Got '1h' instead"),
        ({"error_score": "ignore"}, r"'error_score' parameter of LCCSearchCV must be a str "
                                    r"among \{'raise'\} or an instance of 'float'\. "
                                    r"Got 'ignore' instead"),
    ],
)
def test_bad_timeout_or_error_score_fails_before_any_trial(params, match):
    search = LCCSearchCV(Picky(), GRID, scoring=neg_square, **params)
    with pytest.raises(ValueError, match=match):
        search.fit(X, Y)
    assert not hasattr(search, "study_")
