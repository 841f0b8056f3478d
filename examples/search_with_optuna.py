"""
Tuning LCC with LCCSearchCV and a stored Optuna study
=====================================================

:class:`sklcc.tuning.LCCSearchCV` is a search estimator like ``GridSearchCV`` whose candidates
come from an Optuna study. The study lives where ``storage`` says: here a SQLite file, so it
outlives the search, can be loaded back with :func:`optuna.load_study`, and more workers can
join it (``python -m sklcc.tuning worker``, see the tuning guide). A longer run, with the
untuned defaults for comparison, is ``examples/tune_digits.py``.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklcc import LCCClassifier
from sklcc.tuning import LCCSearchCV, plot_optimization_history

torch.set_num_threads(1)  # small nets: one thread is faster than two here
optuna.logging.set_verbosity(optuna.logging.WARNING)
X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                    random_state=0)


class MLP(torch.nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


# %%
# The search
# ----------
# With no ``param_distributions`` the search draws from
# :func:`sklcc.tuning.default_search_space`: the LCC weight, resolution, neighbours and
# representatives. Each trial is scored by 3-fold CV, fold by fold, so a poor trial is pruned
# early.
folder = Path(tempfile.mkdtemp())
net = LCCClassifier(MLP, lcc_layers=["hidden"], optimizer=torch.optim.Adam, lr=0.01,
                    max_epochs=10, batch_size=64, train_split=None, verbose=0, random_state=0)
search = LCCSearchCV(net, n_trials=6, cv=3, scoring="accuracy", random_state=0,
                     storage=f"sqlite:///{folder / 'lcc.db'}", study_name="digits")
search.fit(X_train, y_train)
print("best parameters:", {k: round(v, 4) if isinstance(v, float) else v
                           for k, v in search.best_params_.items()})
print(f"best CV accuracy {search.best_score_:.4f}, test accuracy "
      f"{search.score(X_test, y_test):.4f}")

# %%
# The study outlives the search
# -----------------------------
# Anyone with the storage URL reads the same trials (and could add more).
study = optuna.load_study(study_name="digits", storage=f"sqlite:///{folder / 'lcc.db'}")
for trial in study.trials:
    value = "pruned" if trial.value is None else f"{trial.value:.4f}"
    print(f"trial {trial.number}: {trial.state.name:<8} {value}")

# %%
# Its optimization history
# ------------------------
# :func:`sklcc.tuning.plot_optimization_history` writes a PNG; shown here as written.
png = plot_optimization_history(search, folder / "history.png")
plt.figure(figsize=(7, 4))
plt.imshow(plt.imread(png))
plt.axis("off")
plt.show()
