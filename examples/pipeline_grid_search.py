"""
LCC in a Pipeline, tuned by GridSearchCV
========================================

:class:`sklcc.LCCClassifier` is a scikit-learn estimator: it clones, takes
``set_params`` and sits in a :class:`~sklearn.pipeline.Pipeline` behind a scaler. Its
parameters are reached through the step name, as for any estimator, so
:class:`~sklearn.model_selection.GridSearchCV` searches them with no adapter.
``lcc_weight=0`` in the grid trains exactly like plain skorch: the search compares LCC with
no LCC on the same splits.
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklcc import LCCClassifier

torch.set_num_threads(1)  # small nets: one thread is faster than two here
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X.astype(np.float32), y, test_size=0.25,
                                                    stratify=y, random_state=0)


class MLP(torch.nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


# %%
# The pipeline
# ------------
# The scaler's output is float64; the classifier casts it to float32 for torch.
model = Pipeline([
    ("scale", StandardScaler()),
    ("lcc", LCCClassifier(MLP, lcc_layers=["hidden"], optimizer=torch.optim.Adam, lr=0.01,
                          max_epochs=10, batch_size=64, lcc_warmup=2, lcc_interval=2,
                          train_split=None, verbose=0, random_state=0)),
])

# %%
# The search
# ----------
# ``lcc__`` routes to the classifier, ``lcc__module__`` further down to the module.
grid = {"lcc__lcc_weight": [0.0, 0.1], "lcc__n_neighbors": [5, 15]}
search = GridSearchCV(model, grid, cv=3, scoring="accuracy").fit(X_train, y_train)

results = search.cv_results_
print("lcc_weight  n_neighbors  mean CV accuracy  std     rank")
for params, mean, std, rank in zip(results["params"], results["mean_test_score"],
                                   results["std_test_score"], results["rank_test_score"],
                                   strict=True):
    print(f"{params['lcc__lcc_weight']:>10}  {params['lcc__n_neighbors']:>11}  {mean:>16.4f}  "
          f"{std:.4f}  {rank:>4}")
print(f"best: {search.best_params_}, test accuracy {search.score(X_test, y_test):.4f}")
