"""The two targets: 'nearest' representative and the published 'knn-mean'."""

import numpy as np
import pytest
import torch

from sklcc.loss import lcc_loss
from sklcc.refresh import refresh_clusters
from sklcc.representatives import KnnMeanTargets, RepresentativeIndex

# Class 0 owns clusters 0 and 1, class 1 owns cluster 2 (only correctly clustered
# samples are candidates).
LATENTS = np.array([[0.0, 0.0], [2.5, 0.0], [10.0, 0.0],   # cluster 0
                    [0.0, 5.0], [0.0, 7.0],                # cluster 1
                    [50.0, 50.0]])                         # cluster 2
CLUSTERS = np.array([0, 0, 0, 1, 1, 2])
CLASSES = np.array([0, 0, 0, 0, 0, 1])


def direct_term(z, y, latents, clusters, classes, k):
    """||z - t|| / sqrt(d), t the mean of the k nearest per owned cluster, min over them."""
    best = None
    for cluster in np.unique(clusters[classes == y]):
        members = latents[clusters == cluster]
        order = np.argsort(np.linalg.norm(members - z, axis=1))
        mean = members[order[:k]].mean(axis=0)
        dist = np.linalg.norm(z - mean)
        best = dist if best is None else min(best, dist)
    return best / np.sqrt(len(z))


@pytest.mark.parametrize(("k", "target"), [
    (1, [0.0, 5.0]),     # nearest single samples: cluster 1's (0, 5) beats (0, 0)
    (2, [1.25, 0.0]),    # means of two: cluster 0's (1.25, 0) beats cluster 1's (0, 6)
    # cluster 1 has two candidates and uses both, (0, 6) at sqrt(10) = 3.16, which
    # beats the mean of cluster 0's three, (4.17, 0) at 4.36
    (3, [0.0, 6.0]),
])
def test_knn_mean_by_hand(k, target):
    z = np.array([[1.0, 3.0]])
    targets = KnnMeanTargets(LATENTS, CLUSTERS, CLASSES, k=k)
    t, found = targets.query(z, np.array([0]))
    assert found.tolist() == [True]
    np.testing.assert_allclose(t[0], target, rtol=1e-6)
    term = lcc_loss(torch.tensor(z, dtype=torch.float32), torch.from_numpy(t))
    expected = direct_term(z[0], 0, LATENTS, CLUSTERS, CLASSES, k)
    assert float(term) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("exact_max", "rows_per_query"), [(8192, 40), (8192, 1), (0, 40)],
                         ids=["averaging-product", "gathered-rows", "hnswlib"])
def test_knn_mean_equals_the_formula_on_random_clusters(exact_max, rows_per_query):
    # 40 queries at once average by a selection product (queries x k > candidates per
    # cluster); one at a time, by gathering their k rows.
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(300, 6))
    clusters = rng.integers(0, 7, size=300)
    owner = np.array([0, 0, 1, 1, 1, 2, 2])
    classes = owner[clusters]
    targets = KnnMeanTargets(latents, clusters, classes, k=5, exact_max=exact_max)
    Z = rng.normal(size=(40, 6))
    y = rng.integers(0, 3, size=40)
    answers = [targets.query(Z[i:i + rows_per_query], y[i:i + rows_per_query])
               for i in range(0, 40, rows_per_query)]
    t, found = (np.concatenate(parts) for parts in zip(*answers, strict=True))
    assert found.all()
    got = torch.linalg.vector_norm(torch.from_numpy(Z - t), dim=1) / np.sqrt(6)
    expected = [direct_term(Z[b], y[b], latents, clusters, classes, 5) for b in range(40)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_knn_mean_with_k_1_equals_nearest_over_every_candidate():
    rng = np.random.default_rng(1)
    latents = rng.normal(size=(200, 4)).astype(np.float32)
    clusters = rng.integers(0, 6, size=200)
    classes = np.array([0, 1, 1, 2, 2, 2])[clusters]
    Z = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    knn, _ = KnnMeanTargets(latents, clusters, classes, k=1).query(Z, y)
    nearest, _ = RepresentativeIndex(latents, classes).query(Z, y)
    np.testing.assert_array_equal(knn, nearest)


def test_class_without_cluster_has_no_target():
    targets = KnnMeanTargets(LATENTS, CLUSTERS, CLASSES, k=2)
    t, found = targets.query(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([1, 7]))
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(t[1], [0.0, 0.0])


def test_refresh_with_knn_mean_uses_only_correctly_clustered_candidates():
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(10, 1, (40, 3))])
    y = np.repeat([0, 1], 40)
    y[:3] = 1  # three class-1 samples sit in class 0's blob: misclustered
    state = refresh_clusters(Z, y, 2, n_neighbors=5, n_representatives=None,
                             lcc_target="knn-mean", cluster_sample_size=None,
                             cluster_n_components=None)
    assert isinstance(state.targets, KnnMeanTargets)
    assert state.targets.k == 5  # lcc_target_k=None shares n_neighbors
    assert len(state.targets) == 77 and state.misclustered[:3].all()
    # a misclustered class-1 sample is pulled to the mean of its 5 nearest class-1
    # candidates in class 1's blob
    t, found = state.targets.query(Z[:1], y[:1])
    candidates = Z[40:]
    nearest5 = candidates[np.argsort(np.linalg.norm(candidates - Z[0], axis=1))[:5]]
    np.testing.assert_allclose(t[0], nearest5.mean(axis=0), rtol=1e-5)
