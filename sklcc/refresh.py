"""The refresh: from the training latents to flags and targets.

Pure numpy, run between epochs; each step is a function of its own module, and this
one chains them with named intermediate results::

    latents -> clusters (kNN graph + Louvain) -> owners -> flags -> targets

:class:`ClusterState` is what the following epochs use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .clustering import cluster_latents
from .diagnostics import refresh_stats
from .matching import correctly_clustered, match_clusters
from .representatives import KnnMeanTargets, RepresentativeIndex, select_representatives

__all__ = ["ClusterState", "refresh_clusters"]


@dataclass
class ClusterState:
    """What a refresh leaves for the following epochs.

    Attributes
    ----------
    labels : ndarray of shape (n_samples,)
        Cluster of each training sample, in dataset order.
    owner : ndarray of shape (n_clusters,)
        Class owning each cluster.
    correct : ndarray of shape (n_samples,), bool
        Correctly clustered flags, in dataset order.
    targets : RepresentativeIndex or KnnMeanTargets
        What the misclustered samples are pulled towards (``query(Z, y)``).
    stats : dict
        Diagnostics (:func:`~sklcc.diagnostics.refresh_stats`).
    timings : dict
        Seconds spent in ``graph_s``, ``communities_s``, ``assign_s`` and ``index_s``,
        and the neighbour search engine that ran (``knn_algorithm``).

    """

    labels: np.ndarray
    owner: np.ndarray
    correct: np.ndarray
    targets: RepresentativeIndex | KnnMeanTargets
    stats: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    @cached_property
    def misclustered(self) -> np.ndarray:
        """Misclustered flags, in dataset order (computed once, read every batch)."""
        return ~self.correct


def refresh_clusters(
    Z: np.ndarray, y: np.ndarray, n_classes: int, *, n_neighbors: int = 10,
    louvain_resolution: float = 1.0, n_representatives: int | None = 32,
    lcc_target: str = "nearest", lcc_target_k: int | None = None,
    cluster_sample_size: int | None = 5000, cluster_n_components: int | None = 64,
    louvain_backend: str | None = None, knn_algorithm: str = "auto", cluster_device=None,
    random_state: int | np.random.Generator = 0,
) -> ClusterState:
    """Run one refresh on the training latents.

    The keyword arguments are the estimator's parameters of the same names
    (:class:`~sklcc.LCCClassifier`).

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Training latents, row ``i`` belonging to training sample ``i``.
    y : ndarray of shape (n_samples,)
        Training labels, integers ``0..n_classes-1``.
    n_classes : int
        Number of classes.
    n_neighbors : int, default=10
        Neighbours per sample in the kNN graph.
    louvain_resolution : float, default=1.0
        Louvain resolution.
    n_representatives : int or None, default=32
        Representatives drawn per cluster; None keeps all correctly clustered samples
        (and must be None with ``lcc_target="knn-mean"``).
    lcc_target : {"nearest", "knn-mean"}, default="nearest"
        The nearest representative, or the published mean of the ``lcc_target_k``
        nearest candidates per owned cluster (:mod:`~sklcc.representatives`).
    lcc_target_k : int or None, default=None
        ``k`` of ``"knn-mean"``; None takes ``n_neighbors``, as the published code does.
    cluster_sample_size : int or None, default=5000
        Size of the clustered subsample (see :func:`~sklcc.clustering.cluster_latents`).
    cluster_n_components : int or None, default=64
        Principal components the clustering works in.
    louvain_backend : str, optional
        Louvain engine.
    knn_algorithm : {"auto", "kd_tree", "brute", "hnsw", "ivf"}, default="auto"
        Neighbour search of the graph and the assignment on the CPU.
    cluster_device : str or torch.device, optional
        Device for the projection, the graph and the assignment (see
        :func:`~sklcc.clustering.cluster_latents`); None keeps them on the CPU.
    random_state : int or numpy.random.Generator, default=0
        Seeds the subsample, the graph, Louvain and the representative draw.

    Returns
    -------
    state : ClusterState

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = np.concatenate([rng.normal(0, 1, (30, 4)), rng.normal(8, 1, (30, 4))])
    >>> y = np.repeat([0, 1], 30); y[0] = 1   # one sample sits in the other class's blob
    >>> state = refresh_clusters(Z, y, 2, n_neighbors=5)
    >>> int(state.misclustered.sum()), bool(state.misclustered[0])
    (1, True)

    """
    rng = np.random.default_rng(random_state)
    seed = int(rng.integers(2**31 - 1))
    Z = np.ascontiguousarray(Z, dtype=np.float32).reshape(len(Z), -1)
    y = np.asarray(y, dtype=np.int64)
    timings: dict = {}
    labels, q = cluster_latents(
        Z, n_neighbors=n_neighbors, louvain_resolution=louvain_resolution,
        cluster_sample_size=cluster_sample_size, cluster_n_components=cluster_n_components,
        random_state=seed, louvain_backend=louvain_backend, knn_algorithm=knn_algorithm,
        cluster_device=cluster_device, timings=timings,
    )
    t0 = time.perf_counter()
    owner = match_clusters(labels, y, n_classes)
    correct = correctly_clustered(labels, y, owner)
    if lcc_target == "knn-mean":
        candidates = np.flatnonzero(correct)
        k = n_neighbors if lcc_target_k is None else lcc_target_k
        targets = KnnMeanTargets(Z[candidates], labels[candidates], y[candidates], k=k,
                                 random_state=seed)
    else:
        chosen = select_representatives(labels, correct, n_representatives, rng)
        targets = RepresentativeIndex(Z[chosen], y[chosen], random_state=seed)
    timings["index_s"] = time.perf_counter() - t0
    stats = refresh_stats(labels, y, owner, correct, np.isin(y, targets.classes_), n_classes,
                          q, len(targets))
    return ClusterState(labels, owner, correct, targets, stats, timings)
