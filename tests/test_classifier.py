"""LCCClassifier: index alignment, history, scikit-learn integration, errors, persistence."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier
from skorch.dataset import ValidSplit

from sklcc import LCCClassifier, latents
from sklcc.latents import LatentRecorder
from sklcc.validation import encode_labels


class MLP(torch.nn.Module):
    def __init__(self, n_in=64, n_hidden=32, n_out=10, dropout=0.0):
        super().__init__()
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(n_in, n_hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout)
        )
        self.out = torch.nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


class FixedLatent(torch.nn.Module):
    """Latent = the first two input columns, untouched by training (column 2 is an id)."""

    def __init__(self, n_out=4):
        super().__init__()
        self.embed = torch.nn.Identity()
        self.out = torch.nn.Linear(2, n_out)

    def forward(self, x):
        return torch.softmax(self.out(self.embed(x[:, :2])), dim=-1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:600] / 16).astype(np.float32), y[:600]


def small(**kwargs):
    params = dict(module=MLP, max_epochs=3, lr=0.1, batch_size=64, lcc_warmup=1,
                  random_state=0, verbose=0)
    params.update(kwargs)
    return LCCClassifier(**params)


def planted_blobs(seed=0):
    """Four far-apart blobs of 50; six samples carry a wrong label (known misclustered)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0], [40, 0], [0, 40], [40, 40]], dtype=float)
    y = np.repeat(np.arange(4), 50)
    X = np.column_stack([centers[y] + rng.normal(size=(200, 2)), np.arange(200)])
    planted = np.array([5, 17, 60, 99, 140, 180])
    y = y.copy()
    y[planted] = (y[planted] + 1) % 4
    return X.astype(np.float32), y, planted


# ---------------------------------------------------------------- index alignment


