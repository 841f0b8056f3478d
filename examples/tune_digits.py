"""Tune LCC on scikit-learn's digits with LCCSearchCV, and compare with the untuned defaults.

A one-hidden-layer MLP, LCC on its hidden layer, 20 Optuna trials of 3-fold CV accuracy on a
75% training split; the held-out 25% is used only for the final test accuracies.

    python examples/tune_digits.py
    python examples/tune_digits.py --storage sqlite:///lcc.db --study digits --plot history.png

To add workers to that stored study, from other shells (or hosts, with a server database):

    python -m sklcc.tuning worker --setup examples/tune_digits.py:make_search \
        --storage sqlite:///lcc.db --study digits
"""

import argparse
import time

import numpy as np
import optuna
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv, train_test_split

from sklcc import LCCClassifier
from sklcc.tuning import LCCSearchCV, plot_optimization_history
from sklcc.tuning.cv import iter_fold_scores


class MLP(torch.nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


def load_split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def make_search():
    """The search, its training data and labels: what ``python -m sklcc.tuning worker`` runs."""
    # Trials are small; one thread each avoids oversubscribing cores shared by several workers.
    torch.set_num_threads(1)
    X_train, _, y_train, _ = load_split()
    lcc = LCCClassifier(MLP, lcc_layers=["hidden"], optimizer=torch.optim.Adam, lr=0.01,
                        max_epochs=20, batch_size=64, train_split=None, verbose=0,
                        random_state=0)
    search = LCCSearchCV(lcc, n_trials=20, cv=3, scoring="accuracy", random_state=0)
    return search, X_train, y_train


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--storage", help="e.g. sqlite:///lcc.db; default: in memory")
    parser.add_argument("--study", help="study name, required with --storage")
    parser.add_argument("--plot", help="write the optimization history to this PNG")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar shows the trials

    search, X_train, y_train = make_search()
    search.set_params(n_trials=args.n_trials, storage=args.storage, study_name=args.study,
                      show_progress_bar=True)
    _, X_test, _, y_test = load_split()

    start = time.perf_counter()
    search.fit(X_train, y_train)
    wall = time.perf_counter() - start

    # The untuned defaults, and the same net without LCC, scored by exactly the procedure
    # (splits, scorer) of one trial.
    default = search.estimator
    cv = check_cv(search.cv, y_train, classifier=True)
    scorer = check_scoring(default, search.scoring)

    def cv_score(params):
        folds = iter_fold_scores(default, params, X_train, y_train, cv=cv, scorer=scorer)
        return float(np.mean([fold.test_score for fold in folds]))

    default_cv, plain_cv = cv_score({}), cv_score({"lcc_weight": 0.0})
    default_test = clone(default).fit(X_train, y_train).score(X_test, y_test)

    states = list(search.cv_results_["state"])
    print(f"search wall time      {wall:.1f} s for {len(states)} trials "
          f"({states.count('PRUNED')} pruned)")
    print("best parameters      ", {k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in search.best_params_.items()})
    print(f"best CV accuracy      {search.best_score_:.4f}")
    print(f"default CV accuracy   {default_cv:.4f}  "
          f"(lcc_weight={default.lcc_weight}, louvain_resolution={default.louvain_resolution},"
          f" n_representatives={default.n_representatives})")
    print(f"no-LCC CV accuracy    {plain_cv:.4f}  (lcc_weight=0: plain cross-entropy)")
    print(f"test accuracy         tuned {search.score(X_test, y_test):.4f}, "
          f"default {default_test:.4f}")
    if args.plot:
        print("history plot         ", plot_optimization_history(search, args.plot))


if __name__ == "__main__":
    main()
