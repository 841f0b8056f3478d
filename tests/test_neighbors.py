"""The neighbour search engines behind the kNN graph: each checked against brute force."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklcc import LCCClassifier
from sklcc.diagnostics import history_key
from sklcc.neighbors import NeighborSearch, brute_force_neighbors, knn_graph, resolve_knn_algorithm
from sklcc.refresh import refresh_clusters


def brute_force_ids(Z, Q, k):
    dist = ((Q[:, None, :].astype(np.float64) - Z[None, :, :]) ** 2).sum(-1)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def points():
    # Continuous random points: no ties, so every exact engine has one right answer.
    rng = np.random.default_rng(0)
    return rng.normal(size=(400, 6)).astype(np.float32), rng.normal(size=(50, 6)).astype(
        np.float32)


@pytest.mark.parametrize("algorithm", ["kd_tree", "brute"])
def test_exact_engines_return_the_true_neighbours_in_order(points, algorithm):
    Z, Q = points
    search = NeighborSearch(Z, algorithm)
    assert search.algorithm_ == algorithm and len(search) == 400
    for k in (1, 7):
        np.testing.assert_array_equal(search.query(Q, k), brute_force_ids(Z, Q, k))
    assert search.query(Q[:0], 3).shape == (0, 3)


def test_brute_force_is_exact_across_faiss_blocks_and_thread_counts():
    # More queries (4,200) and rows (1,100) than one block of faiss's BLAS path
    # (4,096 x 1,024), and one neighbour (its argmin path) besides several.
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(1100, 5)).astype(np.float32)
    Q = rng.normal(size=(4200, 5)).astype(np.float32)
    truth = np.concatenate([brute_force_ids(Z, q, 6) for q in np.array_split(Q, 6)])
    import faiss

    threads = faiss.omp_get_max_threads()
    for n_jobs in (1, 2, -1):
        got = brute_force_neighbors(Z, Q, 6, n_jobs=n_jobs)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, truth)
        assert faiss.omp_get_max_threads() == threads  # the thread count is restored
    np.testing.assert_array_equal(brute_force_neighbors(Z, Q, 1), truth[:, :1])
    with pytest.raises(ValueError, match="n_neighbors=1101 must be between 1 and"):
        brute_force_neighbors(Z, Q, 1101)


def test_every_engine_builds_the_same_graph_where_it_is_exact(points):
    Z, _ = points
    truth = knn_graph(Z, 8, knn_algorithm="brute")
    np.testing.assert_array_equal(knn_graph(Z, 8, knn_algorithm="kd_tree"), truth)
    approx = {tuple(e) for e in knn_graph(Z, 8, knn_algorithm="hnsw").tolist()}
    assert len(approx & {tuple(e) for e in truth.tolist()}) / len(truth) > 0.95


def test_ivf_is_seeded_finds_most_neighbours_and_never_returns_minus_one():
    # 3,000 rows: 76 k-means cells (39 rows each; 2 sqrt(n) would be 110), 16 searched.
    rng = np.random.default_rng(5)
    centers = rng.normal(0, 3, (10, 16))
    Z = (centers[rng.integers(0, 10, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    search = NeighborSearch(Z, "ivf", random_state=0)
    assert search.algorithm_ == "ivf" and search._engine.nlist == 76
    ids = search.query(Z, 6)
    assert ids.dtype == np.int64 and ids.shape == (3000, 6)
    exact = brute_force_neighbors(Z, Z, 6)
    assert np.mean([np.isin(a, b).mean() for a, b in zip(ids, exact, strict=True)]) > 0.9
    assert (ids[:, 0] == np.arange(3000)).mean() > 0.99  # each row finds itself first
    # Same seed, same index and answers; at one thread as at two.
    np.testing.assert_array_equal(NeighborSearch(Z, "ivf", random_state=0).query(Z, 6), ids)
    np.testing.assert_array_equal(search.query(Z, 6, n_jobs=1), ids)
    # Asked for more neighbours than its 16 searched cells hold (faiss pads with -1),
    # every query is searched exactly instead.
    np.testing.assert_array_equal(search.query(Z[:40], 2990),
                                  brute_force_neighbors(Z, Z[:40], 2990))


def test_ivf_graph_is_close_to_the_exact_one_and_needs_faiss(points, monkeypatch):
    import sklcc.neighbors as neighbors

    Z, _ = points  # 400 rows: 10 cells, all of them searched, so the graph is exact
    np.testing.assert_array_equal(knn_graph(Z, 8, knn_algorithm="ivf"),
                                  knn_graph(Z, 8, knn_algorithm="brute"))
    monkeypatch.setattr(neighbors, "_faiss", lambda: None)
    with pytest.raises(ValueError, match="'ivf' needs faiss.*use knn_algorithm='hnsw'"):
        NeighborSearch(Z, "ivf")


def test_auto_follows_the_measured_rule(monkeypatch):
    # With faiss (Linux): brute force up to 50,000 x 50,000 distances, at any width and k.
    import sklcc.neighbors as neighbors

    assert neighbors._faiss() is not None
    for d in (10, 64, 512):
        assert resolve_knn_algorithm("auto", 50_000, d, 11) == "brute"
    assert resolve_knn_algorithm("auto", 5_000, 64, 11, n_queries=500_000) == "brute"
    # Beyond: the KD-tree in few dimensions, hnswlib above, brute force for large k.
    assert resolve_knn_algorithm("auto", 50_001, 16, 99) == "kd_tree"
    assert resolve_knn_algorithm("auto", 50_001, 17, 99) == "hnsw"
    assert resolve_knn_algorithm("auto", 5_000, 64, 11, n_queries=500_001) == "hnsw"
    assert resolve_knn_algorithm("auto", 200_000, 10, 100) == "brute"
    assert resolve_knn_algorithm("hnsw", 10, 2, 1) == "hnsw"  # an explicit choice stays
    with pytest.raises(ValueError, match="knn_algorithm='ball_tree' is invalid"):
        resolve_knn_algorithm("ball_tree", 10, 2, 1)
    # Without faiss (macOS, Windows): the rule measured for torch's brute force.
    monkeypatch.setattr(neighbors, "_faiss", lambda: None)
    assert resolve_knn_algorithm("auto", 50_000, 10, 5) == "kd_tree"  # logits
    assert resolve_knn_algorithm("auto", 50_000, 10, 501) == "brute"  # large k
    assert resolve_knn_algorithm("auto", 5_000, 64, 10) == "brute"  # a small graph alone
    assert resolve_knn_algorithm("auto", 50_000, 512, 5) == "brute"  # wide latents
    assert resolve_knn_algorithm("auto", 50_000, 64, 10) == "hnsw"
    assert resolve_knn_algorithm("auto", 5_000, 64, 11, n_queries=50_000) == "hnsw"


def test_brute_force_without_faiss_is_torch_and_exact(points, monkeypatch):
    import sklcc.neighbors as neighbors

    Z, Q = points
    monkeypatch.setattr(neighbors, "_faiss", lambda: None)
    monkeypatch.setattr(neighbors, "_TORCH_CHUNK_FLOATS", 400 * 3)  # 64-row chunks at least
    np.testing.assert_array_equal(brute_force_neighbors(Z, Q, 7), brute_force_ids(Z, Q, 7))
    np.testing.assert_array_equal(NeighborSearch(Z, "brute").query(Z, 5),
                                  brute_force_ids(Z, Z, 5))


def test_clustering_records_the_engine_and_exact_engines_agree(monkeypatch):
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 6, (4, 24))
    Z = (centers[np.repeat(np.arange(4), 150)] + rng.normal(size=(600, 24))).astype(np.float32)
    y = np.repeat(np.arange(4), 150)
    results = {}
    for algorithm in ("kd_tree", "brute"):
        results[algorithm] = refresh_clusters(Z, y, 4, cluster_sample_size=300,
                                              cluster_n_components=8, knn_algorithm=algorithm,
                                              random_state=2)
        assert results[algorithm].engines["knn_algorithm"] == algorithm
    np.testing.assert_array_equal(results["kd_tree"].labels, results["brute"].labels)
    # "auto" counts the assignment's queries: a 300-sample subsample is searched by all
    # 600 samples (its graph, then the assignment of the 300 others).
    import sklcc.neighbors as neighbors

    monkeypatch.setattr(neighbors, "_BRUTE_MAX_PAIRS", 300 * 600)
    state = refresh_clusters(Z, y, 4, cluster_sample_size=300, cluster_n_components=None)
    assert state.engines["knn_algorithm"] == "brute"
    state = refresh_clusters(Z, y, 4, cluster_sample_size=None, cluster_n_components=None)
    assert state.engines["knn_algorithm"] == "hnsw"  # 600 x 600 distances, 24 features


def _module():
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


@pytest.mark.parametrize("algorithm", ["kd_tree", "ivf"])
def test_classifier_checks_and_records_the_engine(algorithm):
    X, y = load_digits(return_X_y=True)
    X = (X[:300] / 16).astype(np.float32)
    net = LCCClassifier(_module, lcc_layers="2", max_epochs=2, batch_size=64, train_split=None,
                        criterion=torch.nn.CrossEntropyLoss, knn_algorithm=algorithm,
                        cluster_sample_size=None, random_state=0, verbose=0).fit(X, y[:300])
    assert net.history[-1, history_key("knn_algorithm")] == algorithm
    with pytest.raises(ValueError, match="knn_algorithm"):
        net.set_params(knn_algorithm="faiss").fit(X, y[:300])
