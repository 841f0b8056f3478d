"""Tests of sklcc.tuning: LCCSearchCV, its study-wide quota, storages, workers and plot."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sklearn.base import BaseEstimator, ClassifierMixin, clone, is_classifier
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GroupKFold, cross_val_score
from skorch import NeuralNetClassifier

from sklcc.tuning import LCCSearchCV, default_search_space, plot_optimization_history
from sklcc.tuning.__main__ import main as cli_main
from sklcc.tuning.cv import iter_fold_scores

REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


# --------------------------------------------------------------------------- fixtures


class Quadratic(ClassifierMixin, BaseEstimator):
    """A classifier whose only job is to carry ``x``; ``neg_square`` scores it -(x - 0.3)**2."""

    def __init__(self, x=0.0):
        self.x = x

    def fit(self, X, y, sample_weight=None):
        if sample_weight is not None:
            assert len(sample_weight) == len(X)
        self.classes_ = np.unique(y)
        self.n_fit_samples_ = len(X)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def neg_square(estimator, X, y):
    return -((estimator.x - 0.3) ** 2)


X_TOY = np.random.default_rng(0).normal(size=(30, 2))
Y_TOY = np.arange(30) % 3
X_SPACE = {"x": FloatDistribution(0.0, 1.0)}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16).astype(np.float32), y[:300].astype(np.int64)


class MLP(torch.nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


def lcc_classifier():
    sklcc = pytest.importorskip("sklcc")
    if not hasattr(sklcc, "LCCClassifier"):
        pytest.skip("sklcc.LCCClassifier not available yet")
    return sklcc.LCCClassifier(MLP, lcc_layers=["hidden"], max_epochs=2, lr=0.2, batch_size=64,
                               train_split=None, verbose=0, random_state=0)


def finished(study):
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


# --------------------------------------------------------------------------- known answers


def test_brute_force_finds_the_known_best_and_refits():
    grid = CategoricalDistribution([0.0, 0.3, 0.7, 1.0])
    search = LCCSearchCV(Quadratic(), {"x": grid}, n_trials=4, cv=3, scoring=neg_square,
                         sampler=optuna.samplers.BruteForceSampler(seed=0),
                         pruner=optuna.pruners.NopPruner())
    search.fit(X_TOY, Y_TOY)

    assert search.best_params_ == {"x": 0.3}
    assert search.best_score_ == 0.0
    results = search.cv_results_
    assert sorted(p["x"] for p in results["params"]) == [0.0, 0.3, 0.7, 1.0]
    expected = np.array([-((p["x"] - 0.3) ** 2) for p in results["params"]])
    for k in range(3):
        np.testing.assert_allclose(results[f"split{k}_test_score"], expected)
    np.testing.assert_allclose(results["mean_test_score"], expected)
    assert results["rank_test_score"][search.best_index_] == 1
    assert results["params"][search.best_index_] == {"x": 0.3}
    assert list(results["state"]) == ["COMPLETE"] * 4
    # best_estimator_ is refit on all the data, and prediction methods delegate to it.
    assert search.best_estimator_.x == 0.3 and search.best_estimator_.n_fit_samples_ == 30
    assert search.predict(X_TOY).shape == (30,)
    assert search.predict_proba(X_TOY).shape == (30, 3)
    assert search.score(X_TOY, Y_TOY) == 0.0
    np.testing.assert_array_equal(search.classes_, [0, 1, 2])
    assert len(search.study_.trials) == 4


def test_iter_fold_scores_splits_data_and_per_sample_fit_params():
    weights = np.ones(30)
    folds = list(iter_fold_scores(Quadratic(), {"x": 0.5}, X_TOY, Y_TOY,
                                  cv=GroupKFold(3), scorer=neg_square,
                                  groups=np.arange(30) // 10,
                                  fit_params={"sample_weight": weights}))
    assert [round(f.test_score, 10) for f in folds] == [-0.04] * 3
    with pytest.raises(ValueError, match="groups"):
        LCCSearchCV(Quadratic(), X_SPACE, n_trials=1, cv=GroupKFold(3),
                    scoring=neg_square).fit(X_TOY, Y_TOY)
    search = LCCSearchCV(Quadratic(), X_SPACE, n_trials=2, cv=GroupKFold(3),
                         scoring=neg_square, random_state=0)
    search.fit(X_TOY, Y_TOY, groups=np.arange(30) // 10, sample_weight=weights)
    assert search.n_splits_ == 3


@pytest.mark.slow
def test_pruner_stops_bad_trials_after_the_first_fold(tmp_path):
    url = f"sqlite:///{tmp_path / 'prune.db'}"
    study = optuna.create_study(storage=url, study_name="prune", direction="maximize")
    xs = [0.3, 0.35, 0.25, 0.3, 1.0, 0.9, 0.31]
    for x in xs:
        study.enqueue_trial({"x": x})
    search = LCCSearchCV(Quadratic(), X_SPACE, n_trials=len(xs), cv=3, scoring=neg_square,
                         pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
                         storage=url, study_name="prune")
    search.fit(X_TOY, Y_TOY)

    results = search.cv_results_
    assert [p["x"] for p in results["params"]] == xs
    assert list(results["state"]) == ["COMPLETE"] * 4 + ["PRUNED"] * 2 + ["COMPLETE"]
    pruned = results["state"] == "PRUNED"
    np.testing.assert_allclose(results["split0_test_score"][pruned], [-0.49, -0.36])
    assert np.isnan(results["split1_test_score"][pruned]).all()
    assert np.isnan(results["mean_test_score"][pruned]).all()
    assert (results["rank_test_score"][pruned] == 6).all()
    assert search.best_params_ == {"x": 0.3} and search.best_score_ == 0.0
    assert [list(t.intermediate_values) for t in search.study_.trials if t.state.name == "PRUNED"
            ] == [[0], [0]]

    png = plot_optimization_history(search, tmp_path / "history.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(["plot", "--storage", url, "--study", "prune",
                     "--out", str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.png").stat().st_size > 1000


def test_seeded_search_is_reproducible():
    X, y = load_digits(return_X_y=True)
    space = {"alpha": FloatDistribution(1e-6, 1e-1, log=True),
             "penalty": CategoricalDistribution(["l2", "l1"])}

    def run(seed):
        search = LCCSearchCV(SGDClassifier(max_iter=5, tol=None, random_state=0), space,
                             n_trials=6, cv=3, random_state=seed)
        return search.fit(X[:400], y[:400]).cv_results_

    first, second, other = run(0), run(0), run(1)
    assert first["params"] == second["params"]
    np.testing.assert_array_equal(first["mean_test_score"], second["mean_test_score"])
    assert first["params"] != other["params"]


# --------------------------------------------------------------------------- estimators


def test_plain_skorch_net_with_routed_parameters(digits):
    X, y = digits
    net = NeuralNetClassifier(MLP, max_epochs=2, batch_size=64, train_split=None, verbose=0)
    space = {"lr": FloatDistribution(1e-2, 0.5, log=True),
             "module__hidden": IntDistribution(4, 32, log=True)}
    search = LCCSearchCV(net, space, n_trials=3, cv=2, scoring="accuracy", random_state=0)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    hidden = search.best_params_["module__hidden"]
    assert search.best_estimator_.module_.hidden[0].out_features == hidden
    assert search.predict_proba(X[:5]).shape == (5, 10)
    assert 0.0 <= search.score(X, y) <= 1.0


@pytest.mark.slow
def test_lcc_classifier_default_space_is_reproducible(digits):
    X, y = digits
    lcc = lcc_classifier()

    def run():
        search = LCCSearchCV(lcc, n_trials=2, cv=2, scoring="accuracy", random_state=0)
        return search.fit(X, y)

    first, second = run(), run()
    assert set(first.best_params_) == set(default_search_space())
    assert first.cv_results_["params"] == second.cv_results_["params"]
    np.testing.assert_array_equal(first.cv_results_["mean_test_score"],
                                  second.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(first.predict(X), second.predict(X))


@pytest.mark.slow
def test_lcc_classifier_inside_optuna_and_sklearn_searches(digits):
    from optuna_integration import OptunaSearchCV
    from sklearn.model_selection import RandomizedSearchCV

    X, y = digits
    lcc = lcc_classifier()
    optuna_search = OptunaSearchCV(lcc, default_search_space(), n_trials=2, cv=2,
                                   random_state=0, scoring="accuracy").fit(X, y)
    assert set(optuna_search.best_params_) == set(default_search_space())
    random_search = RandomizedSearchCV(lcc, {"lcc_weight": [0.01, 0.1],
                                             "n_representatives": [4, 16]},
                                       n_iter=2, cv=2, random_state=0).fit(X, y)
    assert random_search.predict(X[:3]).shape == (3,)


def test_search_is_a_scikit_learn_meta_estimator():
    search = LCCSearchCV(Quadratic(), X_SPACE, n_trials=3, cv=2, scoring=neg_square,
                         random_state=0)
    assert is_classifier(search)
    assert clone(search).get_params()["n_trials"] == 3
    # Nested in cross-validation: cloned, fitted and scored per outer fold.
    np.testing.assert_array_less(cross_val_score(search, X_TOY, Y_TOY, cv=2), 1e-12)
    search.set_params(refit=False).fit(X_TOY, Y_TOY)
    assert not hasattr(search, "best_estimator_")
    with pytest.raises(AttributeError) as excinfo:
        search.predict(X_TOY)
    assert "refit=False" in str(excinfo.value.__cause__)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"n_trials": 0}, ValueError, "n_trials"),
        ({"param_distributions": {}}, ValueError, "empty"),
        ({"param_distributions": {"y": FloatDistribution(0, 1)}}, ValueError,
         r"Unknown parameter\(s\) \['y'\].*Valid names: \['x'\]"),
        ({"param_distributions": None}, ValueError, "lcc_weight.*LCC parameters"),
        ({"param_distributions": {"x": [0.1, 0.2]}}, TypeError, "not an Optuna distribution"),
        ({"storage": "nosuchdb://host/db", "study_name": "s"}, ValueError,
         "Cannot open the Optuna storage 'nosuchdb://host/db'"),
        ({"storage": "sqlite:////no/such/folder/x.db", "study_name": "s"}, ValueError,
         "Cannot open the Optuna storage"),
        ({"storage": "lcc.db", "study_name": "s"}, ValueError, "sqlite:///lcc.db"),
        ({"storage": "/no/such/folder/lcc.log", "study_name": "s"}, ValueError, "does not exist"),
        ({"storage": "sqlite://"}, ValueError, "needs a study_name"),
        ({"cv": 11}, ValueError, r"cv=11 folds .* class 0 has only 10\. Lower cv to 10"),
    ],
)
def test_bad_input_fails_before_any_trial(params, error, match):
    search = LCCSearchCV(Quadratic(), X_SPACE, scoring=neg_square).set_params(**params)
    with pytest.raises(error, match=match):
        search.fit(X_TOY, Y_TOY)
    assert not hasattr(search, "study_")


def test_unknown_skorch_name_lists_routed_names():
    net = NeuralNetClassifier(MLP)
    with pytest.raises(ValueError, match=r"\['module__hiden'\].*'lr'.*'module__hidden'"):
        LCCSearchCV(net, {"module__hiden": IntDistribution(4, 8)}).fit(X_TOY, Y_TOY)


def test_progress_bar(capsys):
    LCCSearchCV(Quadratic(), X_SPACE, n_trials=3, cv=2, scoring=neg_square,
                show_progress_bar=True).fit(X_TOY, Y_TOY)
    assert "3/3" in capsys.readouterr().err


# --------------------------------------------------------------------------- storage


def test_interrupted_study_resumes_with_completed_trials_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    calls = []

    def interrupting_scorer(estimator, X, y):
        calls.append(estimator.x)
        if len(calls) == 7:  # third trial, first fold
            raise KeyboardInterrupt
        return neg_square(estimator, X, y)

    search = LCCSearchCV(Quadratic(), X_SPACE, n_trials=5, cv=3, scoring=interrupting_scorer,
                         storage=url, study_name="resume", random_state=0,
                         pruner=optuna.pruners.NopPruner())
    with pytest.raises(KeyboardInterrupt):
        search.fit(X_TOY, Y_TOY)
    study = optuna.load_study(study_name="resume", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    kept = [t.params for t in study.trials[:2]]

    search.fit(X_TOY, Y_TOY)  # the same call again resumes
    assert len(search.cv_results_["params"]) == 5
    assert search.cv_results_["params"][:2] == kept
    assert len(calls) == 6 + 1 + 3 * 3


def test_journal_file_storage_resumes(tmp_path):
    journal = str(tmp_path / "study.log")
    search = LCCSearchCV(Quadratic(), X_SPACE, n_trials=3, cv=2, scoring=neg_square,
                         storage=journal, study_name="journal", random_state=0)
    first = search.fit(X_TOY, Y_TOY).cv_results_["params"]
    second = search.set_params(n_trials=4).fit(X_TOY, Y_TOY).cv_results_["params"]
    assert len(first) == 3 and second[:3] == first and len(second) == 4
    assert Path(journal).stat().st_size > 0


WORKER_SETUP = """
    import os, pathlib, time
    import numpy as np
    from optuna.distributions import FloatDistribution
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklcc.tuning import LCCSearchCV

    HERE = pathlib.Path(__file__).parent

    class Sleepy(ClassifierMixin, BaseEstimator):
        def __init__(self, x=0.0):
            self.x = x
        def fit(self, X, y):
            if os.environ.get("HANG"):
                (HERE / "started").touch()
                time.sleep(120)
            time.sleep(0.03)
            self.classes_ = np.unique(y)
            return self

    def neg_square(estimator, X, y):
        return -((estimator.x - 0.3) ** 2)

    def make_search():
        if os.environ.get("BARRIER"):  # both workers start their trials together
            (HERE / f"ready-{os.getpid()}").touch()
            while len(list(HERE.glob("ready-*"))) < 2:
                time.sleep(0.05)
        X = np.random.default_rng(0).normal(size=(30, 2))
        y = np.arange(30) % 3
        search = LCCSearchCV(Sleepy(), {"x": FloatDistribution(0, 1)}, n_trials=N_TRIALS,
                             cv=2, scoring=neg_square, heartbeat_interval=1, grace_period=2)
        return search, X, y