class SpyLCC(LCCClassifier):
    """Records, per training batch, the sample ids that the loss treats as misclustered."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if training and self.lcc_states_:
            state = self.lcc_states_["embed"]
            flagged = state.misclustered[self.fit_state_.batch_index.numpy()]
            self.seen_ids.extend(X[:, 2].long().tolist())
            self.flagged_ids.extend(X[flagged, 2].long().tolist())
        return super().get_loss(y_pred, y_true, X=X, training=training)


def test_flags_follow_their_samples_under_shuffle_and_validation_split():
    X, y, planted = planted_blobs()
    net = SpyLCC(
        FixedLatent, lcc_layers=["embed"], max_epochs=3, lr=0.01, batch_size=16,
        n_neighbors=8, train_split=ValidSplit(4, stratified=True), iterator_train__shuffle=True,
        lcc_warmup=1, random_state=0, verbose=0,
    )
    net.seen_ids, net.flagged_ids = [], []
    net.fit(X, y)
    seen = set(net.seen_ids)
    assert len(seen) == 150  # training split only (200 minus a quarter)
    expected = set(planted.tolist()) & seen
    assert expected, "the split left no planted sample in training; change the seed"
    # each planted training sample is flagged in every post-warm-up epoch, nothing else is
    assert set(net.flagged_ids) == expected
    assert len(net.flagged_ids) == 2 * len(expected)
    assert net.history[-1, "lcc_misclustered"] == pytest.approx(len(expected) / 150)


def test_misclustered_samples_get_a_target_of_their_own_class():
    X, y, planted = planted_blobs()
    net = LCCClassifier(FixedLatent, lcc_layers=["embed"], max_epochs=2, lr=0.01, n_neighbors=8,
                        train_split=None, random_state=0, verbose=0).fit(X, y)
    state = net.lcc_states_["embed"]
    targets, found = state.targets.query(X[planted, :2], y[planted])
    assert found.all()
    centers = np.array([[0, 0], [40, 0], [0, 40], [40, 40]])
    assert (np.linalg.norm(targets - centers[y[planted]], axis=1) < 5).all()
    assert net.history[-1, "train_lcc"] > 0


# ---------------------------------------------------------------- history and equivalence


def test_history_records_losses_and_refresh_diagnostics(digits):
    X, y = digits
    net = small(max_epochs=4, lcc_interval=2, train_split=ValidSplit(5)).fit(X, y)
    keys = ["lcc_n_clusters", "lcc_modularity", "lcc_misclustered", "lcc_uncovered_classes",
            "lcc_largest_cluster", "lcc_no_target", "lcc_refresh_s", "lcc_latents_s",
            "lcc_graph_s", "lcc_communities_s", "lcc_assign_s", "lcc_index_s"]
    refreshed = [row["epoch"] for row in net.history if "lcc_n_clusters" in row]
    assert refreshed == [2, 4]  # epochs are 1-based in history: refresh at e=1 and e=3
    for key in keys:
        assert len(net.history[:, key]) == 2
    assert len(net.history[:, "train_lcc"]) == 4
    assert len(net.history[:, "valid_loss"]) == 4
    assert net.history[0, "train_lcc"] == 0.0
    row = net.history[1]
    split = sum(row[f"lcc_{k}"] for k in ["latents_s", "graph_s", "communities_s",
                                           "assign_s", "index_s"])
    assert split <= row["lcc_refresh_s"] + 1e-6
    assert 0.0 <= row["lcc_misclustered"] <= 1.0


def test_valid_loss_is_plain_cross_entropy(digits):
    X, y = digits
    net = small(lcc_weight=1.0, train_split=ValidSplit(5, stratified=True)).fit(X, y)
    ds_train, ds_valid = net.get_split_datasets(X, encode_labels(X, y, None)[1])
    Xv = np.stack([ds_valid[i][0] for i in range(len(ds_valid))])
    yv = np.array([ds_valid[i][1] for i in range(len(ds_valid))])
    proba = net.predict_proba(Xv)
    ce = -np.log(proba[np.arange(len(yv)), yv] + 1e-7).mean()
    assert net.history[-1, "valid_loss"] == pytest.approx(ce, rel=1e-4)


def test_zero_weight_reproduces_plain_skorch(digits):
    X, y = digits
    recipe = dict(max_epochs=3, lr=0.1, batch_size=32, verbose=0,
                  module__dropout=0.3, iterator_train__shuffle=True)
    torch.manual_seed(7)
    plain = NeuralNetClassifier(MLP, **recipe).fit(X, y)
    lcc = LCCClassifier(MLP, lcc_weight=0.0, lcc_warmup=1, random_state=7, **recipe).fit(X, y)
    assert np.array_equal(plain.predict_proba(X), lcc.predict_proba(X))
    assert any("lcc_n_clusters" in row for row in lcc.history)  # diagnostics still recorded


@pytest.mark.slow
def test_same_seed_gives_identical_runs(digits):
    X, y = digits
    a = small(module__dropout=0.2, iterator_train__shuffle=True, lcc_weight=0.5).fit(X, y)
    b = small(module__dropout=0.2, iterator_train__shuffle=True, lcc_weight=0.5).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.history[:, "train_loss"] == b.history[:, "train_loss"]
    assert a.history[:, "lcc_misclustered"] == b.history[:, "lcc_misclustered"]
    c = small(module__dropout=0.2, iterator_train__shuffle=True, lcc_weight=0.5,
              random_state=1).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_fit_leaves_the_global_torch_generator_alone(digits):
    X, y = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small().fit(X, y)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- layers


def test_default_layer_is_input_of_last_linear(digits):
    X, y = digits
    net = small(lcc_layers=None).fit(X, y)
    assert net.lcc_layers_ == ["out:input"]
    assert net.lcc_states_["out:input"].targets.latents.shape[1] == 32


def test_projected_clustering_in_the_estimator(digits):
    X, y = digits
    net = small(cluster_n_components=8).fit(X, y)
    assert net.lcc_states_["out:input"].targets.latents.shape[1] == 32
    assert 0 < net.history[-1, "lcc_n_clusters"]


def test_published_configuration_on_the_logits(digits):
    # The published "head" placement: the output of the last Linear, i.e. the logits
    # (before the softmax), with the knn-mean target and full clustering.
    X, y = digits
    net = small(lcc_layers=["out"], lcc_target="knn-mean", n_representatives=None,
                n_neighbors=5, cluster_sample_size=None, cluster_n_components=None).fit(X, y)
    state = net.lcc_states_["out"]
    assert state.targets.k == 5 and state.targets.latents.shape[1] == 10
    assert len(state.targets) == (~state.misclustered).sum()  # every CC sample counts
    with LatentRecorder(net.module_, ["out"]) as recorder:
        Z, _ = latents.collect_latents(net, net.get_dataset(X, y), recorder)
    module = net.module_.eval()
    with torch.no_grad():
        logits = module.out(module.hidden(torch.from_numpy(X))).numpy()
    np.testing.assert_allclose(Z["out"], logits, rtol=1e-5, atol=1e-6)
    assert net.history[-1, "train_lcc"] > 0


def test_several_layers_are_clustered_separately(digits):
    X, y = digits
    net = small(lcc_layers=["hidden.0", "hidden"]).fit(X, y)
    assert set(net.lcc_states_) == {"hidden.0", "hidden"}
    # each layer has its own clustering; history holds their mean
    per_layer = [s.stats["misclustered"] for s in net.lcc_states_.values()]
    assert net.history[-1, "lcc_misclustered"] == pytest.approx(np.mean(per_layer))
    assert net.history[0, "train_lcc"] == 0.0 and net.history[-1, "train_lcc"] > 0


def test_unknown_layer_lists_available_names(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"'nope'.*available names: \['hidden', 'hidden.0'"):
        small(lcc_layers=["nope"]).fit(X, y)


# ---------------------------------------------------------------- inputs


@pytest.mark.slow
def test_tensor_and_dataset_inputs(digits):
    X, y = digits
    ref = small(train_split=None).fit(X, y).predict_proba(X)
    from_tensors = small(train_split=None).fit(torch.from_numpy(X), torch.from_numpy(y))
    assert np.array_equal(from_tensors.predict_proba(torch.from_numpy(X)), ref)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    from_dataset = small(train_split=None).fit(dataset, None)
    assert np.array_equal(from_dataset.predict_proba(X), ref)


def test_string_labels_round_trip(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    net = small(max_epochs=5).fit(X, names[y])
    assert set(net.predict(X)) <= set(names)
    assert net.score(X, names[y]) > 0.5
    assert list(net.classes_) == sorted(names)


def test_float64_input_is_cast_to_float32(digits):
    X, y = digits
    a = small(train_split=None).fit(X.astype(np.float64), y)
    b = small(train_split=None).fit(X, y)
    assert np.array_equal(a.predict_proba(X.astype(np.float64)), b.predict_proba(X))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lcc_weight": -0.1}, "lcc_weight=-0.1"),
        ({"lcc_weight": float("nan")}, "lcc_weight=nan"),
        ({"louvain_resolution": 0}, "louvain_resolution=0"),
        ({"n_representatives": 0}, "n_representatives=0"),
        ({"lcc_interval": 0}, "lcc_interval=0"),
        ({"lcc_warmup": -1}, "lcc_warmup=-1"),
        ({"n_neighbors": 0}, "n_neighbors=0"),
        ({"n_neighbors": 600}, "n_neighbors=600 must be smaller than the number of training"),
        ({"cluster_sample_size": 5}, "n_neighbors=10 must be smaller than the clustered "
                                     "subsample \\(cluster_sample_size=5"),
        ({"cluster_sample_size": 1}, "cluster_sample_size=1"),
        ({"cluster_n_components": 0}, "cluster_n_components=0"),
        ({"louvain_backend": "no-such-backend"}, "louvain_backend='no-such-backend'"),
        ({"lcc_layers": []}, "lcc_layers=\\[\\]"),
        ({"lcc_target": "mean"}, "lcc_target='mean' is invalid"),
        ({"n_representatives": "all"}, "n_representatives='all' is invalid: expected 'auto'"),
        ({"lcc_target": "knn-mean", "n_representatives": 32},
         "'knn-mean' takes every correctly clustered sample .* n_representatives=32"),
        ({"lcc_target": "knn-mean", "n_representatives": None, "lcc_target_k": 0},
         "lcc_target_k=0"),
    ],
)
def test_bad_parameters_fail_before_training(digits, params, match):
    X, y = digits
    net = small(**params)
    with pytest.raises(ValueError, match=match):
        net.fit(X, y)
    assert not getattr(net, "history_", None) or len(net.history) == 0


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y), "NaN"),
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), y),
         "infinity"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
        (lambda X, y: (X, np.zeros_like(y)), "one class"),
        (lambda X, y: (X[:0], y[:0]), "0 sample"),
        (lambda X, y: (X, None), "requires y"),
        (lambda X, y: (X, y + 0.5), "Unknown label type"),
    ],
)
def test_bad_data_fails_with_a_clear_error(digits, mutate, match):
    X, y = mutate(*digits)
    with pytest.raises(ValueError, match=match):
        small().fit(X, y)


def test_wrong_feature_count_at_predict(digits):
    X, y = digits
    net = small().fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but LCCClassifier is expecting 64"):
        net.predict(X[:, :3])


def test_module_output_size_must_match_classes(digits):
    X, y = digits
    with pytest.raises(ValueError, match="make its output layer produce 10 scores"):
        small(module__n_out=12).fit(X, y)  # the first validation scoring notices


# ---------------------------------------------------------------- degenerate clusterings


def test_no_misclustered_sample():
    X, y, planted = planted_blobs()
    y = np.repeat(np.arange(4), 50)
    net = LCCClassifier(FixedLatent, lcc_layers=["embed"], max_epochs=3, lr=0.01, n_neighbors=8,
                        train_split=None, random_state=0, verbose=0).fit(X, y)
    assert net.history[:, "lcc_misclustered"] == [0.0, 0.0]
    assert net.history[:, "train_lcc"] == [0.0, 0.0, 0.0]


def test_class_without_cluster_and_no_target():
    X, y, _ = planted_blobs()
    y = np.repeat(np.arange(4), 50)
    y[:8] = 4  # class 4 is a minority inside blob 0
    net = LCCClassifier(FixedLatent, lcc_layers=["embed"], module__n_out=5, max_epochs=3,
                        lr=0.01, n_neighbors=8, train_split=None, random_state=0,
                        verbose=0).fit(X, y)
    assert net.history[-1, "lcc_uncovered_classes"] == 1
    assert net.history[-1, "lcc_no_target"] == pytest.approx(8 / 200)
    assert net.history[:, "train_lcc"] == [0.0, 0.0, 0.0]  # nobody had a target


def test_dead_relus_everything_in_one_cluster(digits):
    X, y = digits
    class Dead(MLP):
        def __init__(self):
            super().__init__()
            torch.nn.init.constant_(self.hidden[0].bias, -1e3)  # every ReLU is dead

    net = small(module=Dead, lcc_layers=["hidden"], louvain_resolution=1e-6).fit(X, y)
    assert net.history[-1, "lcc_n_clusters"] == 1
    assert net.history[-1, "lcc_largest_cluster"] == 1.0
    assert net.history[-1, "lcc_uncovered_classes"] == 9


def test_batches_of_one_sample(digits):
    X, y = digits
    net = small(batch_size=1, max_epochs=2, train_split=None).fit(X[:120], y[:120])
    assert net.history[:, "train_batch_count"] == [120, 120]
    assert net.history[0, "train_lcc"] == 0.0  # no refresh before lcc_warmup
    assert net.history[1, "lcc_misclustered"] * 120 == pytest.approx(
        net.lcc_states_["out:input"].misclustered.sum())
    net = small(batch_size=50, max_epochs=2, train_split=None).fit(X[:101], y[:101])
    assert net.history[-1, "train_batch_count"] == 3


# ---------------------------------------------------------------- scikit-learn integration


def test_clone_and_params(digits):
    net = small(lcc_weight=0.3, n_representatives=None)
    params = net.get_params()
    for name in ["lcc_layers", "lcc_weight", "n_neighbors", "louvain_resolution",
                 "n_representatives", "lcc_warmup", "lcc_interval", "cluster_sample_size",
                 "cluster_n_components", "louvain_backend", "random_state"]:
        assert name in params
    twin = clone(net)
    assert twin.get_params()["lcc_weight"] == 0.3
    twin.set_params(lcc_weight=0.05, module__n_hidden=16)
    assert twin.lcc_weight == 0.05 and net.lcc_weight == 0.3
    X, y = digits
    assert twin.fit(X, y).module_.hidden[0].out_features == 16


@pytest.mark.slow
def test_pipeline_grid_search_and_cross_val(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), small(max_epochs=2, train_split=None))
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.5
    grid = GridSearchCV(small(max_epochs=2, train_split=None),
                        {"lcc_weight": [0.0, 0.1], "louvain_resolution": [1.0, 4.0]}, cv=2)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_["lcc_weight"] in (0.0, 0.1)
    scores = cross_val_score(small(max_epochs=6, train_split=None), X, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.3).all(), scores  # chance is 0.1


# ---------------------------------------------------------------- persistence


def test_pickle_and_save_params_round_trips(digits, tmp_path):
    X, y = digits
    net = small().fit(X, y)
    expected = net.predict_proba(X)
    restored = pickle.loads(pickle.dumps(net))
    assert np.array_equal(restored.predict_proba(X), expected)
    assert np.array_equal(restored.predict(X), net.predict(X))
    net.save_params(f_params=tmp_path / "p.pt", f_history=tmp_path / "h.json")
    fresh = small(classes=list(range(10))).initialize()
    fresh.load_params(f_params=tmp_path / "p.pt", f_history=tmp_path / "h.json")
    assert np.array_equal(fresh.predict_proba(X), expected)
    # a refitted restored net continues to work (hooks were not pickled)
    restored.partial_fit(X, y)
    assert len(restored.history) == 2 * 3


def test_partial_fit_continues_training(digits):
    X, y = digits
    net = small(max_epochs=2)
    net.partial_fit(X, y)
    net.partial_fit(X, y)
    assert len(net.history) == 4
    assert len(net.history[:, "lcc_n_clusters"]) == 3


def test_plot_lcc_history(digits, tmp_path):
    from sklcc.plotting import plot_lcc_history

    X, y = digits
    net = small(max_epochs=4).fit(X, y)
    fig = plot_lcc_history(net, tmp_path / "lcc.png")
    assert (tmp_path / "lcc.png").stat().st_size > 1000
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [2, 3, 4]
    assert list(line.get_ydata()) == net.history[:, "lcc_misclustered"]
    with pytest.raises(ValueError, match="no refresh yet"):
        plot_lcc_history(small(max_epochs=1).fit(X, y))


class PairDataset(torch.utils.data.Dataset):
    """A custom Dataset skorch cannot read the labels from."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def test_custom_dataset_without_known_classes(digits):
    X, y = digits
    net = small(train_split=None).fit(PairDataset(X, y), None)
    assert len(net.history[:, "lcc_n_clusters"]) == 2
    assert net.predict(X).shape == (len(X),)


