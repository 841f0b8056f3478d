"""The refresh's torch path (what runs on a GPU), checked on the CPU."""

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from sklcc.clustering import subsample
from sklcc.neighbors import edges_from_neighbors, exact_neighbors, knn_graph
from sklcc.refresh import refresh_clusters


def blobs(n_per=120, n_classes=4, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, (n_classes, d))
    y = np.repeat(np.arange(n_classes), n_per)
    return (centers[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


def brute_force_ids(Z, Q, k):
    dist = ((Q[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def test_exact_neighbors_equal_brute_force_in_chunks():
    Z, _ = blobs(n_per=50)
    Q = Z[::7] + 0.01
    got = exact_neighbors(torch.from_numpy(Z), torch.from_numpy(Q), 4, chunk_size=5)
    np.testing.assert_array_equal(got, brute_force_ids(Z, Q, 4))


def test_exact_graph_is_the_true_knn_graph_and_close_to_hnswlib():
    Z, _ = blobs()
    exact = edges_from_neighbors(exact_neighbors(torch.from_numpy(Z), None, 11), 10)
    truth = edges_from_neighbors(brute_force_ids(Z, Z, 11), 10)
    np.testing.assert_array_equal(exact, truth)
    approx = {tuple(e) for e in knn_graph(Z, 10, knn_algorithm="hnsw").tolist()}
    assert len(approx & {tuple(e) for e in exact.tolist()}) / len(exact) > 0.95


def test_device_path_matches_the_cpu_path():
    Z, y = blobs(d=40)
    for sample_size, components in [(None, None), (None, 8), (200, 8)]:
        cpu = refresh_clusters(Z, y, 4, cluster_sample_size=sample_size,
                               cluster_n_components=components, random_state=3).labels
        dev = refresh_clusters(Z, y, 4, cluster_sample_size=sample_size,
                               cluster_n_components=components, random_state=3,
                               cluster_device="cpu").labels
        assert adjusted_rand_score(cpu, dev) == 1.0
        assert adjusted_rand_score(y, dev) == 1.0


def test_device_projection_spans_the_principal_axes():
    # Distances after the torch projection equal those after scikit-learn's PCA, so
    # the subsampled samples' assignment is the nearest neighbour in that space.
    Z, y = blobs(d=30)
    state = refresh_clusters(Z, y, 4, cluster_sample_size=150, cluster_n_components=5,
                             random_state=2, cluster_device="cpu")
    labels = state.labels
    seed = int(np.random.default_rng(2).integers(2**31 - 1))  # the refresh's first draw
    sample = subsample(len(Z), 150, random_state=seed)
    P = PCA(5, svd_solver="covariance_eigh").fit(Z[sample]).transform(Z)
    rest = np.setdiff1d(np.arange(len(Z)), sample)
    nearest = sample[brute_force_ids(P[sample], P[rest], 1)[:, 0]]
    np.testing.assert_array_equal(labels[rest], labels[nearest])
    assert set(state.timings) == {"graph_s", "communities_s", "assign_s", "index_s"}
    assert state.engines["knn_algorithm"] == "brute"


def test_refresh_on_a_device_gives_the_same_flags():
    Z, y = blobs()
    y = y.copy()
    y[[3, 200, 400]] = (y[[3, 200, 400]] + 1) % 4
    cpu = refresh_clusters(Z, y, 4, cluster_sample_size=None, random_state=0)
    dev = refresh_clusters(Z, y, 4, cluster_sample_size=None, random_state=0,
                           cluster_device="cpu")
    np.testing.assert_array_equal(cpu.correct, dev.correct)
    assert np.flatnonzero(dev.misclustered).tolist() == [3, 200, 400]
