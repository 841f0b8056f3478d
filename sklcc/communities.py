"""Louvain communities of the kNN graph (step 3 of the refresh).

Two engines find the communities, both seeded:

- ``"networkit"``: networkit's PLM (Louvain in C++), run on one thread with a
  seeded random node order and the refinement pass. The default where networkit
  is installed: two orders of magnitude faster than networkx on kNN graphs, with
  a modularity at least as high (``benchmarks/community_engines.py``).
- ``"networkx"``: :func:`networkx.community.louvain_communities`, pure Python.

:func:`resolve_louvain_backend` says which engine a ``louvain_backend`` value runs.
"""

from __future__ import annotations

import importlib.util
import numbers

import networkx as nx
import numpy as np
import scipy.sparse as sp

from .neighbors import unique_sorted

__all__ = ["louvain_labels", "modularity", "networkit_graph", "resolve_louvain_backend"]

# PLM settings, chosen by measurement (benchmarks/community_engines.py): turbo keeps
# the per-community affinities in a dense array (4-5x faster than its map, O(n)
# memory); refine adds a second move pass after each prolongation (+30 % time,
# +0.005-0.02 modularity on noisy kNN graphs, which puts it above networkx's).
# "none randomized" is the sequential strategy that visits nodes in a random order:
# the only one on which the seed has an effect.
_PLM_SETTINGS = {"refine": True, "turbo": True, "par": "none randomized"}


def _has_networkit() -> bool:
    return importlib.util.find_spec("networkit") is not None


def resolve_louvain_backend(louvain_backend: str | None) -> str:
    """Name of the engine that ``louvain_backend`` runs, checked to be installed.

    Parameters
    ----------
    louvain_backend : {None, "networkit", "networkx"}
        None for the default engine (``"networkit"`` when installed, else
        ``"networkx"``).

    Returns
    -------
    engine : str
        ``"networkit"`` or ``"networkx"``.

    Raises
    ------
    ValueError
        If the named engine is unknown or not installed; the message lists the
        installed choices.

    Examples
    --------
    >>> resolve_louvain_backend("networkx")
    'networkx'

    """
    if louvain_backend is None:
        return "networkit" if _has_networkit() else "networkx"
    if louvain_backend == "networkit" and _has_networkit():
        return "networkit"
    if isinstance(louvain_backend, str) and louvain_backend == "networkx":
        return "networkx"
    installed = (["networkit"] if _has_networkit() else []) + ["networkx"]
    raise ValueError(
        f"louvain_backend={louvain_backend!r} is not an installed Louvain engine; "
        f"installed: {installed}. Pass None (the fastest installed engine), one of "
        "these, or install networkit (`pip install networkit`)."
    )


def louvain_labels(
    edges: np.ndarray, n_nodes: int, *, louvain_resolution: float = 1.0, random_state: int = 0,
    louvain_backend: str | None = None,
) -> np.ndarray:
    """Label each node with its Louvain community.

    Parameters
    ----------
    edges : ndarray of shape (n_edges, 2)
        Undirected edges between node ids ``0..n_nodes-1``; repeated edges count once.
    n_nodes : int
        Number of nodes; nodes without an edge form communities of their own.
    louvain_resolution : float, default=1.0
        Louvain resolution (``gamma``); higher values give more, smaller communities.
    random_state : int, default=0
        Seed of the Louvain node order, ``>= 0``. The same seed and engine give the
        same partition.
    louvain_backend : str, optional
        Engine, see :func:`resolve_louvain_backend`; None runs networkit's PLM
        when networkit is installed, else networkx.

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
    engine = resolve_louvain_backend(louvain_backend)
    if not (isinstance(random_state, numbers.Integral) and random_state >= 0):
        raise ValueError(
            f"random_state={random_state!r} is invalid: expected an integer >= 0 "
            "(the Louvain seed); draw one with numpy.random.Generator.integers(2**31)."
        )
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if engine == "networkit":
        labels = _networkit_louvain(edges, n_nodes, louvain_resolution, int(random_state))
    else:
        labels = _networkx_louvain(edges, n_nodes, louvain_resolution, int(random_state))
    return _number_by_size(labels)


def _networkx_louvain(edges: np.ndarray, n_nodes: int, resolution: float, seed: int
                      ) -> np.ndarray:
    graph = nx.Graph()
    graph.add_nodes_from(range(n_nodes))
    graph.add_edges_from(edges.tolist())
    communities = nx.community.louvain_communities(
        graph, resolution=resolution, seed=seed
    )
    labels = np.empty(n_nodes, dtype=np.int64)
    for label, members in enumerate(communities):
        labels[list(members)] = label
    return labels


def networkit_graph(edges: np.ndarray, n_nodes: int):
    """Undirected, unweighted networkit graph of an edge list, built without Python loops.

    Neighbours are sorted by id, so the graph does not depend on how many threads
    built it: networkit's parallel readers add reverse edges in a racy order, and
    PLM's result depends on the neighbour order.

    Parameters
    ----------
    edges : ndarray of shape (n_edges, 2)
        Undirected edges between node ids ``0..n_nodes-1``, in either direction;
        repeated edges count once.
    n_nodes : int
        Number of nodes.

    Returns
    -------
    graph : networkit.Graph
        Graph of ``n_nodes`` nodes and the distinct edges, neighbours sorted by id.

    """
    import networkit as nk

    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    lo, hi = edges.min(axis=1), edges.max(axis=1)
    if hasattr(nk, "GraphFromCsr"):  # networkit >= 11.3: 5-7x faster than from COO
        # One triangle of the adjacency matrix: the undirected reading adds the
        # reverse edges, and the CSR conversion merges repeats.
        upper = sp.csr_matrix((np.ones(len(edges)), (lo, hi)), shape=(n_nodes, n_nodes))
        graph = nk.GraphFromCsr(upper, directed=False)
    else:
        key = unique_sorted(lo * n_nodes + hi)
        graph = nk.GraphFromCoo(
            (key // n_nodes, key % n_nodes), n=n_nodes, weighted=False, directed=False
        )
    graph.sortEdges()
    return graph


def _networkit_louvain(
    edges: np.ndarray, n_nodes: int, resolution: float, seed: int
) -> np.ndarray:
    import networkit as nk

    threads = nk.getMaxNumberOfThreads()
    # One thread: a parallel move phase depends on thread timing (not reproducible),
    # and the refresh runs the assignment search beside Louvain on the other cores.
    nk.setNumberOfThreads(1)
    try:
        graph = networkit_graph(edges, n_nodes)
        nk.engineering.setSeed(seed, False)
        plm = nk.community.PLM(graph, gamma=resolution, **_PLM_SETTINGS)
        labels = np.asarray(plm.run().getPartition().getVector(), dtype=np.int64)
    finally:
        nk.setNumberOfThreads(threads)
    return labels


def _number_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber communities ``0, 1, ...`` by decreasing size, ties by smallest member.

    Parameters
    ----------
    labels : ndarray of shape (n_nodes,)
        Any integer community ids.

    Returns
    -------
    labels : ndarray of shape (n_nodes,), int64
        The same partition, community 0 the largest.

    Examples
    --------
    >>> _number_by_size(np.array([7, 3, 3, 9, 7])).tolist()
    [0, 1, 1, 2, 0]

    """
    _, inverse = np.unique(np.asarray(labels).ravel(), return_inverse=True)
    inverse = inverse.reshape(-1)
    # np.unique on the dense ids gives each community's first (smallest) member.
    _, first = np.unique(inverse, return_index=True)
    order = np.lexsort((first, -np.bincount(inverse)))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[inverse]


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
