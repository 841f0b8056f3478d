"""Clusters of the training latents: subsample, projection, kNN graph, Louvain.

Steps 2 and 3 of the refresh, glued: the latents are optionally projected on their
principal components and subsampled, the kNN graph of the (sub)sample is built
(:mod:`~sklcc.neighbors`), Louvain partitions it (:mod:`~sklcc.communities`), and every
sample outside the subsample takes the cluster of its nearest subsampled neighbour.
``cluster_sample_size=None`` and ``cluster_n_components=None`` cluster every sample in
the full latent space, as the published method does.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.decomposition import PCA

from .communities import louvain_labels, modularity, resolve_louvain_backend
from .neighbors import NeighborSearch, edges_from_neighbors, exact_neighbors, knn_graph

__all__ = ["cluster_latents"]

# PCA solver switch: covariance_eigh up to this many latent features.
_EIGH_MAX_FEATURES = 1000
# hnswlib search breadth when assigning the non-subsampled samples to their nearest
# subsampled neighbour: on CIFAR-10 head latents ef=16 picked the same neighbour as
# ef=32 for 99.9 % of 45,000 samples, in 60 % of the time.
_ASSIGN_EF = 16
# Threads of that search: it runs beside Louvain, which holds one core for seconds with
# networkx (pure Python) but for milliseconds with networkit.
_ASSIGN_THREADS = {"networkx": max(1, (os.cpu_count() or 1) - 1)}


def cluster_latents(
    Z: np.ndarray, *, n_neighbors: int = 10, louvain_resolution: float = 1.0,
    cluster_sample_size: int | None = 5000, cluster_n_components: int | None = 64,
    random_state: int = 0, louvain_backend: str | None = None, knn_algorithm: str = "auto",
    cluster_device=None, timings: dict | None = None,
) -> tuple[np.ndarray, float]:
    """Louvain clusters of the kNN graph of ``Z``, on all samples or a subsample.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Latents in dataset order.
    n_neighbors : int, default=10
        Neighbours per sample in the graph.
    louvain_resolution : float, default=1.0
        Louvain resolution.
    cluster_sample_size : int or None, default=5000
        Cluster a seeded subsample of this size and give every other sample the
        cluster of its nearest subsampled neighbour; None clusters every sample.
    cluster_n_components : int or None, default=64
        Project the latents on this many principal components (fitted on the
        subsample, seeded) before the graph and the assignment; None keeps them whole.
        Only the clustering sees the projection; targets stay in the latent space.
    random_state : int, default=0
        Seed of the subsample, the index and Louvain.
    louvain_backend : str, optional
        Louvain engine (see :func:`~sklcc.communities.louvain_labels`).
    knn_algorithm : {"auto", "kd_tree", "brute", "hnsw", "ivf"}, default="auto"
        Search engine of the graph and the assignment on the CPU
        (:class:`~sklcc.neighbors.NeighborSearch`); ``"auto"`` decides from the
        shape of the (projected) subsample and ``n_neighbors``.
    cluster_device : str or torch.device, optional
        Run the projection, the kNN graph and the assignment with torch on this
        device (exact searches by chunked matrix products; what a GPU does fast)
        instead of on the CPU; ``knn_algorithm`` is then not used. Louvain stays
        with ``louvain_backend``.
    timings : dict, optional
        Filled with ``graph_s``, ``communities_s``, ``assign_s`` and
        ``knn_algorithm`` (the engine that ran). The assignment search runs in a
        thread beside Louvain; ``assign_s`` is the time it adds after Louvain has
        finished.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Cluster of each sample, clusters numbered by decreasing size in the graph.
    modularity : float
        Modularity of the Louvain partition of the (sub)sample graph.

    """
    timings = {} if timings is None else timings
    n = len(Z)
    rng = np.random.default_rng(random_state)
    t0 = time.perf_counter()
    if cluster_sample_size is None or n <= cluster_sample_size:
        sample = np.arange(n)
    else:
        sample = np.sort(rng.choice(n, cluster_sample_size, replace=False))
    n_components = None
    if cluster_n_components is not None and min(cluster_n_components, len(sample)) < Z.shape[1]:
        n_components = min(cluster_n_components, len(sample))
    if cluster_device is not None:
        return _cluster_on_device(Z, sample, n_neighbors, n_components, louvain_resolution,
                                  random_state, louvain_backend, cluster_device, timings, t0)
    if n_components is not None:
        # Exact eigendecomposition of the d x d covariance where d is moderate (4x
        # faster than the randomized solver at 5,000 x 512, and deterministic);
        # the seeded randomized solver for wide latents.
        solver = "covariance_eigh" if Z.shape[1] <= _EIGH_MAX_FEATURES else "randomized"
        pca = PCA(n_components, svd_solver=solver, random_state=random_state)
        Z = pca.fit(Z[sample]).transform(Z).astype(np.float32)
    Zs = Z[sample]
    k = min(n_neighbors, len(sample) - 1)
    # Every sample is searched for: the subsample for its graph, the others for the
    # assignment.
    index = NeighborSearch(Zs, knn_algorithm, n_neighbors=k + 1, n_queries=n,
                           random_state=random_state)
    edges = knn_graph(Zs, k, index=index)
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    t1 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The nearest subsampled neighbour of every other sample does not depend on
        # the communities, and every engine releases the GIL: search beside Louvain.
        threads = _ASSIGN_THREADS.get(resolve_louvain_backend(louvain_backend), -1)
        search = pool.submit(index.query, Z[rest], 1, ef=_ASSIGN_EF, n_jobs=threads)
        sample_labels = louvain_labels(
            edges, len(sample), louvain_resolution=louvain_resolution,
            random_state=random_state, louvain_backend=louvain_backend,
        )
        q = modularity(edges, sample_labels, louvain_resolution=louvain_resolution)
        t2 = time.perf_counter()
        nearest = search.result()[:, 0]
    labels = np.empty(n, dtype=np.int64)
    labels[sample] = sample_labels
    labels[rest] = sample_labels[nearest]
    timings.update(graph_s=t1 - t0, communities_s=t2 - t1, assign_s=time.perf_counter() - t2,
                   knn_algorithm=index.algorithm_)
    return labels, q


def _cluster_on_device(Z, sample, n_neighbors, n_components, louvain_resolution, random_state,
                       louvain_backend, device, timings, t0):
    """:func:`cluster_latents` with the projection and the searches in torch on ``device``."""
    import torch

    n = len(Z)
    Zt = torch.as_tensor(Z, device=device)
    if n_components is not None:
        # The principal axes of the subsample: top eigenvectors of its covariance.
        Xs = Zt[torch.as_tensor(sample, device=device)]
        mean = Xs.mean(dim=0)
        centred = Xs - mean
        cov = centred.T @ centred / max(len(sample) - 1, 1)
        _, vectors = torch.linalg.eigh(cov.double())
        axes = vectors[:, -n_components:].flip(-1).to(Zt.dtype)
        Zt = (Zt - mean) @ axes
    Zs = Zt[torch.as_tensor(sample, device=device)]
    k = min(n_neighbors, len(sample) - 1)
    edges = edges_from_neighbors(exact_neighbors(Zs, Zs, min(k + 1, len(sample))), k)
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    nearest = exact_neighbors(Zs, Zt[torch.as_tensor(rest, device=device)], 1)[:, 0]
    t1 = time.perf_counter()
    sample_labels = louvain_labels(
        edges, len(sample), louvain_resolution=louvain_resolution, random_state=random_state,
        louvain_backend=louvain_backend,
    )
    q = modularity(edges, sample_labels, louvain_resolution=louvain_resolution)
    t2 = time.perf_counter()
    labels = np.empty(n, dtype=np.int64)
    labels[sample] = sample_labels
    labels[rest] = sample_labels[nearest]
    timings.update(graph_s=t1 - t0, communities_s=t2 - t1, assign_s=0.0,
                   knn_algorithm="brute")
    return labels, q
