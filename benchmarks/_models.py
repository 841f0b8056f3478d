"""Networks, baseline estimators and callbacks of the fine-tuning benchmark.

- :class:`FineTuneNet`: the trainable part of the network for each fine-tuning regime,
  ending in the same MLP head (``features -> hidden -> classes``) whose hidden layer
  (``head.hidden``) is where LCC and center loss act.
- :class:`SeededNeuralNetClassifier`: skorch's ``NeuralNetClassifier`` seeded exactly
  as :class:`sklcc.LCCClassifier` seeds itself, so a ``ce`` / ``lcc`` pair with the same
  seed starts from the same weights and sees the same batches.
- :class:`CenterLossClassifier`: cross-entropy plus center loss (Wen et al., ECCV 2016).
- :class:`TestAccuracy`, :class:`EpochProgress`: per-epoch callbacks for the curves
  and the progress bar.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from torch import nn

from sklcc.images.backbones import load_backbone, split_backbone
from sklcc.latents import LatentRecorder, resolve_latent_layers
from sklcc.seeding import torch_seed

__all__ = [
    "HIDDEN_LAYER",
    "CenterLossClassifier",
    "EpochProgress",
    "FineTuneNet",
    "ImagePreprocess",
    "MLPHead",
    "SeededNeuralNetClassifier",
    "TestAccuracy",
    "center_loss",
    "parse_finetune",
]

#: Module path of the head's hidden layer (Linear + ReLU) in :class:`FineTuneNet`.
HIDDEN_LAYER = "head.hidden"


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
        Width of the hidden layer, the latent of LCC and center loss.
    dropout : float
        Dropout applied after the hidden layer (the latents are taken before it).

    """

    def __init__(self, in_features: int, n_classes: int, hidden: int, dropout: float):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of feature vectors."""
        return self.out(self.dropout(self.hidden(x)))


class ImagePreprocess(nn.Module):
    """``(N, H, W, 3)`` pixels in 0..255 to standardised ``(N, 3, R, R)`` tensors.

    Resizing matches :class:`sklcc.images.embedding.ImageEmbedder` (bilinear, antialiased).

    Parameters
    ----------
    resolution : int
        Output side length.
    mean, std : tuple of 3 floats
        Per-channel statistics in 0..255 units, from the backbone.

    """

    def __init__(self, resolution: int, mean, std):
        super().__init__()
        self.resolution = int(resolution)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize and standardise a batch of channels-last images."""
        x = x.permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = nn.functional.interpolate(x, size=(self.resolution, self.resolution),
                                          mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std


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
    resolution : int, default=128
        Image side length the backbone sees.
    pretrained : bool, default=True
        Load the backbone's pretrained weights.

    """

    def __init__(self, n_classes: int, in_features: int = 0, hidden: int = 512,
                 dropout: float = 0.5, finetune: str = "head",
                 backbone: str = "efficientnet_lite0", resolution: int = 128,
                 pretrained: bool = True):
        super().__init__()
        regime, n_blocks = parse_finetune(finetune)
        if regime == "head":
            self.features = nn.Identity()
            width = in_features
        elif regime == "last-blocks":
            _, tail = split_backbone(load_backbone(backbone, pretrained=pretrained), n_blocks,
                                     resolution=resolution)
            self.features, width = tail, tail.feature_dim
        else:
            net = load_backbone(backbone, pretrained=pretrained)
            self.features = nn.Sequential(ImagePreprocess(resolution, net.mean, net.std), net)
            width = net.feature_dim
        self.head = MLPHead(width, n_classes, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch."""
        return self.head(self.features(x))


class SeededNeuralNetClassifier(NeuralNetClassifier):
    """skorch ``NeuralNetClassifier`` whose ``fit`` is seeded like ``LCCClassifier``'s.

    Inside ``torch.random.fork_rng`` the torch generator is seeded with
    ``random_state``, so weight initialisation, shuffling and dropout are reproducible
    and the global generator is left untouched afterwards. Given the same seed, module
    and data, this net and an :class:`sklcc.LCCClassifier` draw identical random
    numbers; they differ only by the LCC term.

    Parameters
    ----------
    module : torch module class or instance
        As for skorch.
    random_state : int or None, default=None
        Torch seed for the duration of ``fit``; None leaves the generator alone.
    **kwargs
        Every other skorch argument.

    """

    def __init__(self, module, *args, random_state: int | None = None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.random_state = random_state

    def fit(self, X, y=None, **fit_params):
        """Train as skorch does, with torch seeded by ``random_state``.

        Parameters
        ----------
        X : array-like or torch Dataset
            Training inputs.
        y : array-like or None
            Class codes.
        **fit_params : dict
            Passed to skorch's ``fit``.

        Returns
        -------
        self

        """
        with torch_seed(self.random_state):
            return super().fit(X, y, **fit_params)


def center_loss(z: torch.Tensor, centers: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Center loss of Wen et al. (2016): ``1/2 * mean_b ||z_b - c_{y_b}||^2``.

    Parameters
    ----------
    z : Tensor of shape (batch, d)
        Latents of the batch.
    centers : Tensor of shape (n_classes, d)
        One learnable center per class.
    y : Tensor of shape (batch,)
        Class codes.

    Returns
    -------
    Tensor, scalar

    Examples
    --------
    >>> z = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    >>> float(center_loss(z, torch.zeros(2, 2), torch.tensor([0, 1])))  # (2 + 4) / 2 / 2
    1.5

    """
    diff = z - centers[y.long()]
    return 0.5 * diff.pow(2).sum(dim=1).mean()


class _Centers(nn.Module):
    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        # Zeros draw no random numbers, so the seeded module initialisation is unchanged.
        self.weight = nn.Parameter(torch.zeros(n_classes, dim))


class CenterLossClassifier(SeededNeuralNetClassifier):
    """Cross-entropy plus center loss on one latent layer (Wen et al., ECCV 2016).

    Training loss: ``CE + center_weight * center_loss(z, centers, y)``; validation
    loss is plain cross-entropy. The centers are learnable parameters in their own
    optimizer parameter group (learning rate ``center_lr``, no weight decay); the
    group follows the same learning-rate schedule as the network.

    Parameters
    ----------
    module : torch module class or instance
        As for skorch.
    n_classes : int
        Number of centers.
    center_dim : int
        Width of the latent layer.
    center_layer : str, default="head.hidden"
        Module path whose output is the latent.
    center_weight : float, default=0.003
        Weight of the center loss (Wen et al. used 0.003 to 0.01).
    center_lr : float, default=0.01
        Learning rate of the centers' parameter group.
    random_state : int or None, default=None
        As for :class:`SeededNeuralNetClassifier`.
    **kwargs
        Every other skorch argument.

    Attributes
    ----------
    centers_ : torch module
        Holds ``weight`` of shape ``(n_classes, center_dim)``.

    """

    def __init__(self, module, *args, n_classes: int = 2, center_dim: int = 1,
                 center_layer: str = HIDDEN_LAYER, center_weight: float = 0.003,
                 center_lr: float = 0.01, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.n_classes = n_classes
        self.center_dim = center_dim
        self.center_layer = center_layer
        self.center_weight = center_weight
        self.center_lr = center_lr

    def initialize_module(self):
        """Build the network, then the class centers."""
        super().initialize_module()
        self.centers_ = _Centers(self.n_classes, self.center_dim).to(self.device)
        return self

    def initialize_optimizer(self, triggered_directly=None):
        """One optimizer: the network's parameters, plus a group for the centers."""
        args, kwargs = self.get_params_for_optimizer("optimizer", self.module_.named_parameters())
        self.optimizer_ = self.optimizer(*args, **kwargs)
        self.optimizer_.add_param_group(
            {"params": list(self.centers_.parameters()), "lr": self.center_lr,
             "weight_decay": 0.0}
        )
        return self

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Train with a hook on ``center_layer`` (removed afterwards)."""
        layers = resolve_latent_layers(self.module_, [self.center_layer])
        with LatentRecorder(self.module_, layers) as recorder:
            self._recorder = recorder
            try:
                return super().fit_loop(X, y, epochs=epochs, **fit_params)
            finally:
                del self._recorder

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Cross-entropy, plus ``center_weight`` times the center loss in training."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not training or not hasattr(self, "_recorder"):
            return loss
        z = self._recorder.outputs[self.center_layer]
        term = center_loss(z, self.centers_.weight, y_true.to(z.device))
        self.history.record_batch("train_center", term.item())
        return loss + self.center_weight * term

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_recorder", None)
        return state


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
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc=self.desc, unit="epoch", leave=False)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        postfix = {"loss": f"{row['train_loss']:.4f}"}
        if "test_acc" in row:
            postfix["test_acc"] = f"{row['test_acc']:.4f}"
        if "lcc_misclustered" in row:
            postfix["misclustered"] = f"{row['lcc_misclustered']:.3f}"
        self.bar_.set_postfix(postfix, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()
