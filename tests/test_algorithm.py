"""Each algorithm step on hand-made inputs with known answers."""

import pickle

import networkx as nx
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from sklcc.clustering import subsample
from sklcc.communities import louvain_labels, modularity, resolve_louvain_backend
from sklcc.loss import lcc_loss
from sklcc.matching import correctly_clustered, match_clusters
from sklcc.neighbors import knn_graph
from sklcc.refresh import refresh_clusters
from sklcc.representatives import RepresentativeIndex, select_representatives

# ---------------------------------------------------------------- graph


def test_knn_graph_on_a_line():
    Z = np.array([[0.0], [1.0], [3.0], [10.0], [10.5]])
    # 1-NN: 0->1, 1->0, 2->1, 3->4, 4->3; union, undirected
    assert knn_graph(Z, 1).tolist() == [[0, 1], [1, 2], [3, 4]]
    edges = knn_graph(Z, 2)
    assert {tuple(e) for e in edges} == {(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (2, 4)}


def test_knn_graph_has_no_self_loops_with_duplicates():
    # Five identical points: hnswlib may return any of them first, self included.
    Z = np.vstack([np.zeros((5, 3)), np.ones((3, 3)) * 100])
    edges = knn_graph(Z, 4)
    assert (edges[:, 0] != edges[:, 1]).all()
    assert (edges[:, 0] < edges[:, 1]).all()
    assert len(np.unique(edges, axis=0)) == len(edges)
    degree = np.bincount(edges.ravel(), minlength=len(Z))
    assert (degree >= 4).all()  # every node keeps k neighbours other than itself
    # the duplicated block is a clique of 5 and links only inside itself
    block = edges[(edges < 5).all(axis=1)]
    assert len(block) == 10
    # the far block of three: each needs 4 neighbours, so it must reach the first block
    assert ((edges[:, 0] < 5) & (edges[:, 1] >= 5)).any()


def test_knn_graph_rejects_too_many_neighbours():
    with pytest.raises(ValueError, match="n_neighbors=4"):
        knn_graph(np.zeros((4, 2)), 4)


def test_knn_graph_matches_exact_neighbours():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 8)).astype(np.float32)
    edges = knn_graph(Z, 5)
    d = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    exact = np.argsort(d, axis=1)[:, :5]
    expected = {(min(i, j), max(i, j)) for i in range(300) for j in exact[i]}
    found = {tuple(e) for e in edges}
    assert len(found & expected) / len(expected) > 0.98


# ---------------------------------------------------------------- communities


def planted_partition(n_blocks=4, size=25, p_in=0.5, p_out=0.005, seed=0):
    graph = nx.planted_partition_graph(n_blocks, size, p_in, p_out, seed=seed)
    return np.array(graph.edges()), np.repeat(np.arange(n_blocks), size), graph


def test_louvain_recovers_planted_partition():
    edges, truth, _ = planted_partition()
    labels = louvain_labels(edges, len(truth), random_state=0)
    assert adjusted_rand_score(truth, labels) == 1.0
    # numbered by decreasing size
    assert (np.diff(np.bincount(labels)) <= 0).all()


def test_louvain_is_seeded_and_resolution_splits():
    edges, truth, _ = planted_partition(n_blocks=2, size=40, p_in=0.3, p_out=0.01)
    a = louvain_labels(edges, 80, louvain_resolution=1.0, random_state=3)
    b = louvain_labels(edges, 80, louvain_resolution=1.0, random_state=3)
    assert (a == b).all()
    fine = louvain_labels(edges, 80, louvain_resolution=20.0, random_state=3)
    assert fine.max() > a.max()
    coarse = louvain_labels(edges, 80, louvain_resolution=1e-6, random_state=3)
    assert coarse.max() == 0  # one community


def test_louvain_engines_agree_on_a_clear_partition():
    # "networkx" runs networkx's own Louvain through its dispatch machinery, the default
    # runs networkit's PLM; on well-separated blocks both find the planted partition.
    edges, truth, _ = planted_partition(n_blocks=3, size=30, p_in=0.3, p_out=0.01)
    default = louvain_labels(edges, 90, random_state=5)
    by_networkx = louvain_labels(edges, 90, random_state=5, louvain_backend="networkx")
    assert adjusted_rand_score(truth, default) == adjusted_rand_score(truth, by_networkx) == 1
    with pytest.raises(ValueError, match="louvain_backend='no-such-backend'"):
        louvain_labels(edges, 90, louvain_backend="no-such-backend")


