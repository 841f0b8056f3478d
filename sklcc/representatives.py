"""Representatives of each cluster and the per-class index of targets (step 6).

Up to ``n_per_cluster`` correctly clustered samples of every cluster are drawn at
random, without replacement, from the estimator's seeded generator. Their latents,
frozen at refresh time, are the targets of the owning class: during the epoch a
misclustered sample is pulled towards the nearest representative of its own class,
found through an hnswlib index per class.
"""

from __future__ import annotations

import numpy as np

from .graph import build_index, nearest_neighbors

__all__ = ["select_representatives", "RepresentativeIndex"]


def select_representatives(
    labels: np.ndarray, correct: np.ndarray, n_per_cluster: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw up to ``n_per_cluster`` correctly clustered samples from each cluster.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Cluster of each sample.
    correct : ndarray of shape (n_samples,), bool
        Correctly clustered flags.
    n_per_cluster : int or None
        Representatives per cluster; None keeps every correctly clustered sample.
    rng : numpy.random.Generator
        Source of randomness; draws are without replacement.

    Returns
    -------
    indices : ndarray of shape (n_representatives,), int64
        Sample indices of the representatives, sorted. A cluster without a correctly
        clustered sample contributes none.

    """
    candidates = np.flatnonzero(correct)
    if n_per_cluster is None:
        return candidates
    by_cluster = candidates[np.argsort(labels[candidates], kind="stable")]
    groups = np.split(by_cluster, np.flatnonzero(np.diff(labels[by_cluster])) + 1)
    chosen = [
        g if len(g) <= n_per_cluster else rng.choice(g, n_per_cluster, replace=False)
        for g in groups if len(g)
    ]
    if not chosen:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


class RepresentativeIndex:
    """Nearest representative of a given class, one hnswlib index per class.

    Parameters
    ----------
    latents : ndarray of shape (n_representatives, n_features)
        Latents of the representatives, frozen at refresh time.
    classes : ndarray of shape (n_representatives,)
        Class of each representative (the owner of its cluster, equal to its label).
    random_state : int, default=0
        Seed of the index construction.

    Attributes
    ----------
    classes_ : ndarray
        Classes that have at least one representative.

    Examples
    --------
    >>> import numpy as np
    >>> index = RepresentativeIndex(np.array([[0.0], [5.0], [9.0]]), np.array([0, 0, 1]))
    >>> targets, found = index.query(np.array([[4.0], [1.0], [0.0]]), np.array([0, 0, 2]))
    >>> targets[:, 0].tolist(), found.tolist()
    ([5.0, 0.0, 0.0], [True, True, False])

    """

    def __init__(self, latents: np.ndarray, classes: np.ndarray, *, random_state: int = 0):
        self.latents = np.ascontiguousarray(latents, dtype=np.float32)
        self.classes = np.asarray(classes, dtype=np.int64)
        self.random_state = random_state
        self._build()

    def _build(self) -> None:
        self.classes_ = np.unique(self.classes)
        self._members = {c: np.flatnonzero(self.classes == c) for c in self.classes_}
        self._indexes = {
            c: build_index(self.latents[m], random_state=self.random_state)
            for c, m in self._members.items()
        }

    def query(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest representative of class ``y[b]`` for each row ``Z[b]``.

        Parameters
        ----------
        Z : ndarray of shape (n_queries, n_features)
            Query latents.
        y : ndarray of shape (n_queries,)
            Class whose representatives each query may take.

        Returns
        -------
        targets : ndarray of shape (n_queries, n_features), float32
            Nearest representative; zeros where ``found`` is False.
        found : ndarray of shape (n_queries,), bool
            False where the class has no representative (it owns no cluster).

        """
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        targets = np.zeros_like(Z)
        found = np.zeros(len(Z), dtype=bool)
        for c in np.unique(y):
            if c not in self._indexes:
                continue
            rows = np.flatnonzero(y == c)
            nearest = nearest_neighbors(self._indexes[c], Z[rows], 1, n_jobs=1)[:, 0]
            targets[rows] = self.latents[self._members[c][nearest]]
            found[rows] = True
        return targets, found

    def __len__(self) -> int:
        return len(self.latents)

    def __getstate__(self) -> dict:
        # hnswlib indexes are rebuilt from the latents, which keeps pickles portable.
        return {k: v for k, v in self.__dict__.items() if k not in ("_indexes", "_members")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build()
