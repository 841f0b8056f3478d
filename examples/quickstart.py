"""
Quickstart: plain skorch against LCC
====================================

Both nets get the same module, seed, training recipe and split of scikit-learn's bundled
digits; :class:`sklcc.LCCClassifier` only adds the LCC term. The script prints their test
accuracies and the clustering diagnostics LCC recorded at each refresh. Under a minute on
2 CPU cores::

    python examples/quickstart.py
"""

import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from skorch import NeuralNetClassifier

from sklcc import LCCClassifier

# %%
# The data and the module
# -----------------------
# The module names the layer LCC watches: ``hidden``, passed as ``lcc_layers=["hidden"]``.
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                    random_state=0)


class MLP(torch.nn.Module):
    """64 -> 128 -> 10 with the LCC latent at ``hidden``."""

    def __init__(self, n_hidden: int = 128):
        super().__init__()
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(64, n_hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2)
        )
        self.out = torch.nn.Linear(n_hidden, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


recipe = dict(max_epochs=20, lr=0.05, batch_size=64, optimizer=torch.optim.SGD,
              optimizer__momentum=0.9, verbose=0)

# %%
# Plain skorch, then LCC
# ----------------------
# The clusters are refreshed every ``lcc_interval`` epochs from ``lcc_warmup`` on.
start = time.perf_counter()
torch.manual_seed(0)
plain = NeuralNetClassifier(MLP, **recipe).fit(X_train, y_train)
plain_s = time.perf_counter() - start

start = time.perf_counter()
lcc = LCCClassifier(
    MLP, lcc_layers=["hidden"], lcc_weight=0.1, n_neighbors=10, louvain_resolution=1.0,
    n_representatives=32, lcc_warmup=4, lcc_interval=4, random_state=0, **recipe,
).fit(X_train, y_train)
lcc_s = time.perf_counter() - start

print(f"plain skorch test accuracy: {plain.score(X_test, y_test):.4f}  ({plain_s:.1f} s)")
print(f"LCC          test accuracy: {lcc.score(X_test, y_test):.4f}  ({lcc_s:.1f} s)")

# %%
# What each refresh found
# -----------------------
# Every refresh writes its clustering statistics to ``history``, one row per epoch.
print(f"{'epoch':>5} {'clusters':>8} {'modularity':>10} {'misclustered':>12} "
      f"{'uncovered':>9} {'largest':>7} {'refresh_s':>9}")
for row in lcc.history:
    if "lcc_n_clusters" in row:
        print(f"{row['epoch']:>5} {row['lcc_n_clusters']:>8.0f} {row['lcc_modularity']:>10.3f} "
              f"{row['lcc_misclustered']:>12.3f} {row['lcc_uncovered_classes']:>9.0f} "
              f"{row['lcc_largest_cluster']:>7.3f} {row['lcc_refresh_s']:>9.3f}")
