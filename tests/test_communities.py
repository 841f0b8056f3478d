"""Louvain engines: networkit's PLM against networkx, seeding, and the output contract."""

import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from sklcc import communities
from sklcc.communities import (
    louvain_labels,
    modularity,
    networkit_graph,
    resolve_louvain_backend,
)
from sklcc.neighbors import knn_graph

# a core dependency except on macOS, where it may be missing
nk = pytest.importorskip("networkit")

ENGINES = ["networkit", "networkx"]


@pytest.fixture(scope="module")
def blob_graph():
    # 10 overlapping Gaussian blobs in 16-d: the kNN graph has many inter-blob edges,
    # so the partition depends on the node order (seed) and the engines can differ.
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 16))
    y = np.repeat(np.arange(10), 200)
    Z = centers[y] + rng.normal(size=(2000, 16))
    return knn_graph(Z, 10), len(Z)


def planted_partition(n_blocks=4, size=25, p_in=0.5, p_out=0.005, seed=0):
    graph = nx.planted_partition_graph(n_blocks, size, p_in, p_out, seed=seed)
    return np.array(graph.edges()), np.repeat(np.arange(n_blocks), size)


def test_networkit_modularity_matches_networkx(blob_graph):
    edges, n = blob_graph
    q_nx = modularity(edges, louvain_labels(edges, n, louvain_backend="networkx"))
    q_nk = [modularity(edges, louvain_labels(edges, n, random_state=s,
                                             louvain_backend="networkit"))
            for s in range(3)]
    assert q_nx > 0.7  # a real community structure, not a trivial partition
    assert min(q_nk) >= 0.99 * q_nx


def test_default_engine_is_networkit():
    assert resolve_louvain_backend(None) == "networkit"
    assert resolve_louvain_backend("networkit") == "networkit"
    assert resolve_louvain_backend("networkx") == "networkx"


def test_networkit_same_seed_same_partition(blob_graph):
    edges, n = blob_graph
    a = louvain_labels(edges, n, random_state=7, louvain_backend="networkit")
    b = louvain_labels(edges, n, random_state=7, louvain_backend="networkit")
    np.testing.assert_array_equal(a, b)
    # the seed reaches PLM: on this noisy graph other seeds give other partitions
    others = [louvain_labels(edges, n, random_state=s, louvain_backend="networkit")
              for s in (0, 1, 2)]
    assert any((o != a).any() for o in others)


def test_networkit_same_seed_in_a_fresh_process(blob_graph, tmp_path):
    edges, n = blob_graph
    np.save(tmp_path / "edges.npy", edges)
    script = (
        "import sys, numpy as np\n"
        "from sklcc.communities import louvain_labels\n"
        "edges = np.load(sys.argv[1])\n"
        f"np.save(sys.argv[2], louvain_labels(edges, {n}, random_state=7, "
        "louvain_backend='networkit'))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "edges.npy"),
                    str(tmp_path / "labels.npy")], check=True)
    here = louvain_labels(edges, n, random_state=7, louvain_backend="networkit")
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), here)


@pytest.mark.parametrize("engine", ENGINES)
def test_recovers_planted_partition_numbered_by_size(engine):
    edges, truth = planted_partition()
    labels = louvain_labels(edges, len(truth), random_state=0, louvain_backend=engine)
    assert labels.dtype == np.int64
    assert adjusted_rand_score(truth, labels) == 1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_numbering_decreasing_size_ties_by_smallest_member(engine):
    # triangles {3, 4, 5} and {0, 1, 2} (equal size), the pair {6, 7}, isolated 8
    edges = np.array([[3, 4], [4, 5], [3, 5], [0, 1], [1, 2], [0, 2], [6, 7]])
    labels = louvain_labels(edges, 9, louvain_backend=engine)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3]


@pytest.mark.parametrize("engine", ENGINES)
def test_isolated_nodes_are_their_own_communities(engine):
    labels = louvain_labels(np.array([[1, 2]]), 5, louvain_backend=engine)
    assert labels.tolist() == [1, 0, 0, 2, 3]
    assert louvain_labels(np.empty((0, 2)), 3, louvain_backend=engine).tolist() == [0, 1, 2]


