"""skorch's documented NeuralNetClassifier behaviours, checked on LCCClassifier.

Each test states the behaviour skorch documents and checks that LCCClassifier keeps it,
mostly by doing the same thing with a plain NeuralNetClassifier and comparing.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.dataset import ValidSplit

from sklcc import LatentPenaltyClassifier, LCCClassifier


class MLP(torch.nn.Module):
    def __init__(self, n_classes=10, n_hidden=32, scores=False):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, n_hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(n_hidden, n_classes)
        self.scores = scores

    def forward(self, x):
        logits = self.out(self.hidden(x))
        return logits if self.scores else torch.softmax(logits, dim=-1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16).astype(np.float32), y[:400]


def lcc(**kwargs):
    params = dict(module=MLP, max_epochs=2, lr=0.1, batch_size=64, lcc_warmup=1,
                  train_split=None, random_state=0, verbose=0)
    params.update(kwargs)
    return LCCClassifier(**params)


# ---------------------------------------------------------------- classes


def test_classes_list_names_index_encoded_targets(digits):
    # skorch: "If a non-empty list is passed, that list will be returned as classes_";
    # y holds indices into it, and predict returns indices.
    X, y = digits
    names = [f"digit-{i}" for i in range(10)]
    net = lcc(classes=names).fit(X, y)
    assert net.classes_.tolist() == names
    plain = NeuralNetClassifier(MLP, max_epochs=2, lr=0.1, batch_size=64, train_split=None,
                                classes=names, verbose=0)
    torch.manual_seed(0)
    plain.fit(X, y)
    assert net.predict(X).dtype.kind == plain.predict(X).dtype.kind == "i"
    assert set(net.predict(X)) <= set(range(10))
    assert net.score(X, y) == pytest.approx(np.mean(net.predict(X) == y))


def test_classes_list_rejects_labels_that_are_not_indices(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"class indices.*integers in 0\.\.2"):
        lcc(classes=["a", "b", "c"]).fit(X, y)


@pytest.mark.parametrize("empty", [[], np.array([]), np.array([], dtype=np.int64)],
                         ids=["list", "float-array", "int-array"])
def test_empty_classes_means_no_classes_attribute(digits, empty):
    # skorch: pass an empty list (or array: skorch tests len()) to restore the
    # AttributeError on classes_.
    X, y = digits
    net = lcc(classes=empty).fit(X, y)
    with pytest.raises(AttributeError):
        _ = net.classes_
    assert net.predict(X[:5]).tolist() == net.predict_proba(X[:5]).argmax(1).tolist()
    assert net.history[-1, "lcc_n_clusters"] >= 1


def test_any_labels_without_classes(digits):
    X, y = digits
    labels = np.array(list("abcdefghij"))[y]
    net = lcc().fit(X, labels)
    assert net.classes_.tolist() == list("abcdefghij")
    assert set(net.predict(X)) <= set("abcdefghij")


# ---------------------------------------------------------------- outputs and criterion


def test_predict_nonlinearity_auto_with_cross_entropy(digits):
    # skorch: with CrossEntropyLoss, 'auto' applies a softmax in predict_proba.
    X, y = digits
    net = lcc(module__scores=True, criterion=torch.nn.CrossEntropyLoss).fit(X, y)
    proba = net.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5) and (proba >= 0).all()
    raw = lcc(module__scores=True, criterion=torch.nn.CrossEntropyLoss,
              predict_nonlinearity=None).fit(X, y).predict_proba(X)
    assert (raw < 0).any()  # the raw scores come back untouched
    assert np.array_equal(raw.argmax(1), proba.argmax(1))


def test_raw_scores_with_the_default_criterion_stop_with_a_clear_error(digits):
    # Plain skorch trains such a module to NaN in silence.
    X, y = digits
    with pytest.raises(ValueError, match="NLLLoss.*softmax.*CrossEntropyLoss"):
        lcc(module__scores=True).fit(X, y)


def test_divergence_stops_the_fit_naming_the_epoch(digits):
    # As scikit-learn's MLP does; plain skorch would go on training on a NaN loss.
    X, y = digits
    with pytest.raises(ValueError, match=r"training loss became (inf|nan) at epoch 1, batch 3"
                                         r".*lr=10000000000\.0"):
        lcc(module__scores=True, criterion=torch.nn.CrossEntropyLoss, lr=1e10).fit(X, y)


# ---------------------------------------------------------------- callbacks and history


class CountEpochs(Callback):
    def __init__(self, step=1):
        self.step = step

    def initialize(self):
        self.count_ = 0
        return self

    def on_epoch_end(self, net, **kwargs):
        self.count_ += self.step


def test_user_callbacks_and_prefix_routing(digits):
    X, y = digits
    net = lcc(callbacks=[("count", CountEpochs())], callbacks__count__step=2,
              max_epochs=3).fit(X, y)
    assert dict(net.callbacks_)["count"].count_ == 6
    net.set_params(callbacks__count__step=5)  # skorch re-initialises the callbacks
    net.partial_fit(X, y)
    assert dict(net.callbacks_)["count"].count_ == 15
    # the refresh is a named default callback, reachable like any other
    assert "lcc_refresh" in dict(net.callbacks_)
    net.set_params(callbacks__print_log__keys_ignored=["lcc_refresh_s"])


def test_disabling_the_refresh_callback_trains_plain(digits):
    X, y = digits
    net = lcc(callbacks__lcc_refresh=None).fit(X, y)
    assert "lcc_n_clusters" not in net.history[-1]
    assert net.history[:, "train_lcc"] == [0.0, 0.0]


def test_callbacks_disable_is_refused_when_the_term_needs_them(digits):
    X, y = digits
    with pytest.raises(ValueError, match="callbacks='disable'.*lcc_weight|weight to 0"):
        lcc(callbacks="disable").fit(X, y)
    net = lcc(callbacks="disable", lcc_weight=0).fit(X, y)  # skorch's behaviour otherwise
    assert len(net.history) == 2


def test_early_stopping_and_lr_scheduler_as_in_skorch(digits):
    X, y = digits

    def callbacks():
        return [EarlyStopping(patience=1, threshold=10.0),
                LRScheduler(policy="StepLR", step_size=1, gamma=0.5)]

    net = lcc(max_epochs=30, train_split=ValidSplit(4, stratified=True),
              callbacks=callbacks()).fit(X, y)
    plain = NeuralNetClassifier(MLP, max_epochs=30, lr=0.1, batch_size=64, verbose=0,
                                train_split=ValidSplit(4, stratified=True),
                                callbacks=callbacks()).fit(X, y)
    assert len(net.history) == len(plain.history) == 2  # stops after patience + 1 epochs
    assert net.optimizer_.param_groups[0]["lr"] == plain.optimizer_.param_groups[0]["lr"]


def test_history_has_skorchs_keys_and_ours(digits):
    X, y = digits
    net = lcc(train_split=ValidSplit(4, stratified=True)).fit(X, y)
    row = net.history[-1]
    for key in ("epoch", "dur", "train_loss", "valid_loss", "valid_acc", "train_lcc",
                "lcc_misclustered", "lcc_refresh_s"):
        assert key in row
    assert [b["train_batch_size"] for b in row["batches"] if "train_batch_size" in b][0] == 64


# ---------------------------------------------------------------- training continuation


def test_warm_start_continues_instead_of_reinitialising(digits):
    X, y = digits
    net = lcc(warm_start=True).fit(X, y)
    weights = net.module_.out.weight.detach().clone()
    net.fit(X, y)
    assert len(net.history) == 4
    assert not torch.equal(weights, net.module_.out.weight)  # trained on, not reset
    cold = lcc().fit(X, y)
    cold.fit(X, y)
    assert len(cold.history) == 2


def test_partial_fit_equals_longer_fit_epoch_count(digits):
    X, y = digits
    net = lcc().fit(X, y)
    net.partial_fit(X, y)
    assert len(net.history) == 4
    assert net.history[-1, "lcc_n_clusters"] >= 1  # refreshes go on after the warm-up


def test_set_params_reinitialises_the_module(digits):
    X, y = digits
    net = lcc().fit(X, y)
    net.set_params(module__n_hidden=8)
    assert net.module_.hidden[0].out_features == 8
    net.fit(X, y)
    assert net.predict(X).shape == (len(X),)


def test_device_none_and_cpu(digits):
    X, y = digits
    a = lcc(device="cpu").fit(X, y).predict_proba(X)
    b = lcc(device=None).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)


class PickleEachEpoch(Callback):
    def on_epoch_end(self, net, **kwargs):
        self.blob_ = None  # the previous epoch's pickle is not part of the next one
        self.blob_ = pickle.dumps(net)


def test_pickling_mid_fit_and_after(digits):
    # A callback that pickles the net during training (as skorch's Checkpoint with
    # f_pickle does) must not carry the fit's hooks.
    X, y = digits
    cb = PickleEachEpoch()
    net = lcc(callbacks=[cb]).fit(X, y)
    mid = pickle.loads(cb.blob_)
    assert not hasattr(mid, "fit_state_")
    assert np.array_equal(mid.predict(X), net.predict(X))
    assert not hasattr(net, "fit_state_")


# ---------------------------------------------------------------- the shared base


def test_base_alone_is_the_seeded_cross_entropy_baseline(digits):
    # Same seed, same module, same batches: the base and an LCC net whose term is zero
    # train identically, so a benchmark pair differs only by the term.
    X, y = digits
    base = LatentPenaltyClassifier(MLP, max_epochs=2, lr=0.1, batch_size=64,
                                   train_split=None, random_state=0, verbose=0).fit(X, y)
    zero = lcc(lcc_weight=0.0).fit(X, y)
    assert np.array_equal(base.predict_proba(X), zero.predict_proba(X))
