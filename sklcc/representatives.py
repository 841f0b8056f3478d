"""Representatives and targets (step 6): where a misclustered sample is pulled.

The correctly clustered samples of each cluster are the candidates; their latents,
frozen at refresh time, serve the owning class. Two targets, chosen by the
estimator's ``lcc_target``:

- ``"nearest"`` (:class:`RepresentativeIndex`): up to ``n_representatives``
  candidates per cluster are drawn at random, without replacement, from the
  estimator's seeded generator; the target is the nearest of them of the sample's
  class.
- ``"knn-mean"`` (:class:`KnnMeanTargets`), the published exact target: every
  candidate counts; each cluster owned by the class proposes the mean of the ``k``
  candidates nearest to the sample, and the nearest proposal is the target.
"""

from __future__ import annotations

import numpy as np

from .neighbors import build_index, nearest_neighbors

__all__ = ["KnnMeanTargets", "RepresentativeIndex", "select_representatives"]


def _query_by_class(Z: np.ndarray, y: np.ndarray, target_of_class) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Targets of every row, one search per class present (``target_of_class(c, Q)``).

    The rows are grouped by class once; a class whose search returns None has no
    target, and its rows keep zeros with ``found`` False.
    """
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    targets = np.zeros_like(Z)
    found = np.zeros(len(Z), dtype=bool)
    if len(y) == 0:
        return targets, found
    order = np.argsort(y, kind="stable")
    ys = y[order]
    for rows in np.split(order, np.flatnonzero(ys[1:] != ys[:-1]) + 1):
        chosen = target_of_class(int(y[rows[0]]), Z[rows])
        if chosen is not None:
            targets[rows] = chosen
            found[rows] = True
    return targets, found


def select_representatives(
    labels: np.ndarray, correct: np.ndarray, n_representatives: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw up to ``n_representatives`` correctly clustered samples from each cluster.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Cluster of each sample.
    correct : ndarray of shape (n_samples,), bool
        Correctly clustered flags.
    n_representatives : int or None
        Representatives per cluster; None keeps every correctly clustered sample.
    rng : numpy.random.Generator
        Source of randomness; draws are without replacement.

    Returns
    -------
    indices : ndarray of shape (n_chosen,), int64
        Sample indices of the representatives, sorted. A cluster without a correctly
        clustered sample contributes none.

    """
    candidates = np.flatnonzero(correct)
    if n_representatives is None:
        return candidates
    by_cluster = candidates[np.argsort(labels[candidates], kind="stable")]
    groups = np.split(by_cluster, np.flatnonzero(np.diff(labels[by_cluster])) + 1)
    chosen = [
        g if len(g) <= n_representatives else rng.choice(g, n_representatives, replace=False)
        for g in groups if len(g)
    ]
    if not chosen:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


