"""The refresh: from the training latents to flags and targets, as one chain.

Pure numpy, run between epochs (on a GPU the projection and the searches run there
too). :func:`refresh_clusters` reads top to bottom::

    subsample -> projection -> neighbour search (kNN graph) -> Louvain
      -> assignment of the rest -> owners -> flags -> targets

each step a function of the module named after it. :class:`RefreshParams` carries the
estimator's knobs, built once per refresh; :class:`ClusterState` is what the following
epochs use, with the engines that ran and the seconds of each step.
"""

from __future__ import annotations

import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import numpy as np

from .clustering import ASSIGN_EF, assign_threads, assign_to_sample, project, subsample, take_rows
from .communities import louvain_labels, modularity, resolve_louvain_backend
from .diagnostics import refresh_stats
from .matching import correctly_clustered, match_clusters
from .neighbors import NeighborSearch, knn_graph
from .representatives import KnnMeanTargets, RepresentativeIndex, make_targets

__all__ = ["ClusterState", "RefreshParams", "refresh_clusters"]


@dataclass(frozen=True)
class RefreshParams:
    """The estimator's refresh parameters, read once per refresh.

    Each parameter is kept as the attribute of the same name and, except
    ``cluster_device``, is the :class:`~sklcc.LCCClassifier` parameter of that name,
    documented there in full (its signature holds the defaults; :meth:`defaults` reads
    them from there).

    Parameters
    ----------
    n_neighbors : int
        Neighbours per sample in the kNN graph.
    louvain_resolution : float
        Louvain resolution: higher gives more, smaller clusters.
    n_representatives : "auto", int or None
        Correctly clustered samples drawn per cluster as targets of ``"nearest"``.
    lcc_target : {"nearest", "knn-mean"}
        Where a misclustered sample is pulled.
    lcc_target_k : int or None
        ``k`` of ``"knn-mean"``; None uses ``n_neighbors``.
    cluster_sample_size : int or None
        Size of the subsample the graph and Louvain run on; None clusters every sample.
    cluster_n_components : int or None
        Principal components the graph and the assignment work on; None keeps the
        latents whole.
    louvain_backend : str or None
        Louvain engine; None for the default.
    knn_algorithm : {"auto", "kd_tree", "brute", "hnsw", "ivf"}
        Neighbour search of the graph and of the assignment to the subsample.
    cluster_device : str or torch.device, optional
        Device of the projection and the neighbour searches (torch's exact search);
        None keeps them on the CPU with ``knn_algorithm``.

    See Also
    --------
    sklcc.LCCClassifier : Documents each parameter in full.
    sklcc.refresh.refresh_clusters : Runs one refresh with them.
    sklcc.refresh.ClusterState : What the refresh leaves.

    Examples
    --------
    >>> RefreshParams.defaults(n_neighbors=5).n_neighbors
    5

    """

    n_neighbors: int
    louvain_resolution: float
    n_representatives: int | str | None
    lcc_target: str
    lcc_target_k: int | None
    cluster_sample_size: int | None
    cluster_n_components: int | None
    louvain_backend: str | None
    knn_algorithm: str
    cluster_device: object = None

    @classmethod
    def from_estimator(cls, estimator, **overrides) -> RefreshParams:
        """Read the parameters of an estimator; a CUDA ``device`` clusters there.

        Parameters
        ----------
        estimator : LCCClassifier or any object with these attributes
            Read by attribute name; ``device`` decides ``cluster_device``.
        **overrides
            Fields to replace.

        Returns
        -------
        params : RefreshParams

        """
        values = {f.name: getattr(estimator, f.name) for f in fields(cls)
                  if f.name != "cluster_device"}
        device = getattr(estimator, "device", None)
        values["cluster_device"] = device if str(device).startswith("cuda") else None
        return cls(**{**values, **overrides})

    @classmethod
    def defaults(cls, **overrides) -> RefreshParams:
        """Read the defaults of :class:`~sklcc.LCCClassifier`'s signature, then ``overrides``.

        Parameters
        ----------
        **overrides
            Fields to replace, by name.

        Returns
        -------
        params : RefreshParams
            The defaults, with ``overrides`` in place of the named fields.

        """
        from .classifier import LCCClassifier

        signature = inspect.signature(LCCClassifier).parameters
        values = {f.name: signature[f.name].default for f in fields(cls)
                  if f.name in signature}
        return cls(**{**values, **overrides})


