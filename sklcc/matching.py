"""Cluster-to-class matching and correctly/misclustered flags (steps 4 and 5).

Each cluster is owned by the class that holds most of its members, ties going to the
smallest class label. This equals the reference's one-to-many min-cost flow in which
every cluster has capacity one and classes are unbounded. A class may own zero, one
or several clusters.
"""

from __future__ import annotations

import numpy as np

__all__ = ["match_clusters", "correctly_clustered"]


def match_clusters(labels: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Owner class of every cluster by majority vote.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Cluster of each sample, integers ``0..n_clusters-1``.
    y : ndarray of shape (n_samples,)
        Class of each sample, integers ``0..n_classes-1``.
    n_classes : int
        Number of classes.

    Returns
    -------
    owner : ndarray of shape (n_clusters,), int64
        Class owning each cluster; ``-1`` for a cluster label with no member.

    Examples
    --------
    >>> import numpy as np
    >>> match_clusters(np.array([0, 0, 0, 1, 1]), np.array([2, 2, 1, 0, 1]), 3).tolist()
    [2, 0]

    """
    labels = np.asarray(labels, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(labels * n_classes + y, minlength=n_clusters * n_classes)
    counts = counts.reshape(n_clusters, n_classes)
    owner = counts.argmax(axis=1)  # first maximum: ties go to the smallest class
    owner[counts.sum(axis=1) == 0] = -1
    return owner


def correctly_clustered(labels: np.ndarray, y: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Flag samples whose cluster is owned by their own class.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Cluster of each sample.
    y : ndarray of shape (n_samples,)
        Class of each sample.
    owner : ndarray of shape (n_clusters,)
        Owner class of each cluster, from :func:`match_clusters`.

    Returns
    -------
    correct : ndarray of shape (n_samples,), bool
        True for correctly clustered (CC) samples, False for misclustered (MC) ones.

    """
    return np.asarray(owner)[np.asarray(labels)] == np.asarray(y)