def test_louvain_keeps_isolated_nodes():
    labels = louvain_labels(np.array([[0, 1]]), 3)
    assert labels.tolist() == [0, 0, 1]


@pytest.mark.parametrize("resolution", [0.5, 1.0, 3.0])
def test_modularity_equals_networkx(resolution):
    edges, truth, graph = planted_partition(p_out=0.05)
    labels = louvain_labels(edges, len(truth), random_state=1)
    communities = [set(np.flatnonzero(labels == c)) for c in range(labels.max() + 1)]
    expected = nx.community.modularity(graph, communities, resolution=resolution)
    assert modularity(edges, labels, louvain_resolution=resolution) == pytest.approx(expected)


def test_modularity_of_empty_graph_is_zero():
    assert modularity(np.empty((0, 2)), np.zeros(3, dtype=int)) == 0.0


# ---------------------------------------------------------------- matching and flags


def test_matching_majority_with_ties_to_smallest_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y = np.array([2, 2, 1, 3, 1, 0, 0, 3, 3])
    # cluster 0: class 2 (2 votes); cluster 1: tie 1 vs 3 -> 1; cluster 2: tie 0 vs 3 -> 0
    owner = match_clusters(labels, y, 4)
    assert owner.tolist() == [2, 1, 0]
    assert correctly_clustered(labels, y, owner).tolist() == [
        True,
        True,
        False,
        False,
        True,
        True,
        True,
        False,
        False,
    ]


def test_matching_marks_empty_cluster_labels():
    assert match_clusters(np.array([0, 2, 2]), np.array([1, 0, 0]), 2).tolist() == [1, -1, 0]


def test_a_class_may_own_several_or_no_clusters():
    labels = np.array([0, 0, 1, 1, 2, 2])
    y = np.array([0, 0, 0, 0, 1, 2])
    owner = match_clusters(labels, y, 3)
    assert owner.tolist() == [0, 0, 1]  # class 0 owns two clusters, class 2 none


# ---------------------------------------------------------------- representatives


def test_representatives_are_correct_members_without_replacement():
    labels = np.repeat([0, 1, 2], [10, 3, 5])
    correct = np.ones(18, dtype=bool)
    correct[[0, 1, 10, 11, 12]] = False  # cluster 1 has no correctly clustered sample
    chosen = select_representatives(labels, correct, 4, np.random.default_rng(0))
    assert len(np.unique(chosen)) == len(chosen)
    assert correct[chosen].all()
    assert np.bincount(labels[chosen], minlength=3).tolist() == [4, 0, 4]
    again = select_representatives(labels, correct, 4, np.random.default_rng(0))
    assert (chosen == again).all()
    everyone = select_representatives(labels, correct, None, np.random.default_rng(0))
    assert everyone.tolist() == np.flatnonzero(correct).tolist()
    few = select_representatives(labels, correct, 100, np.random.default_rng(0))
    assert few.tolist() == np.flatnonzero(correct).tolist()


def test_representatives_with_no_correct_sample():
    chosen = select_representatives(np.zeros(4, int), np.zeros(4, bool), 2, np.random.default_rng())
    assert chosen.size == 0


