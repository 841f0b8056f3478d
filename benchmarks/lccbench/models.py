"""Networks and callbacks of the fine-tuning benchmark.

- :class:`FineTuneNet`: the trainable part of the network for each fine-tuning regime,
  ending in the same :class:`MLPHead` (``features -> hidden -> classes``) whose hidden
  layer (:data:`HIDDEN_LAYER`) is where LCC and center loss act.
- :class:`TestAccuracy`, :class:`EpochProgress`: per-epoch callbacks for the curves
  and the progress bar.

The estimators themselves come from sklcc: :class:`sklcc.LatentPenaltyClassifier`
(cross-entropy), :class:`sklcc.LCCClassifier` and :class:`sklcc.CenterLossClassifier`
(see :mod:`lccbench.methods`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn

from sklcc.diagnostics import history_key
from sklcc.images import ImagePreprocess, load_backbone, split_backbone

__all__ = ["HIDDEN_LAYER", "PLACEMENTS", "EpochProgress", "FineTuneNet", "MLPHead",
           "TestAccuracy", "parse_finetune", "placement_layer"]

#: Module path of the head's hidden layer (Linear + ReLU) in :class:`FineTuneNet`.
HIDDEN_LAYER = "head.hidden"
#: Where the published grid puts LCC: the classifier's output, or the last stage.
PLACEMENTS = ("logits", "last-stage")


def placement_layer(placement: str, finetune: str) -> str:
    """Return the module path in :class:`FineTuneNet` of a published latent placement.

    ``"logits"`` is the output of the final Linear. ``"last-stage"`` is the output of
    the last trainable backbone block (the input of the backbone's head), the
    published "last backbone stage"; in the ``head`` regime, where no backbone block
    trains, it is the head's hidden layer, the last stage before the classifier.

    Examples
    --------
    >>> placement_layer("logits", "full"), placement_layer("last-stage", "full")
    ('head.out', 'features.1.head:input')

    """
    regime, _ = parse_finetune(finetune)
    if placement == "logits":
        return "head.out"
    if placement == "last-stage":
        return {"head": HIDDEN_LAYER, "last-blocks": "features.head:input",
                "full": "features.1.head:input"}[regime]
    raise ValueError(f"placement={placement!r} is invalid: expected one of {PLACEMENTS}.")


def parse_finetune(finetune: str) -> tuple[str, int | None]:
    """Split a ``--finetune`` value into its regime and number of tail blocks.

    Parameters
    ----------
    finetune : str
        ``"head"``, ``"last-blocks:N"`` or ``"full"``.

    Returns
    -------
    regime : str
        ``"head"``, ``"last-blocks"`` or ``"full"``.
    n_blocks : int or None
        ``N`` for ``"last-blocks:N"``, else None.

    Examples
    --------
    >>> parse_finetune("last-blocks:2")
    ('last-blocks', 2)

    """
    if finetune in ("head", "full"):
        return finetune, None
    prefix = "last-blocks:"
    if finetune.startswith(prefix) and finetune[len(prefix):].isdigit():
        n_blocks = int(finetune[len(prefix):])
        if n_blocks >= 1:
            return "last-blocks", n_blocks
    raise ValueError(
        f"finetune={finetune!r} is invalid: expected 'head', 'last-blocks:N' with N >= 1 "
        "(e.g. 'last-blocks:2') or 'full'."
    )


class MLPHead(nn.Module):
    """``features -> Linear -> ReLU -> Dropout -> Linear -> logits``.

    Parameters
    ----------
    in_features : int
        Length of the feature vector.
    n_classes : int
        Number of classes (logits).
    hidden : int
        Width of the hidden layer, the latent of LCC and center loss. 0 makes the head
        one Linear layer, as a ResNet's classifier is (``hidden`` is then the identity,
        so its output is the pooled features).
    dropout : float
        Dropout applied after the hidden layer (the latents are taken before it).

    """

    def __init__(self, in_features: int, n_classes: int, hidden: int, dropout: float):
        super().__init__()
        if hidden:
            self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
            self.dropout = nn.Dropout(dropout)
        else:
            self.hidden, self.dropout, hidden = nn.Identity(), nn.Identity(), in_features
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of feature vectors."""
        return self.out(self.dropout(self.hidden(x)))


