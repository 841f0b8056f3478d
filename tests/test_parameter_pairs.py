"""Knobs that work together: a parameter only used under another setting is ignored there.

One test per pair of LCCClassifier parameters where one knob's meaning depends on the
other. Each pair is either meaningful in every combination, ignored (and documented
"Only used when ...") where it does not apply, or, for an *explicit* value that
contradicts the other knob, refused with an error naming both.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklcc import LCCClassifier
from sklcc.representatives import AUTO_REPRESENTATIVES


class MLP(torch.nn.Module):
    def __init__(self, n_hidden=32):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, n_hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(n_hidden, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16).astype(np.float32), y[:400]


def small(**kwargs):
    params = dict(module=MLP, max_epochs=2, lr=0.1, batch_size=64, lcc_warmup=1,
                  train_split=None, random_state=0, verbose=0)
    return LCCClassifier(**{**params, **kwargs})


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.module_.state_dict().values(),
                                                 b.module_.state_dict().values(), strict=True))


def test_n_representatives_auto_under_nearest_draws_32_per_cluster(digits):
    auto = small().fit(*digits)
    assert LCCClassifier(MLP).n_representatives == "auto" and AUTO_REPRESENTATIVES == 32
    assert same_weights(auto, small(n_representatives=32).fit(*digits))
    state = auto.lcc_states_["out:input"]
    per_cluster = np.bincount(state.labels[state.correct])
    assert len(state.targets) == np.minimum(per_cluster, 32).sum()


def test_n_representatives_auto_under_knn_mean_takes_every_correct_sample(digits):
    # The user's first try of the paper's target: the two knobs they meant, nothing else.
    net = small(lcc_target="knn-mean", lcc_target_k=5).fit(*digits)
    state = net.lcc_states_["out:input"]
    assert state.targets.k == 5 and len(state.targets) == state.correct.sum()
    assert same_weights(net, small(lcc_target="knn-mean", lcc_target_k=5,
                                   n_representatives=None).fit(*digits))


def test_an_explicit_number_of_representatives_contradicts_knn_mean(digits):
    with pytest.raises(ValueError, match=r"lcc_target='knn-mean' takes every correctly "
                                         r"clustered sample.*n_representatives=16"):
        small(lcc_target="knn-mean", n_representatives=16).fit(*digits)


def test_lcc_target_k_is_ignored_under_nearest(digits):
    # Only used when lcc_target="knn-mean" (as SVC ignores degree under an RBF kernel), so a
    # grid over both targets and k runs every cell.
    plain = small().fit(*digits)
    with_k = small(lcc_target_k=50).fit(*digits)
    assert same_weights(plain, with_k)
    assert type(with_k.lcc_states_["out:input"].targets).__name__ == "RepresentativeIndex"


def test_cluster_n_components_above_a_small_subsample_keeps_as_many_as_it_has(digits):
    # 64 components (the default) of 32-wide latents on a subsample of 20: the PCA keeps 20.
    net = small(cluster_sample_size=20, n_neighbors=5).fit(*digits)
    assert net.history[-1, "lcc_n_clusters"] >= 1
    # latents narrower than cluster_n_components are clustered as they are
    assert small(cluster_n_components=500).fit(*digits).history[-1, "lcc_n_clusters"] >= 1


def test_n_neighbors_against_cluster_sample_size(digits):
    # A subsample at least the training split's size is every sample: only the split
    # bounds n_neighbors (the default cluster_sample_size, 5000, never refuses a k that
    # the data allow) ...
    assert small(n_neighbors=150).fit(*digits).history[-1, "lcc_n_clusters"] >= 1
    # ... while a drawn subsample must be larger than n_neighbors.
    with pytest.raises(ValueError, match=r"n_neighbors=30 must be smaller than the clustered "
                                         r"subsample \(cluster_sample_size=30 of 400"):
        small(n_neighbors=30, cluster_sample_size=30).fit(*digits)


def test_lcc_latents_auto_resolves_before_the_first_refresh(digits):
    net = small(max_epochs=3).fit(*digits)
    assert net.lcc_latents_ == "train"


def test_lcc_weight_zero_still_refreshes_but_trains_like_cross_entropy(digits):
    # The refresh's diagnostics stay available; the training is the criterion's alone.
    zero = small(lcc_weight=0.0).fit(*digits)
    assert zero.history[-1, "lcc_n_clusters"] >= 1 and zero.history[-1, "train_lcc"] == 0.0
    off = small(lcc_weight=0.0, lcc_warmup=10).fit(*digits)
    assert same_weights(zero, off)


def test_the_default_search_space_leaves_n_representatives_alone_under_knn_mean():
    from sklcc.tuning.space import check_search_space

    assert "n_representatives" in check_search_space(LCCClassifier(MLP), None)
    space = check_search_space(LCCClassifier(MLP, lcc_target="knn-mean"), None)
    assert sorted(space) == ["lcc_weight", "louvain_resolution"]