class RepresentativeIndex:
    """Nearest representative of a given class: one search structure per class.

    A class with at most ``exact_max`` representatives is searched exactly, by one
    matrix product per batch; a larger class (``n_representatives=None`` keeps every
    correctly clustered sample) gets an hnswlib index, built here, between epochs.
    At the default 32 representatives per cluster a class rarely holds more than a
    few hundred, where the exact search is also the faster one.

    Parameters
    ----------
    latents : ndarray of shape (n_chosen, n_features)
        Latents of the representatives, frozen at refresh time.
    classes : ndarray of shape (n_chosen,)
        Class of each representative (the owner of its cluster, equal to its label).
    random_state : int, default=0
        Seed of the hnswlib index construction.
    exact_max : int, default=2048
        Largest class searched exactly; 0 puts every class in an hnswlib index.

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

    def __init__(
        self, latents: np.ndarray, classes: np.ndarray, *, random_state: int = 0,
        exact_max: int = 2048,
    ):
        self.latents = np.ascontiguousarray(latents, dtype=np.float32)
        self.classes = np.asarray(classes, dtype=np.int64)
        if self.latents.ndim != 2 or len(self.latents) != len(self.classes):
            raise ValueError(
                f"latents of shape {self.latents.shape} and classes of shape "
                f"{self.classes.shape} do not match; pass one class per latent row."
            )
        self.random_state = random_state
        self.exact_max = exact_max
        self._build()

    def _build(self) -> None:
        self.classes_ = np.unique(self.classes)
        self._members = {}
        self._search = {}
        for c in self.classes_.tolist():
            members = np.flatnonzero(self.classes == c)
            self._members[c] = members
            if len(members) <= self.exact_max:
                reps = self.latents[members]
                self._search[c] = (reps, np.einsum("ij,ij->i", reps, reps))
            else:
                self._search[c] = build_index(self.latents[members],
                                              random_state=self.random_state)

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
            Nearest representative (ties: the first drawn); zeros where ``found`` is
            False.
        found : ndarray of shape (n_queries,), bool
            False where the class has no representative (it owns no cluster).

        """
        return _query_by_class(Z, y, self._nearest_of_class)

    def _nearest_of_class(self, c: int, Q: np.ndarray) -> np.ndarray | None:
        search = self._search.get(c)
        if search is None:
            return None
        if isinstance(search, tuple):  # exact: argmin of |r|^2 - 2 z.r
            reps, sq_norms = search
            nearest = np.argmin(sq_norms - 2.0 * (Q @ reps.T), axis=1)
        else:
            nearest = nearest_neighbors(search, Q, 1, n_jobs=1)[:, 0]
        return self.latents[self._members[c][nearest]]

    def __len__(self) -> int:
        return len(self.latents)

    def __getstate__(self) -> dict:
        # hnswlib indexes are rebuilt from the latents, which keeps pickles portable.
        return {k: v for k, v in self.__dict__.items() if k not in ("_search", "_members")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build()


class KnnMeanTargets:
    """The published exact target: per owned cluster, the mean of the k nearest candidates.

    For a query ``z`` of class ``c``, every cluster owned by ``c`` proposes the mean of
    the ``k`` correctly clustered samples of that cluster nearest to ``z``; the target
    is the proposal nearest to ``z``. A cluster with fewer than ``k`` correctly
    clustered samples proposes the mean of all it has (never an index of -1). The
    latents of the candidates are frozen at refresh time. Each cluster is searched
    exactly, by one matrix product per batch, when it holds at most ``exact_max``
    candidates, and through an hnswlib index built here otherwise.

    Parameters
    ----------
    latents : ndarray of shape (n_candidates, n_features)
        Latents of the correctly clustered samples.
    clusters : ndarray of shape (n_candidates,)
        Cluster of each candidate.
    classes : ndarray of shape (n_candidates,)
        Class of each candidate (the owner of its cluster).
    k : int
        Candidates averaged per cluster.
    random_state : int, default=0
        Seed of the hnswlib index construction.
    exact_max : int, default=8192
        Largest cluster searched exactly; 0 puts every cluster in an hnswlib index.

    Attributes
    ----------
    classes_ : ndarray
        Classes that own at least one cluster with a candidate.

    Examples
    --------
    >>> import numpy as np
    >>> latents = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    >>> targets = KnnMeanTargets(latents, np.array([0, 0, 0, 1, 1]), np.zeros(5, int), k=2)
    >>> t, found = targets.query(np.array([[0.2], [9.0]]), np.array([0, 0]))
    >>> t[:, 0].tolist(), found.tolist()   # means of {0, 1} and of {10, 11}
    ([0.5, 10.5], [True, True])

    """

    def __init__(self, latents: np.ndarray, clusters: np.ndarray, classes: np.ndarray, *,
                 k: int, random_state: int = 0, exact_max: int = 8192):
        self.latents = np.ascontiguousarray(latents, dtype=np.float32)
        self.clusters = np.asarray(clusters, dtype=np.int64)
        self.classes = np.asarray(classes, dtype=np.int64)
        if self.latents.ndim != 2 or not len(self.latents) == len(self.clusters) == len(
                self.classes):
            raise ValueError(
                f"latents of shape {self.latents.shape}, clusters of shape "
                f"{self.clusters.shape} and classes of shape {self.classes.shape} do not "
                "match; pass one cluster and one class per latent row."
            )
        if k < 1:
            raise ValueError(f"k={k!r} is invalid: expected an integer >= 1.")
        self.k = int(k)
        self.random_state = random_state
        self.exact_max = exact_max
        self._build()

    def _build(self) -> None:
        self.classes_ = np.unique(self.classes)
        # Per class, its clusters' candidates (latents, squared norms or an index): the
        # refresh-time precomputation every batch reuses.
        self._by_class: dict[int, list] = {c: [] for c in self.classes_.tolist()}
        order = np.argsort(self.clusters, kind="stable")
        bounds = np.flatnonzero(np.diff(self.clusters[order])) + 1
        for members in np.split(order, bounds):
            if not len(members):
                continue
            reps = self.latents[members]
            if len(members) <= self.exact_max:
                search = (reps, np.einsum("ij,ij->i", reps, reps))
            else:
                search = build_index(reps, random_state=self.random_state)
            self._by_class[int(self.classes[members[0]])].append((reps, search))

    def _cluster_means(self, reps: np.ndarray, search, Q: np.ndarray) -> np.ndarray:
        """Mean of the ``k`` candidates of one cluster nearest to each query row."""
        kk = min(self.k, len(reps))
        if isinstance(search, tuple):
            _, sq_norms = search
            if kk == len(reps):
                return np.broadcast_to(reps.mean(axis=0), (len(Q), reps.shape[1]))
            dist = sq_norms - 2.0 * (Q @ reps.T)  # |q|^2 is the same for every candidate
            nearest = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        else:
            nearest = nearest_neighbors(search, Q, kk, n_jobs=1)
        if len(Q) * kk <= len(reps):
            # Few queries: gathering their k rows reads less memory than a second pass
            # over every candidate (the per-batch cost at 512 features is memory-bound).
            return reps[nearest].mean(axis=1)
        # Many queries: a selection product keeps memory at (queries x candidates).
        weights = np.zeros((len(Q), len(reps)), dtype=np.float32)
        np.put_along_axis(weights, nearest, np.float32(1.0 / kk), axis=1)
        return weights @ reps

    def query(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target of each row ``Z[b]`` among the clusters owned by class ``y[b]``.

        Parameters
        ----------
        Z : ndarray of shape (n_queries, n_features)
            Query latents.
        y : ndarray of shape (n_queries,)
            Class of each query.

        Returns
        -------
        targets : ndarray of shape (n_queries, n_features), float32
            The nearest cluster proposal; zeros where ``found`` is False.
        found : ndarray of shape (n_queries,), bool
            False where the class owns no cluster with a candidate.

        """
        return _query_by_class(Z, y, self._nearest_proposal)

    def _nearest_proposal(self, c: int, Q: np.ndarray) -> np.ndarray | None:
        clusters = self._by_class.get(c)
        if not clusters:
            return None
        best = np.full(len(Q), np.inf, dtype=np.float32)
        chosen = np.zeros_like(Q)
        for reps, search in clusters:
            means = self._cluster_means(reps, search, Q)
            dist = np.einsum("ij,ij->i", Q - means, Q - means)
            closer = dist < best  # ties keep the earlier (larger) cluster
            best[closer] = dist[closer]
            chosen[closer] = means[closer]
        return chosen

    def __len__(self) -> int:
        return len(self.latents)

    def __getstate__(self) -> dict:
        # hnswlib indexes are rebuilt from the latents, which keeps pickles portable.
        return {k: v for k, v in self.__dict__.items() if k != "_by_class"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build()