@dataclass
class ClusterState:
    """What a refresh leaves for the following epochs.

    Built by :func:`refresh_clusters`; each parameter is kept as the attribute of the
    same name.

    Parameters
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
        Seconds of each step: ``graph_s`` (subsample, projection, graph),
        ``communities_s`` (Louvain), ``assign_s`` (what the assignment search, run
        beside Louvain, added after it), ``index_s`` (owners, flags, targets).
    engines : dict
        The engines that ran: ``louvain_backend`` and ``knn_algorithm``
        (:data:`~sklcc.diagnostics.ENGINE_KEYS`).

    See Also
    --------
    sklcc.refresh.refresh_clusters : Builds it.
    sklcc.callbacks.LatentClusterRefresh : Keeps one per latent layer in ``net.lcc_states_``.
    sklcc.diagnostics.refresh_stats : Its ``stats``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = np.concatenate([rng.normal(0, 1, (30, 4)), rng.normal(8, 1, (30, 4))])
    >>> y = np.repeat([0, 1], 30); y[0] = 1   # one sample sits in the other class's blob
    >>> state = refresh_clusters(Z, y, 2, n_neighbors=5)
    >>> state.labels.shape, sorted(set(state.owner.tolist())), np.flatnonzero(~state.correct)
    ((60,), [0, 1], array([0]))
    >>> sorted(state.timings), sorted(state.engines)
    (['assign_s', 'communities_s', 'graph_s', 'index_s'], ['knn_algorithm', 'louvain_backend'])

    """

    labels: np.ndarray
    owner: np.ndarray
    correct: np.ndarray
    targets: RepresentativeIndex | KnnMeanTargets
    stats: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    engines: dict = field(default_factory=dict)

    @cached_property
    def misclustered(self) -> np.ndarray:
        """Misclustered flags, in dataset order (computed once, read every batch)."""
        return ~self.correct


def refresh_clusters(
    Z: np.ndarray, y: np.ndarray, n_classes: int, params: RefreshParams | None = None, *,
    random_state: int | np.random.Generator = 0, **overrides,
) -> ClusterState:
    """Run one refresh on the training latents.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Training latents, row ``i`` belonging to training sample ``i``.
    y : ndarray of shape (n_samples,)
        Training labels, integers ``0..n_classes-1``.
    n_classes : int
        Number of classes.
    params : RefreshParams, optional
        The estimator's parameters; None takes :meth:`RefreshParams.defaults`.
    random_state : int or numpy.random.Generator, default=0
        Seeds the subsample, the projection, the graph, Louvain and the
        representative draw.
    **overrides
        Fields of ``params`` to replace, by name (``n_neighbors=5``, ...).

    Returns
    -------
    state : ClusterState
        The clusters, flags and targets, with the refresh's diagnostics, timings and
        engines.

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
    p = RefreshParams.defaults() if params is None else params
    p = replace(p, **overrides) if overrides else p
    rng = np.random.default_rng(random_state)
    seed = int(rng.integers(2**31 - 1))
    Z = np.ascontiguousarray(Z, dtype=np.float32).reshape(len(Z), -1)
    y = np.asarray(y, dtype=np.int64)
    louvain_engine = resolve_louvain_backend(p.louvain_backend)
    lap = _stopwatch()

    sample = subsample(len(Z), p.cluster_sample_size, random_state=seed)
    X = project(Z, sample, p.cluster_n_components, random_state=seed, device=p.cluster_device)
    Xs = take_rows(X, sample)
    k = min(p.n_neighbors, len(sample) - 1)
    # Every sample is searched for: the subsample for its graph, the others for the
    # assignment.
    search = NeighborSearch(Xs, p.knn_algorithm, n_neighbors=k + 1, n_queries=len(Z),
                            random_state=seed, device=p.cluster_device)
    edges = knn_graph(Xs, k, index=search)
    rest = np.setdiff1d(np.arange(len(Z)), sample, assume_unique=True)
    graph_s = lap()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The nearest subsampled neighbour of every other sample does not depend on the
        # communities, and every engine releases the GIL: search beside Louvain.
        nearest = pool.submit(search.query, take_rows(X, rest), 1, ef=ASSIGN_EF,
                              n_jobs=assign_threads(louvain_engine))
        sample_labels = louvain_labels(edges, len(sample), louvain_resolution=p.louvain_resolution,
                                       random_state=seed, louvain_backend=louvain_engine)
        q = modularity(edges, sample_labels, louvain_resolution=p.louvain_resolution)
        communities_s = lap()
        labels = assign_to_sample(sample_labels, sample, nearest.result()[:, 0])
    assign_s = lap()
    owner = match_clusters(labels, y, n_classes)
    correct = correctly_clustered(labels, y, owner)
    targets = make_targets(Z, y, labels, correct, p.lcc_target,
                           n_representatives=p.n_representatives,
                           k=p.n_neighbors if p.lcc_target_k is None else p.lcc_target_k,
                           rng=rng, random_state=seed)
    index_s = lap()

    stats = refresh_stats(labels, y, owner, correct, np.isin(y, targets.classes_), n_classes,
                          q, len(targets))
    timings = {"graph_s": graph_s, "communities_s": communities_s, "assign_s": assign_s,
               "index_s": index_s}
    engines = {"louvain_backend": louvain_engine, "knn_algorithm": search.algorithm_}
    return ClusterState(labels, owner, correct, targets, stats, timings, engines)


def _stopwatch():
    """Return a function giving the seconds since its previous call (or creation)."""
    last = [time.perf_counter()]

    def lap() -> float:
        now = time.perf_counter()
        seconds, last[0] = now - last[0], now
        return seconds

    return lap