class FineTuneNet(nn.Module):
    """The trainable network of one fine-tuning regime, followed by :class:`MLPHead`.

    The backbone parts are built inside ``__init__`` so that a net seeded by its
    estimator gets the same pretrained weights and the same seeded head every fit.

    Parameters
    ----------
    n_classes : int
        Number of classes.
    in_features : int
        Width of the input rows: the embedding length for ``"head"``, the flattened
        activation length for ``"last-blocks:N"``; ignored for ``"full"``.
    hidden : int, default=512
        Width of the head's hidden layer.
    dropout : float, default=0.5
        Dropout after the hidden layer.
    finetune : str, default="head"
        ``"head"``: the input rows are frozen embeddings, only the head trains.
        ``"last-blocks:N"``: the input rows are the cached activations entering the
        backbone's last ``N`` blocks; those blocks and the head train.
        ``"full"``: the input is ``(N, H, W, 3)`` images; every layer trains.
    backbone : str, default="efficientnet_lite0"
        Name for :func:`sklcc.images.backbones.load_backbone` (regimes other than ``"head"``).
    image_size : int, default=128
        Image side length the backbone sees.
    pretrained : bool, default=True
        Load the backbone's pretrained weights.

    """

    def __init__(self, n_classes: int, in_features: int = 0, hidden: int = 512,
                 dropout: float = 0.5, finetune: str = "head",
                 backbone: str = "efficientnet_lite0", image_size: int = 128,
                 pretrained: bool = True):
        super().__init__()
        regime, n_blocks = parse_finetune(finetune)
        if regime == "head":
            self.features = nn.Identity()
            width = in_features
        elif regime == "last-blocks":
            _, tail = split_backbone(load_backbone(backbone, pretrained=pretrained), n_blocks,
                                     image_size=image_size)
            self.features, width = tail, tail.feature_dim
        else:
            net = load_backbone(backbone, pretrained=pretrained)
            self.features = nn.Sequential(ImagePreprocess(image_size, net.mean, net.std), net)
            width = net.feature_dim
        self.head = MLPHead(width, n_classes, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch."""
        return self.head(self.features(x))


class TestAccuracy(Callback):
    """Record the top-1 accuracy on a held-out set after every epoch, for plots only.

    The value (``test_acc``) and the seconds it took (``test_eval_s``, so that it can
    be subtracted from the fit time) go to ``net.history``. Nothing reads it back
    during training: no checkpoint, early stopping or selection uses it.

    Parameters
    ----------
    X : ndarray
        Held-out inputs, as ``predict_proba`` takes them.
    y : ndarray of shape (n_samples,)
        Their class codes.

    """

    def __init__(self, X, y):
        self.X = X
        self.y = y

    def on_epoch_end(self, net, **kwargs):
        """Score the held-out set and record it."""
        start = time.perf_counter()
        # predict_proba draws no random numbers (eval mode), so training is unchanged.
        acc = float(np.mean(net.predict_proba(self.X).argmax(axis=1) == np.asarray(self.y)))
        net.history.record("test_acc", acc)
        net.history.record("test_eval_s", time.perf_counter() - start)


class EpochProgress(Callback):
    """A tqdm bar over the epochs of one fit, showing the last loss and test accuracy.

    Parameters
    ----------
    desc : str, default="epochs"
        Bar label.

    """

    def __init__(self, desc: str = "epochs"):
        self.desc = desc

    def on_train_begin(self, net, **kwargs):
        """Open the bar."""
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc=self.desc, unit="epoch", leave=False)

    def on_epoch_end(self, net, **kwargs):
        """Advance the bar, showing the epoch's loss, test accuracy and misclustering."""
        row = net.history[-1]
        postfix = {"loss": f"{row['train_loss']:.4f}"}
        if "test_acc" in row:
            postfix["test_acc"] = f"{row['test_acc']:.4f}"
        misclustered = history_key("misclustered")
        if misclustered in row:
            postfix["misclustered"] = f"{row[misclustered]:.3f}"
        self.bar_.set_postfix(postfix, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        """Close the bar."""
        self.bar_.close()
