"""The batch term's device path: targets searched where the latents are, no host round trip.

Device-agnostic: the path that runs on a GPU is forced on CPU tensors here, every call that
would copy a tensor to the host or wait for the device is made to raise, and its term is
compared with the numpy path's (the CPU default).
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklcc import LCCClassifier, classifier
from sklcc.refresh import refresh_clusters
from sklcc.representatives import KnnMeanTargets, RepresentativeIndex

#: Tensor methods that read a value back on the host (a copy and, on a GPU, a sync).
HOST_READS = ("cpu", "numpy", "item", "tolist", "nonzero", "__array__", "__bool__",
              "__float__", "__int__")


@pytest.fixture(scope="module")
def latents():
    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16).astype(np.float32), y[:400]


def no_host_reads(monkeypatch):
    def refuse(name):
        def method(*args, **kwargs):
            raise AssertionError(f"Tensor.{name} called in the batch path")
        return method

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, refuse(name))
    monkeypatch.setattr(torch, "from_numpy", refuse("from_numpy"))


@pytest.mark.parametrize("target", [dict(lcc_target="nearest", n_representatives=5),
                                    dict(lcc_target="knn-mean", lcc_target_k=3),
                                    dict(lcc_target="knn-mean", lcc_target_k=500)])
def test_device_term_reads_nothing_back_and_equals_the_host_term(latents, monkeypatch, target):
    Z, y = latents
    state = refresh_clusters(Z, y, 10, n_neighbors=5, cluster_n_components=None,
                             random_state=0, **target)
    assert state.misclustered.any()
    rng = np.random.default_rng(1)
    index = rng.choice(len(Z), 64, replace=False)
    z = torch.from_numpy(Z[index] + rng.normal(0, 0.1, Z[index].shape).astype(np.float32))
    z.requires_grad_(True)
    y_true = torch.from_numpy(y[index])
    host = classifier._term_on_host(z, y_true, index, state)
    state.targets._on(z.device)  # the copy to the device is made once per refresh
    with monkeypatch.context() as m:
        no_host_reads(m)
        device = classifier._term_on_device(z, y_true, index, state)
        device.backward()
    np.testing.assert_allclose(device.detach().numpy(), host.detach().numpy(), rtol=1e-5)
    assert torch.isfinite(z.grad).all()


def test_device_term_is_an_attached_zero_when_nothing_is_flagged(latents):
    Z, y = latents
    state = refresh_clusters(Z, y, 10, n_neighbors=5, random_state=0)
    index = np.flatnonzero(~state.misclustered)[:8]
    z = torch.from_numpy(Z[index]).requires_grad_(True)
    term = classifier._term_on_device(z, torch.from_numpy(y[index]), index, state)
    assert float(term.detach()) == 0.0 and term.requires_grad


@pytest.mark.parametrize("targets", [
    RepresentativeIndex(np.array([[0.0], [5.0], [9.0]]), np.array([0, 0, 1])),
    KnnMeanTargets(np.array([[0.0], [1.0], [2.0], [10.0], [11.0]]), np.array([0, 0, 0, 1, 1]),
                   np.zeros(5, int), k=2),
])
def test_query_tensor_equals_query(targets):
    Q, c = np.array([[4.0], [1.0], [0.2], [9.0]]), np.array([0, 0, 2, 0])
    expected, found = targets.query(Q, c)
    got, got_found = targets.query_tensor(torch.from_numpy(Q).float(), torch.from_numpy(c))
    np.testing.assert_array_equal(got_found.numpy(), found)
    np.testing.assert_allclose(got.numpy()[found], expected[found])


def test_a_fit_on_the_device_path_follows_the_host_path(latents, monkeypatch):
    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
            self.out = torch.nn.Linear(32, 10)

        def forward(self, x):
            return torch.softmax(self.out(self.hidden(x)), dim=-1)

    params = dict(module=MLP, lcc_layers=["hidden"], max_epochs=3, lr=0.1, lcc_weight=0.5,
                  train_split=None, random_state=0, verbose=0)
    host = LCCClassifier(**params).fit(*latents)
    monkeypatch.setattr(classifier, "_targets_on_host", lambda device: False)
    device = LCCClassifier(**params).fit(*latents)
    assert device.history[-1, "train_lcc"] > 0
    np.testing.assert_allclose(device.history[:, "train_lcc"], host.history[:, "train_lcc"],
                               rtol=1e-4)
    np.testing.assert_allclose(device.history[:, "train_loss"], host.history[:, "train_loss"],
                               rtol=1e-4)
