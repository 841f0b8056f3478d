"""Louvain communities of the kNN graph (step 3 of the refresh).

Communities are found with :func:`networkx.community.louvain_communities`, seeded.
Any networkx dispatch backend that implements Louvain (for example ``cugraph`` on a
GPU machine) can be named with ``louvain_backend``.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

__all__ = ["louvain_labels", "modularity"]


def louvain_labels(
    edges: np.ndarray, n_nodes: int, *, louvain_resolution: float = 1.0, random_state: int = 0,
    louvain_backend: str | None = None,
) -> np.ndarray:
    """Label each node with its Louvain community.

    Parameters
    ----------
    edges : ndarray of shape (n_edges, 2)
        Undirected edges between node ids ``0..n_nodes-1``.
    n_nodes : int
        Number of nodes; nodes without an edge form communities of their own.
    louvain_resolution : float, default=1.0
        Louvain resolution (``gamma``); higher values give more, smaller communities.
    random_state : int, default=0
        Seed of the Louvain node order.
    louvain_backend : str, optional
        networkx dispatch backend; None uses networkx's own implementation.

    Returns
    -------
    labels : ndarray of shape (n_nodes,), int64
        Community of each node, numbered by decreasing size (ties: smallest member).

    Examples
    --------
    >>> import numpy as np
    >>> edges = np.array([[0, 1], [1, 2], [0, 2], [3, 4], [4, 5], [3, 5], [2, 3]])
    >>> louvain_labels(edges, 6).tolist()
    [0, 0, 0, 1, 1, 1]

    """
    graph = nx.Graph()
    graph.add_nodes_from(range(n_nodes))
    graph.add_edges_from(np.asarray(edges, dtype=np.int64).tolist())
    kwargs = {} if louvain_backend is None else {"backend": louvain_backend}
    communities = nx.community.louvain_communities(
        graph, resolution=louvain_resolution, seed=int(random_state), **kwargs
    )
    communities = sorted((sorted(c) for c in communities), key=lambda c: (-len(c), c[0]))
    labels = np.empty(n_nodes, dtype=np.int64)
    for label, members in enumerate(communities):
        labels[members] = label
    return labels


def modularity(
    edges: np.ndarray, labels: np.ndarray, *, louvain_resolution: float = 1.0
) -> float:
    """Newman modularity of a partition of an unweighted, undirected graph.

    ``Q = sum_c [ L_c / m - louvain_resolution * (D_c / 2m)^2 ]`` where ``L_c`` is the number
    of edges inside community ``c``, ``D_c`` the sum of its degrees and ``m`` the
    number of edges; equal to :func:`networkx.community.modularity`.

    Parameters
    ----------
    edges : ndarray of shape (n_edges, 2)
        Each undirected edge once.
    labels : ndarray of shape (n_nodes,)
        Community of each node, non-negative integers.
    louvain_resolution : float, default=1.0
        Resolution used in the null-model term.

    Returns
    -------
    q : float
        Modularity; 0.0 for a graph without edges.

    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    m = len(edges)
    if m == 0:
        return 0.0
    labels = np.asarray(labels)
    n_comm = int(labels.max()) + 1
    a, b = labels[edges[:, 0]], labels[edges[:, 1]]
    inside = np.bincount(a[a == b], minlength=n_comm)
    degree_sum = np.bincount(a, minlength=n_comm) + np.bincount(b, minlength=n_comm)
    return float(np.sum(inside / m - louvain_resolution * (degree_sum / (2.0 * m)) ** 2))
