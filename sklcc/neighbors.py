"""k-nearest-neighbour graph of latent vectors, and the searches behind it.

Step 2 of the refresh: every sample is linked to its ``n_neighbors`` nearest other
samples (Euclidean distance) and the graph is made undirected by taking the union
of both directions. Only an edge list is ever materialised, so memory is linear in
the number of samples.

Four search engines (``knn_algorithm``, named as in scikit-learn's
``NearestNeighbors``), wrapped by :class:`NeighborSearch`:

- ``"kd_tree"``: scipy's exact KD-tree, on all cores; fast in few dimensions (logits).
- ``"brute"``: exact, by faiss's brute force on the CPU (``brute_force_neighbors``:
  blocked BLAS products and a heap per query); the fastest engine up to 50,000 x 50,000
  distances and for large ``k``. Where faiss is not used (macOS and Windows, see
  ``brute_force_neighbors``) and on a GPU, the same search by torch's chunked
  matrix products and ``topk`` (``exact_neighbors``).
- ``"hnsw"``: an approximate hnswlib index, built on one thread so that a seed
  reproduces the graph.
- ``"ivf"``: an approximate faiss inverted-file index (``build_ivf_index``): seeded
  k-means cells, each query compared exactly with the rows of its few nearest cells.
  On Linux only (where faiss is used).

``"auto"`` picks one from the shape of the search (:func:`resolve_knn_algorithm`).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import hnswlib
import numpy as np

# The engines' own functions (brute_force_neighbors, exact_neighbors, build_index,
# nearest_neighbors, build_ivf_index, ivf_neighbors) and unique_sorted are reached through
# NeighborSearch; they stay importable but are not part of the public API.
__all__ = ["KNN_ALGORITHMS", "NeighborSearch", "edges_from_neighbors", "knn_graph",
           "resolve_knn_algorithm"]

# hnswlib construction parameters. M=16 / ef_construction=100 give a recall above
# 0.95 for k=10 on the latents we see, at a third of the default build cost.
_M = 16
_EF_CONSTRUCTION = 100

# faiss IVF parameters: 2 sqrt(n) k-means cells (at least 39 training rows each, what
# faiss's k-means asks for), of which each query searches the 16 nearest. On the
# EfficientNet-Lite0 CIFAR-10 features (50,000, projected on 64 components) this found
# 94 % of the exact 10 nearest neighbours in a quarter of the brute force's time.
_IVF_CELLS_PER_SQRT_N = 2
_IVF_MIN_ROWS_PER_CELL = 39
_IVF_NPROBE = 16

#: Values of ``knn_algorithm``.
KNN_ALGORITHMS = ("auto", "kd_tree", "brute", "hnsw", "ivf")
# The "auto" rule, from benchmarks/knn_engines.py with faiss's brute force (docs/benchmarks.md,
# "Neighbour search engines"): the exact brute force was the fastest engine at every
# shape measured, up to 50,000 rows searched by 50,000 queries (10 to 512 features,
# k = 10 and 500). Its cost grows with rows x queries, the KD-tree's and hnswlib's about
# with the queries alone, so beyond this many pairs the KD-tree (up to this many
# features) or hnswlib (above) takes over; except from this many hits per query on, where
# hnswlib needs a search breadth of at least k and both slow with it. Hits, not graph
# neighbours: a graph asks for each sample's n_neighbors + 1 nearest (itself included),
# so the brute force is taken from n_neighbors >= 99.
_BRUTE_MAX_PAIRS = 50_000 * 50_000
_KD_TREE_MAX_FEATURES = 16
_BRUTE_MIN_NEIGHBORS = 100
# Without faiss, torch's brute force (the rule measured before faiss): the KD-tree up to
# _KD_TREE_MAX_FEATURES, else brute force for a graph alone of at most this many rows
# or from this many features on, else hnswlib (whose cheap queries win when a
# subsample's graph is followed by the assignment of every other sample).
_TORCH_BRUTE_MAX_SAMPLES = 20_000
_TORCH_BRUTE_MIN_FEATURES = 256
# Floats of one chunk of distances in torch's brute force on the CPU (64 MB); queries
# per chunk on a GPU.
_TORCH_CHUNK_FLOATS = 1 << 24
_DEVICE_CHUNK_QUERIES = 4096


def _torch_chunk(n_samples: int, device) -> int:
    """Return the queries per matrix product of torch's exact search over ``n_samples`` rows."""
    if str(device) == "cpu":
        return max(64, _TORCH_CHUNK_FLOATS // max(n_samples, 1))
    return _DEVICE_CHUNK_QUERIES


def _faiss():
    """Return the faiss module on Linux (a core dependency there), else None.

    On macOS and Windows faiss's pip wheels bundle an OpenMP runtime that clashes with
    torch's in one process (``OMP: Error #15`` or a crash in the search; faiss-wheels
    issue 73), so sklcc does not import it there, even when it is installed.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def resolve_knn_algorithm(knn_algorithm: str, n_samples: int, n_features: int,
                          n_neighbors: int, n_queries: int | None = None) -> str:
    """Name the engine ``knn_algorithm`` stands for, on a search of this shape.

    Parameters
    ----------
    knn_algorithm : {"auto", "kd_tree", "brute", "hnsw", "ivf"}
        The choice; every value but ``"auto"`` is returned as it is.
    n_samples : int
        Indexed rows.
    n_features : int
        Their width.
    n_neighbors : int
        Hits asked per query (a graph asks for ``k + 1``: each sample finds itself).
    n_queries : int, optional
        Rows that will be searched for in all; default ``n_samples`` (the graph
        alone). A subsample's graph followed by the assignment of every other sample
        to it searches ``n_samples`` rows for every sample: the brute force computes
        ``n_samples x n_queries`` distances.

    Returns
    -------
    str
        ``"kd_tree"``, ``"brute"`` or ``"hnsw"``.

    Examples
    --------
    On Linux, with faiss's brute force:

    >>> [resolve_knn_algorithm("auto", 50_000, d, 11) for d in (10, 64, 512)]
    ['brute', 'brute', 'brute']
    >>> [resolve_knn_algorithm("auto", 200_000, d, 11) for d in (10, 64)]
    ['kd_tree', 'hnsw']
    >>> resolve_knn_algorithm("auto", 200_000, 64, 501)  # large k
    'brute'
    >>> resolve_knn_algorithm("auto", 5_000, 64, 11, n_queries=200_000)  # + an assignment
    'brute'

    """
    if knn_algorithm not in KNN_ALGORITHMS:
        raise ValueError(f"knn_algorithm={knn_algorithm!r} is invalid: expected one of "
                         f"{KNN_ALGORITHMS}.")
    if knn_algorithm != "auto":
        return knn_algorithm
    n_queries = n_samples if n_queries is None else n_queries
    if n_neighbors >= _BRUTE_MIN_NEIGHBORS:
        return "brute"
    if _faiss() is not None:
        if n_samples * n_queries <= _BRUTE_MAX_PAIRS:
            return "brute"
        return "kd_tree" if n_features <= _KD_TREE_MAX_FEATURES else "hnsw"
    if n_features <= _KD_TREE_MAX_FEATURES:
        return "kd_tree"
    small = n_samples <= _TORCH_BRUTE_MAX_SAMPLES and n_queries <= n_samples
    return "brute" if small or n_features >= _TORCH_BRUTE_MIN_FEATURES else "hnsw"


class NeighborSearch:
    """Nearest rows of ``Z`` for any query, by one engine.

    The one interface to the engines of this module: built once over the indexed rows,
    then queried as often as needed. A refresh builds one over its subsample and queries
    it both for the kNN graph (:func:`knn_graph`) and for the nearest subsampled
    neighbour of every other sample.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Indexed vectors (converted to C-contiguous float32).
    knn_algorithm : {"auto", "kd_tree", "brute", "hnsw", "ivf"}, default="auto"
        Engine (see the module docstring); ``"auto"`` decides from ``Z``'s shape and
        ``n_neighbors``.
    n_neighbors : int, default=1
        The largest number of neighbours the caller will ask for (used by ``"auto"``).
    n_queries : int, optional
        Rows the caller will search for in all (used by ``"auto"``); default ``len(Z)``.
    random_state : int, default=0
        Seed of the approximate indexes (the exact engines need none).
    device : str or torch.device, optional
        Search exactly with torch on this device (``exact_neighbors``, chunked
        matrix products: what a GPU does fast); ``Z`` may then be a tensor there and
        ``knn_algorithm`` is not used. On ``"cpu"`` this is the exact search sklcc
        runs where faiss is not used (macOS, Windows).

    Attributes
    ----------
    algorithm_ : str
        The engine in use (``"brute"`` on a device).

    See Also
    --------
    sklcc.neighbors.knn_graph : The kNN graph of the indexed rows, from a search.
    sklcc.neighbors.resolve_knn_algorithm : The engine that ``"auto"`` picks.
    sklearn.neighbors.NearestNeighbors : The scikit-learn search whose engine names it uses.

    Examples
    --------
    >>> Z = np.array([[0.0], [1.0], [10.0]])
    >>> NeighborSearch(Z, "brute").query(np.array([[0.9], [9.0]]), 1).tolist()
    [[1], [2]]

    """

    def __init__(self, Z: np.ndarray, knn_algorithm: str = "auto", *, n_neighbors: int = 1,
                 n_queries: int | None = None, random_state: int = 0, device=None):
        self.device = device
        if device is not None:
            import torch

            self.Z = torch.as_tensor(Z, device=device)
            self.algorithm_ = "brute"
            return
        self.Z = np.ascontiguousarray(Z, dtype=np.float32)
        n, d = self.Z.shape
        self.algorithm_ = resolve_knn_algorithm(knn_algorithm, n, d, n_neighbors, n_queries)
        if self.algorithm_ == "hnsw":
            self._engine = build_index(self.Z, random_state=random_state)
        elif self.algorithm_ == "ivf":
            self._engine = build_ivf_index(self.Z, random_state=random_state)
        elif self.algorithm_ == "kd_tree":
            from scipy.spatial import cKDTree

            self._engine = cKDTree(self.Z)
        else:
            self._engine = self.Z  # faiss searches the array itself

    def __len__(self) -> int:
        return len(self.Z)

    def query(self, Q: np.ndarray, n_neighbors: int, *, n_jobs: int = -1,
              ef: int | None = None) -> np.ndarray:
        """Find the ``n_neighbors`` nearest indexed rows of each row of ``Q``.

        Parameters
        ----------
        Q : ndarray of shape (n_queries, n_features)
            Query vectors.
        n_neighbors : int
            Neighbours per query; at most ``len(self)``.
        n_jobs : int, default=-1
            Threads of the search; -1: all cores for the KD-tree and hnswlib, torch's
            thread count for faiss (the brute force and ``"ivf"``).
        ef : int, optional
            Search breadth of hnswlib (see ``nearest_neighbors``); ignored by the
            other engines.

        Returns
        -------
        ids : ndarray of shape (n_queries, n_neighbors), int64
            Row numbers of ``Z``, nearest first.

        """
        if self.device is not None:
            import torch

            Q = torch.as_tensor(Q, device=self.Z.device)
            return exact_neighbors(self.Z, Q, n_neighbors,
                                   chunk_size=_torch_chunk(len(self.Z), self.Z.device))
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        if len(Q) == 0:
            return np.empty((0, n_neighbors), dtype=np.int64)
        if self.algorithm_ == "hnsw":
            return nearest_neighbors(self._engine, Q, n_neighbors, n_jobs=n_jobs, ef=ef)
        if self.algorithm_ == "ivf":
            return ivf_neighbors(self._engine, self.Z, Q, n_neighbors, n_jobs=n_jobs)
        if self.algorithm_ == "kd_tree":
            # An integer k (a list of ranks is several times slower); k=1 comes back 1-d.
            _, ids = self._engine.query(Q, k=n_neighbors, workers=n_jobs)
            return ids.reshape(len(Q), n_neighbors).astype(np.int64)
        return brute_force_neighbors(self._engine, Q, n_neighbors, n_jobs=n_jobs)


def build_index(Z: np.ndarray, *, random_state: int = 0) -> hnswlib.Index:
    """Build an hnswlib L2 index over the rows of ``Z``.

    Items get the ids ``0..len(Z)-1``. The index is built with a single thread so
    that the same data and seed always give the same graph; queries may use more.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Vectors to index. Converted to C-contiguous float32.
    random_state : int, default=0
        Seed of hnswlib's level generator.

    Returns
    -------
    index : hnswlib.Index

    """
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    index = hnswlib.Index(space="l2", dim=Z.shape[1])
    index.init_index(
        max_elements=max(len(Z), 1), ef_construction=_EF_CONSTRUCTION, M=_M,
        random_seed=int(random_state),
    )
    index.set_num_threads(1)
    index.add_items(Z, np.arange(len(Z)))
    return index


def nearest_neighbors(
    index: hnswlib.Index, Q: np.ndarray, n_neighbors: int, *, n_jobs: int = -1,
    ef: int | None = None,
) -> np.ndarray:
    """Ids of the ``n_neighbors`` nearest indexed items of each row of ``Q``.

    Parameters
    ----------
    index : hnswlib.Index
        Index from ``build_index``.
    Q : ndarray of shape (n_queries, n_features)
        Query vectors.
    n_neighbors : int
        Neighbours per query; at most the number of indexed items.
    n_jobs : int, default=-1
        Query threads; -1 uses all cores.
    ef : int, optional
        hnswlib search breadth (at least ``n_neighbors``); default
        ``max(2 * n_neighbors, 32)``.

    Returns
    -------
    ids : ndarray of shape (n_queries, n_neighbors), int64
        Neighbour ids, nearest first.

    """
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    if len(Q) == 0:
        return np.empty((0, n_neighbors), dtype=np.int64)
    index.set_ef(max(2 * n_neighbors, 32) if ef is None else max(ef, n_neighbors))
    index.set_num_threads(n_jobs)
    ids, _ = index.knn_query(Q, k=n_neighbors)
    ids = ids.astype(np.int64)
    if (ids < 0).any():  # never index with -1: that silently picks the last item
        raise RuntimeError("hnswlib returned fewer neighbours than requested")
    return ids


def knn_graph(
    Z: np.ndarray, n_neighbors: int, *, random_state: int = 0, n_jobs: int = -1,
    index: NeighborSearch | None = None, knn_algorithm: str = "auto",
) -> np.ndarray:
    """Undirected k-nearest-neighbour graph as a sorted, duplicate-free edge list.

    Each sample is linked to its ``n_neighbors`` nearest *other* samples. The sample
    itself is removed from its neighbour list by id, not by position: with
    duplicated latents another sample can come back first.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Latent vectors, one row per sample.
    n_neighbors : int
        Neighbours per sample, ``1 <= n_neighbors < n_samples``.
    random_state : int, default=0
        Seed of the hnswlib index construction.
    n_jobs : int, default=-1
        Query threads.
    index : NeighborSearch, optional
        A search already built over ``Z`` (reused, not rebuilt).
    knn_algorithm : {"auto", "kd_tree", "brute", "hnsw", "ivf"}, default="auto"
        Engine of the search built when ``index`` is not given.

    Returns
    -------
    edges : ndarray of shape (n_edges, 2), int64
        Pairs ``(i, j)`` with ``i < j``, each undirected edge once, sorted.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> knn_graph(Z, 1).tolist()
    [[0, 1], [2, 3]]

    """
    n = len(Z)
    _check_n_neighbors(n_neighbors, n)
    if index is None:
        index = NeighborSearch(Z, knn_algorithm, n_neighbors=n_neighbors + 1,
                               random_state=random_state)
    ids = index.query(Z, min(n_neighbors + 1, n), n_jobs=n_jobs)
    return edges_from_neighbors(ids, n_neighbors)


def _check_n_neighbors(n_neighbors: int, n: int) -> None:
    if not 1 <= n_neighbors < n:
        raise ValueError(
            f"n_neighbors={n_neighbors} must be at least 1 and smaller than the number of "
            f"samples ({n}); lower n_neighbors or pass more samples."
        )


def edges_from_neighbors(ids: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Undirected edge list from each sample's nearest hits, the sample itself dropped by id.

    Parameters
    ----------
    ids : ndarray of shape (n_samples, n_hits)
        Nearest hits of each sample (itself possibly among them), nearest first.
    n_neighbors : int
        Neighbours kept per sample: the first ``n_neighbors`` hits that are not the
        sample itself (the self hit may be anywhere in the list, or absent when
        duplicates crowd it out).

    Returns
    -------
    edges : ndarray of shape (n_edges, 2), int64
        Pairs ``(i, j)`` with ``i < j``, each undirected edge once, sorted.

    Examples
    --------
    >>> edges_from_neighbors(np.array([[0, 1], [0, 1], [3, 2], [2, 3]]), 1).tolist()
    [[0, 1], [2, 3]]

    """
    n = len(ids)
    rows = np.repeat(np.arange(n), ids.shape[1]).reshape(ids.shape)
    keep = ids != rows
    keep &= np.cumsum(keep, axis=1) <= n_neighbors
    i, j = rows[keep], ids[keep]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = unique_sorted(lo * n + hi)
    return np.stack([key // n, key % n], axis=1)


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-d integer array, by a sort.

    What ``np.unique(a)`` returns, without its hash table: with numpy 2.4 on 10 million
    int64 keys, ``np.unique`` took 16 s and this 0.34 s (2-core CPU; the kNN graph at
    k = 500 has 25 million).

    Examples
    --------
    >>> unique_sorted(np.array([5, 1, 5, 3, 1])).tolist()
    [1, 3, 5]

    """
    a = np.sort(np.asarray(a).ravel())
    if len(a) == 0:
        return a
    return a[np.concatenate([[True], a[1:] != a[:-1]])]


def brute_force_neighbors(Z: np.ndarray, Q: np.ndarray, n_neighbors: int, *,
                          n_jobs: int = -1) -> np.ndarray:
    """Exact nearest neighbours on the CPU by faiss's brute force.

    faiss computes ``|q|^2 + |z|^2 - 2 q.z`` in blocks of BLAS products and keeps the
    ``n_neighbors`` best of each query in a heap (an argmin for one neighbour), on
    OpenMP threads: 1.4 to 3 times faster than the same search by torch's matrix
    products and ``topk`` on this project's 2-core CPU, which spent most of its time
    writing and re-reading the full rows of distances (docs/benchmarks.md, "Neighbour
    search engines"). Deterministic for a fixed input. Where faiss is not used (macOS,
    Windows: :func:`_faiss`), the same exact search by ``exact_neighbors`` in torch.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Indexed vectors.
    Q : ndarray of shape (n_queries, n_features)
        Queries.
    n_neighbors : int
        Hits per query, at most ``len(Z)``.
    n_jobs : int, default=-1
        faiss's OpenMP threads; -1 takes torch's thread count
        (``torch.get_num_threads()``), so that ``torch.set_num_threads`` bounds every
        search of a fit. Set for the calling thread only, and restored. torch's
        search uses torch's threads.

    Returns
    -------
    ids : ndarray of shape (n_queries, n_neighbors), int64
        Row numbers of ``Z``, nearest first.

    Examples
    --------
    >>> Z = np.array([[0.0], [1.0], [10.0]], dtype=np.float32)
    >>> brute_force_neighbors(Z, np.array([[0.9], [9.0]], dtype=np.float32), 2).tolist()
    [[1, 0], [2, 1]]

    """
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    if not 1 <= n_neighbors <= len(Z):
        raise ValueError(f"n_neighbors={n_neighbors} must be between 1 and the number of "
                         f"indexed rows ({len(Z)}).")
    faiss = _faiss()
    if faiss is None:
        return NeighborSearch(Z, device="cpu").query(Q, n_neighbors)
    with _faiss_threads(faiss, n_jobs):
        _, ids = faiss.knn(Q, Z, n_neighbors)
    return ids


@contextmanager
def _faiss_threads(faiss, n_jobs: int):
    """Run faiss on ``n_jobs`` OpenMP threads (-1: torch's count), then restore."""
    import torch

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads() if n_jobs == -1 else max(1, n_jobs))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_ivf_index(Z: np.ndarray, *, random_state: int = 0, n_jobs: int = -1):
    """Build a faiss inverted-file index (``IndexIVFFlat``) over the rows of ``Z``.

    Seeded k-means splits the rows into about ``2 sqrt(n)`` cells (at most one per 39
    rows, what faiss's k-means asks for); a query is then compared exactly with the
    rows of its 16 nearest cells only (``ivf_neighbors``). The k-means and the
    searches are deterministic for a fixed input, seed and thread count.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Vectors to index. Converted to C-contiguous float32.
    random_state : int, default=0
        Seed of the k-means (its initial centroids and its training subsample).
    n_jobs : int, default=-1
        faiss's OpenMP threads of the k-means; -1 takes torch's thread count.

    Returns
    -------
    index : faiss.IndexIVFFlat

    Raises
    ------
    ValueError
        Where sklcc does not use faiss (macOS, Windows; see :func:`_faiss`).

    """
    faiss = _faiss()
    if faiss is None:
        raise ValueError(
            f"knn_algorithm='ivf' needs faiss, which sklcc uses on Linux only (this is "
            f"{sys.platform!r}); use knn_algorithm='hnsw' for an approximate search or "
            f"'auto'.")
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n, d = Z.shape
    cells = max(1, min(round(_IVF_CELLS_PER_SQRT_N * np.sqrt(n)), n // _IVF_MIN_ROWS_PER_CELL))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, cells)
    index.cp.seed = int(random_state)
    with _faiss_threads(faiss, n_jobs):
        index.train(Z)
        index.add(Z)
    index.nprobe = min(_IVF_NPROBE, cells)
    return index


def ivf_neighbors(index, Z: np.ndarray, Q: np.ndarray, n_neighbors: int, *,
                  n_jobs: int = -1) -> np.ndarray:
    """Ids of the ``n_neighbors`` nearest rows of ``Z`` by an index of ``build_ivf_index``.

    A query whose searched cells hold fewer than ``n_neighbors`` rows (faiss pads
    its answer with -1) is searched exactly instead (``brute_force_neighbors``):
    an id of -1 never comes back.

    Parameters
    ----------
    index : faiss.IndexIVFFlat
        Index over the rows of ``Z``.
    Z : ndarray of shape (n_samples, n_features)
        The indexed vectors (for the exact search of short answers).
    Q : ndarray of shape (n_queries, n_features)
        Queries.
    n_neighbors : int
        Hits per query, at most ``len(Z)``.
    n_jobs : int, default=-1
        faiss's OpenMP threads; -1 takes torch's thread count.

    Returns
    -------
    ids : ndarray of shape (n_queries, n_neighbors), int64
        Row numbers of ``Z``, nearest first.

    """
    faiss = _faiss()
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    with _faiss_threads(faiss, n_jobs):
        _, ids = index.search(Q, n_neighbors)
    short = (ids < 0).any(axis=1)
    if short.any():
        ids[short] = brute_force_neighbors(Z, Q[short], n_neighbors, n_jobs=n_jobs)
    return ids


def exact_neighbors(Z, Q=None, n_neighbors: int = 1, *, chunk_size: int = 4096) -> np.ndarray:
    """Exact nearest neighbours by chunked matrix products in torch, on ``Z``'s device.

    The search a GPU does in milliseconds (on the CPU, ``brute_force_neighbors``
    is faster): squared distances
    ``|z|^2 - 2 q.z`` of one chunk of queries at a time against every row of ``Z``,
    then ``topk``. Memory is ``chunk_size x len(Z)`` floats at a time.

    Parameters
    ----------
    Z : Tensor of shape (n_samples, n_features)
        Indexed vectors, on the device the search runs on.
    Q : Tensor of shape (n_queries, n_features), optional
        Queries (default: ``Z`` itself, whose hits then include each row).
    n_neighbors : int, default=1
        Hits per query.
    chunk_size : int, default=4096
        Queries per matrix product.

    Returns
    -------
    ids : ndarray of shape (n_queries, n_neighbors), int64
        Row numbers of ``Z``, nearest first.

    Examples
    --------
    >>> import torch
    >>> Z = torch.tensor([[0.0], [1.0], [10.0]])
    >>> exact_neighbors(Z, torch.tensor([[0.9], [9.0]]), 1).tolist()
    [[1], [2]]

    """
    import torch

    Q = Z if Q is None else Q
    sq_norms = (Z * Z).sum(dim=1)
    out = []
    for start in range(0, len(Q), chunk_size):
        q = Q[start:start + chunk_size]
        # |z|^2 - 2 q.z in one fused product (|q|^2 is constant per row): three times
        # faster on a CPU than the product and the subtraction apart.
        dist = torch.addmm(sq_norms.unsqueeze(0).expand(len(q), -1), q, Z.T, alpha=-2.0)
        out.append(torch.topk(dist, n_neighbors, dim=1, largest=False).indices)
    if not out:
        return np.empty((0, n_neighbors), dtype=np.int64)
    return torch.cat(out).cpu().numpy().astype(np.int64)