@pytest.mark.parametrize("exact_max", [2048, 0], ids=["exact", "hnswlib"])
def test_representative_index_returns_nearest_of_own_class(exact_max):
    latents = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [1.0, 1.0]])
    classes = np.array([0, 0, 1, 1])
    index = RepresentativeIndex(latents, classes, exact_max=exact_max)
    targets, found = index.query(
        np.array([[9.0, 0.0], [9.0, 0.0], [0.4, 0.4], [5.0, 5.0]]), np.array([0, 1, 0, 3])
    )
    assert found.tolist() == [True, True, True, False]
    assert targets.tolist() == [[10.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    clone = pickle.loads(pickle.dumps(index))
    assert (clone.query(latents, classes)[0] == index.query(latents, classes)[0]).all()


@pytest.mark.parametrize("exact_max", [2048, 100, 0], ids=["exact", "mixed", "hnswlib"])
def test_representative_index_agrees_with_brute_force(exact_max):
    # 5 classes of 40 to 300 representatives in 32-d; with exact_max=100 the small
    # classes are searched exactly and the large ones through hnswlib.
    rng = np.random.default_rng(0)
    sizes = [40, 80, 120, 200, 300]
    classes = np.repeat(np.arange(5), sizes)
    latents = rng.normal(size=(len(classes), 32)).astype(np.float32)
    queries = rng.normal(size=(400, 32)).astype(np.float32)
    y = rng.integers(0, 6, 400)  # class 5 owns no representative
    targets, found = RepresentativeIndex(latents, classes, exact_max=exact_max).query(queries, y)
    assert found.tolist() == (y < 5).tolist()
    for b in np.flatnonzero(found):
        members = latents[classes == y[b]]
        best = members[np.argmin(((members - queries[b]) ** 2).sum(1))]
        assert np.array_equal(targets[b], best)
    assert not targets[~found].any()


def test_representative_index_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="one class per latent row"):
        RepresentativeIndex(np.zeros((3, 2)), np.zeros(2, int))


# ---------------------------------------------------------------- loss


def test_loss_value_and_gradient():
    z = torch.tensor([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 0.0], [9.0, 9.0], [0.0, 0.0]])
    mask = torch.tensor([True, False, True])
    loss = lcc_loss(z, targets, mask)
    # terms 5/sqrt(2) and 2/sqrt(2), mean 3.5/sqrt(2)
    assert loss.item() == pytest.approx(3.5 / np.sqrt(2))
    loss.backward()
    # d/dz of ||z - t|| / sqrt(d) / |MC| = (z - t) / ||z - t|| / sqrt(2) / 2
    expected = torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, 1.0]]) / np.sqrt(2) / 2
    assert torch.allclose(z.grad, expected)


def test_loss_is_zero_with_gradient_when_nothing_is_misclustered():
    z = torch.ones(4, 3, requires_grad=True)
    loss = lcc_loss(z, torch.zeros(4, 3), torch.zeros(4, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert (z.grad == 0).all()


def test_loss_gradient_at_zero_distance_is_the_zero_subgradient():
    # ||z - t|| is not differentiable at z = t; torch takes the subgradient 0 there, so a
    # sample sitting on its target gets no push (and no NaN).
    z = torch.ones(2, 3, requires_grad=True)
    targets = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 4.0]])
    lcc_loss(z, targets).backward()
    assert (z.grad[0] == 0).all()
    # the other row: d/dz ||z - t|| / (2 sqrt(3)) = (z - t) / ||z - t|| / (2 sqrt(3))
    expected = torch.tensor([0.0, 0.0, -1.0]) / (2 * 3 ** 0.5)
    assert torch.allclose(z.grad[1], expected)


# ---------------------------------------------------------------- refresh


