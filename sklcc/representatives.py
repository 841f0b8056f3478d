"""Representatives and targets (step 6): where a misclustered sample is pulled.

The correctly clustered samples of each cluster are the candidates; their latents,
frozen at refresh time, serve the owning class. Two targets, chosen by the
estimator's ``lcc_target``:

- ``"nearest"`` (:class:`RepresentativeIndex`): up to ``n_representatives``
  candidates per cluster are drawn at random, without replacement, from the
  estimator's seeded generator; the target is the nearest of them of the sample's
  class.
- ``"knn-mean"`` (:class:`KnnMeanTargets`), the published target: every
  candidate counts; each cluster owned by the class proposes the mean of the ``k``
  candidates nearest to the sample, and the nearest proposal is the target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .neighbors import build_index, nearest_neighbors

if TYPE_CHECKING:  # torch is imported by the batch-time queries only
    import torch

__all__ = ["AUTO_REPRESENTATIVES", "KnnMeanTargets", "RepresentativeIndex", "make_targets",
           "select_representatives"]

#: Representatives per cluster that ``n_representatives="auto"`` draws under
#: ``lcc_target="nearest"``.
AUTO_REPRESENTATIVES = 32


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    """Row ids of each distinct key, keys ascending, ids ascending within a group."""
    keys = np.asarray(keys)
    if len(keys) == 0:
        return []
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.flatnonzero(keys[order][1:] != keys[order][:-1]) + 1)


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
    for rows in _groups(y):
        chosen = target_of_class(int(y[rows[0]]), Z[rows])
        if chosen is not None:
            targets[rows] = chosen
            found[rows] = True
    return targets, found


class _Candidates:
    """Rows searched for their nearest ones: exactly up to ``exact_max`` rows, else hnswlib.

    The exact search is one matrix product per batch, ``argmin`` (ties: the first
    row) or ``argpartition`` of ``|r|^2 - 2 q.r``; a larger group gets an hnswlib
    index, built here, between epochs.
    """

    def __init__(self, latents: np.ndarray, exact_max: int, random_state: int):
        self.latents = latents
        if len(latents) <= exact_max:
            self._sq_norms = np.einsum("ij,ij->i", latents, latents)
            self._index = None
        else:
            self._index = build_index(latents, random_state=random_state)

    @property
    def exact(self) -> bool:
        """Whether the search is exact (no hnswlib index)."""
        return self._index is None

    def nearest(self, Q: np.ndarray, k: int) -> np.ndarray:
        """Ids of the ``k`` nearest rows of each query (unordered when exact and ``k > 1``)."""
        if self._index is not None:
            return nearest_neighbors(self._index, Q, k, n_jobs=1)
        dist = self._sq_norms - 2.0 * (Q @ self.latents.T)  # |q|^2 is the same for every row
        if k == 1:
            return np.argmin(dist, axis=1)[:, None]
        return np.argpartition(dist, k - 1, axis=1)[:, :k]


class _RebuiltOnUnpickle:
    """Pickle the latents only; the search structures (``_build``) are rebuilt on load.

    hnswlib indexes are rebuilt from the latents, which keeps pickles portable.
    """

    _derived: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.latents)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if k not in self._derived and k != "_tensors"}

    def _on(self, device) -> dict:
        """Return the search arrays as tensors on ``device``, copied there once per device."""
        import torch

        cache = self.__dict__.setdefault("_tensors", {})
        key = str(device)
        if key not in cache:
            cache[key] = {name: torch.as_tensor(value).to(device)
                          for name, value in self._tensor_arrays().items()}
        return cache[key]

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build()


def make_targets(Z: np.ndarray, y: np.ndarray, labels: np.ndarray, correct: np.ndarray,
                 lcc_target: str, *, n_representatives: int | str | None, k: int,
                 rng: np.random.Generator, random_state: int = 0):
    """Build the targets of a refresh (step 6) from its clusters and flags.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Training latents.
    y : ndarray of shape (n_samples,)
        Their classes.
    labels : ndarray of shape (n_samples,)
        Their clusters.
    correct : ndarray of shape (n_samples,), bool
        Correctly clustered flags.
    lcc_target : {"nearest", "knn-mean"}
        :class:`RepresentativeIndex` or :class:`KnnMeanTargets`.
    n_representatives : int, "auto" or None
        Drawn per cluster under ``"nearest"`` (``"auto"``: 32; None: all); not used
        by ``"knn-mean"``, which keeps every correctly clustered sample.
    k : int
        Candidates averaged per cluster under ``"knn-mean"``; not used by ``"nearest"``.
    rng : numpy.random.Generator
        Draws the representatives.
    random_state : int, default=0
        Seed of the hnswlib indexes.

    Returns
    -------
    targets : RepresentativeIndex or KnnMeanTargets
        What a misclustered sample of each class is pulled towards (``query(Z, y)``).

    """
    if lcc_target == "knn-mean":
        candidates = np.flatnonzero(correct)
        return KnnMeanTargets(Z[candidates], labels[candidates], y[candidates], k=k,
                              random_state=random_state)
    if isinstance(n_representatives, str) and n_representatives == "auto":
        n_representatives = AUTO_REPRESENTATIVES
    chosen = select_representatives(labels, correct, n_representatives, rng)
    return RepresentativeIndex(Z[chosen], y[chosen], random_state=random_state)


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


class RepresentativeIndex(_RebuiltOnUnpickle):
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

    See Also
    --------
    sklcc.representatives.select_representatives : Draws the representatives of each cluster.
    sklcc.representatives.KnnMeanTargets : The published target, ``lcc_target="knn-mean"``.
    sklcc.representatives.make_targets : Builds the target that ``lcc_target`` names.

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

    _derived = ("_search",)

    def _build(self) -> None:
        self.classes_ = np.unique(self.classes)
        self._search = {
            int(self.classes[members[0]]): (members, _Candidates(
                self.latents[members], self.exact_max, self.random_state))
            for members in _groups(self.classes)
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
            Nearest representative (ties: the first drawn); zeros where ``found`` is
            False.
        found : ndarray of shape (n_queries,), bool
            False where the class has no representative (it owns no cluster).

        """
        return _query_by_class(Z, y, self._nearest_of_class)

    def query_tensor(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
        """Return :meth:`query`'s targets in torch on ``z``'s device, without waiting for it.

        One exact search over every representative, those of other classes masked,
        so no shape depends on the data (no host round trip, no device sync). Equal
        to :meth:`query` where that search is exact, up to float rounding of the
        distances.

        Parameters
        ----------
        z : Tensor of shape (n_queries, n_features)
            Query latents (detached), on any device.
        y : Tensor of shape (n_queries,), int64
            Class of each query, on the same device.

        Returns
        -------
        targets : Tensor of shape (n_queries, n_features), float32
            Nearest representative of the query's class; arbitrary where ``found`` is
            False.
        found : Tensor of shape (n_queries,), bool
            False where the class has no representative.

        """
        t = self._on(z.device)
        latents, classes = t["latents"], t["classes"]
        z = z.float()
        same = classes[None, :] == y[:, None]
        if len(latents) == 0:
            return z.new_zeros(z.shape), same.any(dim=1)
        dist = t["sq_norms"][None, :] - 2.0 * (z @ latents.T)
        dist = dist.masked_fill(~same, float("inf"))
        return latents[dist.argmin(dim=1)], same.any(dim=1)

    def _tensor_arrays(self) -> dict:
        return {"latents": self.latents, "classes": self.classes,
                "sq_norms": np.einsum("ij,ij->i", self.latents, self.latents)}

    def _nearest_of_class(self, c: int, Q: np.ndarray) -> np.ndarray | None:
        if c not in self._search:
            return None
        members, candidates = self._search[c]
        return self.latents[members[candidates.nearest(Q, 1)[:, 0]]]


class KnnMeanTargets(_RebuiltOnUnpickle):
    """The published target: per owned cluster, the mean of the k nearest candidates.

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

    See Also
    --------
    sklcc.representatives.RepresentativeIndex : The target of ``lcc_target="nearest"``.
    sklcc.representatives.make_targets : Builds the target that ``lcc_target`` names.

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

    _derived = ("_by_class",)

    def _build(self) -> None:
        self.classes_ = np.unique(self.classes)
        # Per class, its clusters' candidates: the refresh-time precomputation every
        # batch reuses.
        self._by_class: dict[int, list[_Candidates]] = {c: [] for c in self.classes_.tolist()}
        for members in _groups(self.clusters):
            self._by_class[int(self.classes[members[0]])].append(
                _Candidates(self.latents[members], self.exact_max, self.random_state))

    def _cluster_means(self, candidates: _Candidates, Q: np.ndarray) -> np.ndarray:
        """Mean of the ``k`` candidates of one cluster nearest to each query row."""
        reps = candidates.latents
        kk = min(self.k, len(reps))
        if kk == len(reps) and candidates.exact:
            return np.broadcast_to(reps.mean(axis=0), (len(Q), reps.shape[1]))
        nearest = candidates.nearest(Q, kk)
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

    def query_tensor(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
        """Return :meth:`query`'s targets in torch on ``z``'s device, without waiting for it.

        Every cluster proposes for every query, by an exact search, and a proposal
        counts only for the queries of the cluster's class, so no shape depends on
        the data (no host round trip, no device sync). Equal to :meth:`query` where
        that search is exact, up to float rounding.

        Parameters
        ----------
        z : Tensor of shape (n_queries, n_features)
            Query latents (detached), on any device.
        y : Tensor of shape (n_queries,), int64
            Class of each query, on the same device.

        Returns
        -------
        targets : Tensor of shape (n_queries, n_features), float32
            The nearest proposal of the query's class; zeros where ``found`` is False.
        found : Tensor of shape (n_queries,), bool
            False where the class owns no cluster with a candidate.

        """
        t = self._on(z.device)
        z = z.float()
        best = z.new_full((len(z),), float("inf"))
        chosen = z.new_zeros(z.shape)
        for c, start, stop in self._cluster_spans():
            reps = t["latents"][start:stop]
            kk = min(self.k, stop - start)
            if kk == stop - start:
                means = reps.mean(dim=0).expand_as(z)
            else:
                dist = t["sq_norms"][start:stop][None, :] - 2.0 * (z @ reps.T)
                means = reps[dist.topk(kk, dim=1, largest=False).indices].mean(dim=1)
            gap = ((z - means) ** 2).sum(dim=1)
            closer = (gap < best) & (y == c)  # ties keep the earlier (larger) cluster
            best = best.where(~closer, gap)
            chosen = chosen.where(~closer[:, None], means)
        return chosen, (t["owners"][None, :] == y[:, None]).any(dim=1)

    def _cluster_spans(self) -> list[tuple[int, int, int]]:
        """``(class, start, stop)`` of each cluster's rows, in :meth:`_tensor_arrays`' order."""
        spans, start = [], 0
        for c, clusters in self._by_class.items():
            for candidates in clusters:
                spans.append((c, start, start + len(candidates.latents)))
                start += len(candidates.latents)
        return spans

    def _tensor_arrays(self) -> dict:
        rows = [cand.latents for clusters in self._by_class.values() for cand in clusters]
        latents = (np.concatenate(rows) if rows
                   else np.zeros((0, self.latents.shape[1]), np.float32))
        return {"latents": latents, "sq_norms": np.einsum("ij,ij->i", latents, latents),
                "owners": np.asarray(self.classes_, dtype=np.int64)}

    def _nearest_proposal(self, c: int, Q: np.ndarray) -> np.ndarray | None:
        clusters = self._by_class.get(c)
        if not clusters:
            return None
        best = np.full(len(Q), np.inf, dtype=np.float32)
        chosen = np.zeros_like(Q)
        for candidates in clusters:
            means = self._cluster_means(candidates, Q)
            dist = np.einsum("ij,ij->i", Q - means, Q - means)
            closer = dist < best  # ties keep the earlier (larger) cluster
            best[closer] = dist[closer]
            chosen[closer] = means[closer]
        return chosen