@pytest.mark.parametrize("split", [None, ValidSplit(4, stratified=True)], ids=["all", "valid"])
def test_sliced_latents_equal_the_iterator_path(digits, split, monkeypatch):
    # The refresh slices plain array datasets instead of collating sample by sample;
    # the latents and labels must be the ones skorch's own iterator gives.
    X, y = digits
    net = small(max_epochs=1, lcc_warmup=5, train_split=split, batch_size=50).fit(X, y)
    _, codes = encode_labels(X, y, None)
    train, _ = net.get_split_datasets(X, codes)
    assert latents._array_batches(net, train) is not None
    with LatentRecorder(net.module_, net.lcc_layers_) as recorder:
        fast, fast_y = latents.collect_latents(net, train, recorder)
        monkeypatch.setattr(latents, "_array_batches", lambda net, dataset: None)
        slow, slow_y = latents.collect_latents(net, train, recorder)
    assert np.array_equal(fast_y, slow_y) and len(fast_y) == len(train)
    for layer in net.lcc_layers_:
        assert np.array_equal(fast[layer], slow[layer])


def test_sliced_latents_are_not_used_for_custom_datasets_or_loaders(digits):
    X, y = digits
    net = small(max_epochs=1).fit(X, y)
    assert latents._array_batches(net, net.get_dataset(X, y)) is not None
    assert latents._array_batches(net, PairDataset(X, y)) is None
    custom = small(max_epochs=1, iterator_valid__collate_fn=torch.utils.data.default_collate)
    custom.fit(X, y)
    assert latents._array_batches(custom, custom.get_dataset(X, y)) is None