"""


def start_worker(tmp_path, url, n_trials, **env):
    setup = tmp_path / "setup.py"
    setup.write_text(textwrap.dedent(WORKER_SETUP).replace("N_TRIALS", str(n_trials)))
    return subprocess.Popen(
        [sys.executable, "-m", "sklcc.tuning", "worker", "--setup", f"{setup}:make_search",
         "--storage", url, "--study", "shared"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.slow
def test_two_worker_processes_share_one_quota(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [start_worker(tmp_path, url, 8, BARRIER="1") for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    study = optuna.load_study(study_name="shared", storage=url)
    done = finished(study)
    assert len(done) == 8, outputs
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    # Any extra trial is one a worker created in a race and discarded as failed, never scored.
    surplus = study.get_trials(states=(TrialState.FAIL,))
    assert all("cv_folds" not in t.user_attrs for t in surplus)
    assert len({t.user_attrs["worker"] for t in done}) == 2, "both workers ran trials"
    for output in outputs:
        assert "8 finished trials" in output

    # The main process finds the work done: it runs no trial and refits the best.
    search = LCCSearchCV(Quadratic(), X_SPACE, n_trials=8, cv=2, scoring=neg_square,
                         storage=url, study_name="shared").fit(X_TOY, Y_TOY)
    assert len(search.study_.trials) == len(study.trials)
    assert len(search.cv_results_["params"]) == 8


@pytest.mark.slow
def test_killed_worker_leaves_a_usable_study_and_a_restart_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    doomed = start_worker(tmp_path, url, 4, HANG="1")
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert doomed.poll() is None, doomed.communicate()[0]
        assert time.monotonic() < deadline, "the worker never started a trial"
        time.sleep(0.05)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()

    study = optuna.load_study(study_name="shared", storage=url)
    (killed,) = study.trials
    assert killed.state == TrialState.RUNNING  # not counted as finished

    restarted = start_worker(tmp_path, url, 4)
    output = restarted.communicate(timeout=120)[0]
    assert restarted.returncode == 0, output
    study = optuna.load_study(study_name="shared", storage=url)
    assert len(finished(study)) == 4
    assert study.trials[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params and retry.state in (TrialState.COMPLETE,
                                                              TrialState.PRUNED)
