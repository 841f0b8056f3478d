"""CenterLossClassifier, the peer method: its term, its centers and its optimizer group."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklcc import CenterLossClassifier
from sklcc.center_loss import center_loss


class MLP(torch.nn.Module):
    def __init__(self, n_classes=10):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.out = torch.nn.Linear(32, n_classes)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16).astype(np.float32), y[:400]


def test_center_loss_value_and_gradient():
    z = torch.tensor([[1.0, 1.0], [0.0, 2.0]], requires_grad=True)
    centers = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    loss = center_loss(z, centers, torch.tensor([0, 1]))
    assert float(loss.detach()) == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    loss.backward()
    assert torch.allclose(z.grad, torch.tensor([[0.0, 0.5], [0.0, 1.0]]))


def test_latent_width_is_read_from_the_layer(digits):
    X, y = digits
    labels = np.array(list("abcdefghij"))[y]
    net = CenterLossClassifier(MLP, max_epochs=1, lr=0.1, train_split=None, random_state=0,
                               verbose=0).fit(X, labels)
    # default layer: the input of the last Linear (32 wide); one center per label
    assert net.centers_.weight.shape == (10, 32)
    assert set(net.predict(X)) <= set("abcdefghij")


def test_center_loss_pulls_latents_towards_their_centers(digits):
    X, y = digits
    strong = CenterLossClassifier(MLP, center_layer="hidden", center_weight=1.0, max_epochs=4,
                                  lr=0.1, train_split=None, random_state=0, verbose=0).fit(X, y)
    losses = strong.history[:, "train_center"]
    assert losses[-1] < losses[0]
    # the centers' group has its own learning rate and no weight decay
    group = strong.optimizer_.param_groups[-1]
    assert group["lr"] == 0.01 and group["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="center_weight=-1"):
        CenterLossClassifier(MLP, center_weight=-1).fit(X, y)