@pytest.mark.parametrize("kind", ["array", "tensor", "subset", "y-none", "subclass"])
def test_batched_fetch_gives_the_per_sample_batch(kind):
    # IndexedDataset.__getitems__ slices plain arrays once per batch: the collated batch
    # must be the one per-sample fetching gives (values, dtypes, positions).
    from skorch.dataset import Dataset
    from torch.utils.data import Subset
    from torch.utils.data.dataloader import default_collate

    from sklcc.base import IndexedDataset

    class Doubled(Dataset):  # a transform the batched path must not skip
        def transform(self, X, y):
            return 2 * X, y

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4, 2)).astype(np.float32), rng.integers(0, 3, 30)
    base = {"array": lambda: Dataset(X, y),
            "tensor": lambda: Dataset(torch.from_numpy(X), torch.from_numpy(y)),
            "subset": lambda: Subset(Dataset(X, y), rng.permutation(30)[:20].tolist()),
            "y-none": lambda: Dataset(X, None),
            "subclass": lambda: Doubled(X, y)}[kind]()
    for tensor_rows in (False, True):
        dataset = IndexedDataset(base, tensor_rows=tensor_rows)
        assert (dataset._arrays is None) == (kind in ("y-none", "subclass"))
        index = [7, 3, 3, 0, 12]
        fast = default_collate(dataset.__getitems__(index))
        slow = default_collate([dataset[i] for i in index])
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