def blobs(n_per=60, n_classes=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d)) * 20
    y = np.repeat(np.arange(n_classes), n_per)
    return (centers[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


def test_refresh_flags_planted_mislabels():
    Z, y = blobs()
    y = y.copy()
    planted = np.array([3, 70, 130])
    y[planted] = (y[planted] + 1) % 4
    state = refresh_clusters(Z, y, 4, n_neighbors=8, n_representatives=5, random_state=0)
    assert np.flatnonzero(state.misclustered).tolist() == planted.tolist()
    assert state.stats["misclustered"] == pytest.approx(3 / 240)
    assert state.stats["uncovered_classes"] == 0
    assert state.stats["n_clusters"] == 4
    assert state.stats["largest_cluster"] == pytest.approx(0.25)
    assert len(state.targets) == 20
    assert set(state.timings) == {"graph_s", "communities_s", "assign_s", "index_s"}
    # 240 x 240 distances: the "auto" rule
    assert state.engines == {"knn_algorithm": "brute",
                             "louvain_backend": resolve_louvain_backend(None)}


def test_refresh_reports_uncovered_classes_and_missing_targets():
    Z, y = blobs(n_classes=3)
    y = y.copy()
    y[:10] = 3  # class 3 is a minority inside cluster 0: it owns nothing
    state = refresh_clusters(Z, y, 4, n_neighbors=8, random_state=0)
    assert state.stats["uncovered_classes"] == 1
    assert state.stats["no_target"] == pytest.approx(10 / len(y))
    _, found = state.targets.query(Z[:10], y[:10])
    assert not found.any()


def test_refresh_is_deterministic():
    Z, y = blobs(n_per=200)
    a = refresh_clusters(Z, y, 4, cluster_sample_size=300, random_state=5)
    b = refresh_clusters(Z, y, 4, cluster_sample_size=300, random_state=5)
    assert (a.labels == b.labels).all()
    assert (a.targets.latents == b.targets.latents).all()


def test_subsampled_clustering_agrees_with_full():
    Z, y = blobs(n_per=500, n_classes=6, d=8)
    full = refresh_clusters(Z, y, 6, cluster_sample_size=None, random_state=0).labels
    sub = refresh_clusters(Z, y, 6, cluster_sample_size=600, random_state=0).labels
    assert adjusted_rand_score(full, sub) > 0.95
    assert adjusted_rand_score(y, sub) > 0.95


def test_samples_outside_the_subsample_take_their_nearest_subsampled_neighbours_cluster():
    # The assignment runs in a thread beside Louvain; its answer must be the serial one:
    # the cluster of the exact nearest subsampled neighbour (in the unprojected latents).
    Z, y = blobs(n_per=150, n_classes=5, d=6, seed=3)
    state = refresh_clusters(Z, y, 5, cluster_sample_size=200, cluster_n_components=None,
                             random_state=4)
    labels = state.labels
    # The refresh draws the clustering's seed first from its generator.
    seed = int(np.random.default_rng(4).integers(2**31 - 1))
    sample = subsample(len(Z), 200, random_state=seed)
    rest = np.setdiff1d(np.arange(len(Z)), sample)
    d2 = ((Z[rest, None, :] - Z[None, sample, :]) ** 2).sum(-1)
    exact = labels[sample][d2.argmin(axis=1)]
    np.testing.assert_array_equal(labels[rest], exact)  # "auto": an exact search here
    approx = refresh_clusters(Z, y, 5, cluster_sample_size=200, cluster_n_components=None,
                              random_state=4, knn_algorithm="hnsw").labels
    assert np.mean(approx[rest] == exact) > 0.99  # hnswlib is approximate (ef=16)


def test_projected_clustering_agrees_and_keeps_full_targets():
    Z, y = blobs(n_per=300, n_classes=5, d=32)
    y = y.copy()
    planted = np.array([4, 333, 900])
    y[planted] = (y[planted] + 1) % 5
    whole = refresh_clusters(Z, y, 5, cluster_sample_size=500, random_state=0)
    projected = refresh_clusters(
        Z, y, 5, cluster_sample_size=500, cluster_n_components=4, random_state=0
    )
    assert adjusted_rand_score(whole.labels, projected.labels) > 0.95
    assert np.flatnonzero(projected.misclustered).tolist() == planted.tolist()
    assert projected.targets.latents.shape[1] == 32  # targets in the latent space


def test_refresh_handles_identical_latents():
    Z = np.zeros((50, 4), dtype=np.float32)
    y = np.arange(50) % 2
    state = refresh_clusters(Z, y, 2, n_neighbors=5, louvain_resolution=1e-6, random_state=0)
    assert state.stats["n_clusters"] == 1
    assert state.stats["largest_cluster"] == 1.0
    assert state.stats["uncovered_classes"] == 1
    assert state.stats["misclustered"] == 0.5


def test_refresh_params_read_the_estimators_defaults_and_attributes():
    import inspect
    from dataclasses import fields

    from sklcc import LCCClassifier
    from sklcc.refresh import RefreshParams

    signature = inspect.signature(LCCClassifier).parameters
    defaults = RefreshParams.defaults()
    for f in fields(RefreshParams):
        if f.name != "cluster_device":
            assert getattr(defaults, f.name) == signature[f.name].default, f.name
    net = LCCClassifier(torch.nn.Linear, n_neighbors=7, knn_algorithm="brute", device="cpu")
    params = RefreshParams.from_estimator(net)
    assert (params.n_neighbors, params.knn_algorithm, params.cluster_device) == (7, "brute", None)
    Z, y = blobs()
    a = refresh_clusters(Z, y, 4, params, random_state=0)
    b = refresh_clusters(Z, y, 4, random_state=0, n_neighbors=7, knn_algorithm="brute")
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.engines == b.engines
