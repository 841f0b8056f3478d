"""The subsample, the projection and the assignment around the graph and Louvain.

Steps of the refresh (:func:`~sklcc.refresh.refresh_clusters` chains them): a seeded
subsample of the latents is clustered (:func:`subsample`), optionally on its principal
components (:func:`project`, on the CPU or with torch on a device), and every sample
outside it takes the cluster of its nearest subsampled neighbour
(:func:`assign_to_sample`). ``cluster_sample_size=None`` and
``cluster_n_components=None`` cluster every sample in the full latent space, as the
published method does.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np
from sklearn.decomposition import PCA
from threadpoolctl import ThreadpoolController

__all__ = ["assign_to_sample", "project", "subsample"]

# PCA solver switch: covariance_eigh up to this many latent features.
_EIGH_MAX_FEATURES = 1000
# hnswlib search breadth when assigning the non-subsampled samples to their nearest
# subsampled neighbour: on CIFAR-10 head latents ef=16 picked the same neighbour as
# ef=32 for 99.9 % of 45,000 samples, in 60 % of the time.
ASSIGN_EF = 16


def assign_threads(louvain_engine: str) -> int:
    """Threads of the assignment search, which runs beside Louvain (-1: all cores).

    networkx's Louvain (pure Python) holds one core for seconds, networkit's for
    milliseconds: beside networkx the search leaves it that core.
    """
    return max(1, (os.cpu_count() or 1) - 1) if louvain_engine == "networkx" else -1


def subsample(n_samples: int, cluster_sample_size: int | None, *,
              random_state: int = 0) -> np.ndarray:
    """Sorted ids of the clustered subsample: a seeded draw, or every sample.

    Parameters
    ----------
    n_samples : int
        Number of samples.
    cluster_sample_size : int or None
        Size of the subsample; None (or at least ``n_samples``) takes every sample.
    random_state : int, default=0
        Seed of the draw (without replacement).

    Returns
    -------
    sample : ndarray of shape (n_sample,), int64
        Sample ids in increasing order; ``n_sample`` is ``cluster_sample_size`` or,
        without a draw, ``n_samples``.

    Examples
    --------
    >>> subsample(5, None).tolist()
    [0, 1, 2, 3, 4]
    >>> len(subsample(100, 10))
    10

    """
    if cluster_sample_size is None or n_samples <= cluster_sample_size:
        return np.arange(n_samples)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_samples, cluster_sample_size, replace=False))


def project(Z: np.ndarray, sample: np.ndarray, cluster_n_components: int | None, *,
            random_state: int = 0, device=None):
    """Every row of ``Z`` on the principal axes of ``Z[sample]``, on the CPU or a device.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features), float32
        Latents.
    sample : ndarray of int
        Rows the axes are fitted on.
    cluster_n_components : int or None
        Axes kept (at most ``len(sample)``); None, or at least ``n_features``, keeps
        ``Z`` as it is.
    random_state : int, default=0
        Seed of scikit-learn's randomized solver (above 1,000 features, on the CPU).
    device : str or torch.device, optional
        Project with torch on this device (top eigenvectors of the subsample's
        covariance) and return a tensor there; None: scikit-learn's PCA on one BLAS
        thread, an ndarray.

    Returns
    -------
    X : ndarray or Tensor of shape (n_samples, n_components)
        The projected rows (float32 on the CPU), or ``Z`` itself (as a tensor on
        ``device``) when no axis is dropped.

    """
    n_components = None
    if cluster_n_components is not None and min(cluster_n_components, len(sample)) < Z.shape[1]:
        n_components = min(cluster_n_components, len(sample))
    if device is not None:
        import torch

        X = torch.as_tensor(Z, device=device)
        if n_components is None:
            return X
        Xs = take_rows(X, sample)
        mean = Xs.mean(dim=0)
        centred = Xs - mean
        cov = centred.T @ centred / max(len(sample) - 1, 1)
        _, vectors = torch.linalg.eigh(cov.double())
        axes = vectors[:, -n_components:].flip(-1).to(X.dtype)
        return (X - mean) @ axes
    if n_components is None:
        return Z
    # Exact eigendecomposition of the d x d covariance where d is moderate (4x faster
    # than the randomized solver at 5,000 x 512, and deterministic); the seeded
    # randomized solver for wide latents.
    solver = "covariance_eigh" if Z.shape[1] <= _EIGH_MAX_FEATURES else "randomized"
    pca = PCA(n_components, svd_solver=solver, random_state=random_state)
    # One BLAS thread: OpenBLAS's idle threads spin after a call and took a core from
    # the neighbour search that follows (docs/benchmarks.md, "Cost at the defaults"),
    # and the projection no longer depends on the number of cores.
    with _blas().limit(limits=1, user_api="blas"):
        return pca.fit(Z[sample]).transform(Z).astype(np.float32)


@cache
def _blas() -> ThreadpoolController:
    """Return the loaded BLAS libraries as threadpoolctl sees them (scanned once)."""
    return ThreadpoolController()


def take_rows(X, ids: np.ndarray):
    """``X[ids]`` for an ndarray or a tensor (the ids moved to the tensor's device)."""
    if isinstance(X, np.ndarray):
        return X[ids]
    import torch

    return X[torch.as_tensor(ids, device=X.device)]


def assign_to_sample(sample_labels: np.ndarray, sample: np.ndarray,
                     nearest: np.ndarray) -> np.ndarray:
    """Cluster of every sample: its own in the subsample, else its nearest subsampled one's.

    Parameters
    ----------
    sample_labels : ndarray of shape (n_sample,)
        Cluster of each subsampled sample.
    sample : ndarray of shape (n_sample,)
        Sorted ids of the subsample.
    nearest : ndarray of shape (n_samples - n_sample,)
        For each other sample, in id order, the position in ``sample`` of its nearest
        subsampled neighbour.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
        Cluster of each sample, in id order.

    Examples
    --------
    >>> assign_to_sample(np.array([4, 7]), np.array([0, 2]), np.array([1, 0])).tolist()
    [4, 7, 7, 4]

    """
    n = len(sample) + len(nearest)
    labels = np.empty(n, dtype=np.int64)
    labels[sample] = sample_labels
    labels[np.setdiff1d(np.arange(n), sample, assume_unique=True)] = sample_labels[nearest]
    return labels