def test_repeated_and_reversed_edges_count_once():
    edges, truth = planted_partition()
    messy = np.concatenate([edges, edges[:, ::-1], edges[:50]])
    a = louvain_labels(edges, len(truth), random_state=3, louvain_backend="networkit")
    b = louvain_labels(messy, len(truth), random_state=3, louvain_backend="networkit")
    np.testing.assert_array_equal(a, b)


def test_higher_resolution_gives_more_communities():
    edges, truth = planted_partition(n_blocks=2, size=40, p_in=0.3, p_out=0.01)
    counts = [louvain_labels(edges, 80, louvain_resolution=r, random_state=3,
                             louvain_backend="networkit").max() + 1
              for r in (1e-6, 1.0, 20.0)]
    assert counts[0] == 1
    assert counts[1] == 2
    assert counts[2] > counts[1]


def test_networkit_graph_without_csr_reader(monkeypatch, blob_graph):
    # networkit < 11.3 has no GraphFromCsr: the COO path must build the same graph,
    # and so give the same partition.
    edges = np.array([[0, 1], [2, 1], [1, 2], [0, 1], [3, 4]])
    expected = {(0, 1), (1, 2), (3, 4)}
    fast = networkit_graph(edges, 6)
    knn_edges, n = blob_graph
    fast_labels = louvain_labels(knn_edges, n, random_state=2, louvain_backend="networkit")
    monkeypatch.delattr(nk, "GraphFromCsr", raising=False)
    slow = networkit_graph(edges, 6)
    for graph in (fast, slow):
        assert graph.numberOfNodes() == 6
        assert not graph.isWeighted() and not graph.isDirected()
        assert {tuple(sorted(e)) for e in graph.iterEdges()} == expected
    np.testing.assert_array_equal(
        louvain_labels(knn_edges, n, random_state=2, louvain_backend="networkit"), fast_labels
    )


def test_networkit_graph_neighbour_order_does_not_depend_on_threads():
    # networkit's parallel CSR reader adds the reverse edges in a racy order, and
    # PLM's partition depends on that order: the builder must sort it.
    rng = np.random.default_rng(0)
    edges = rng.integers(20_000, size=(200_000, 2))
    before = nk.getMaxNumberOfThreads()
    nk.setNumberOfThreads(max(2, before))
    try:
        graph = networkit_graph(edges, 20_000)
    finally:
        nk.setNumberOfThreads(before)
    for u in range(0, 20_000, 97):
        neighbours = list(graph.iterNeighbors(u))
        assert neighbours == sorted(neighbours)


def test_networkit_thread_count_is_restored():
    before = nk.getMaxNumberOfThreads()
    louvain_labels(np.array([[0, 1]]), 2, louvain_backend="networkit")
    assert nk.getMaxNumberOfThreads() == before


def test_unknown_backend_raises_naming_it():
    with pytest.raises(ValueError, match=r"louvain_backend='no-such-backend'.*networkit"):
        louvain_labels(np.array([[0, 1]]), 2, louvain_backend="no-such-backend")
    with pytest.raises(ValueError, match="louvain_backend=3"):
        resolve_louvain_backend(3)
    # networkx's dispatch backends are not engines of sklcc (untested, never measured).
    with pytest.raises(ValueError, match="louvain_backend='cugraph'"):
        resolve_louvain_backend("cugraph")


def test_without_networkit_default_falls_back_and_naming_it_raises(monkeypatch):
    monkeypatch.setattr(communities, "_has_networkit", lambda: False)
    assert resolve_louvain_backend(None) == "networkx"
    with pytest.raises(ValueError, match="louvain_backend='networkit'.*pip install networkit"):
        resolve_louvain_backend("networkit")


def test_negative_seed_raises():
    with pytest.raises(ValueError, match="random_state=-1"):
        louvain_labels(np.array([[0, 1]]), 2, random_state=-1)
